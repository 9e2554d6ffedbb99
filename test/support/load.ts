/**
 * Load through the edge, for the load test (test/e2e.test.ts, bounded) and the load benchmark
 * (bench/load.ts): `streams` clients, each sending native streaming generations back to back for
 * `seconds`, over loopback. Records every failure (status, error event, broken stream), the time
 * to the first block and to the end of each stream, and the resident memory of the whole process
 * tree under `rootPid` (node, wrangler, workerd) twice a second.
 */
import { readdirSync, readFileSync } from "node:fs";
import { createParser } from "eventsource-parser";

export interface LoadOptions {
  /** The edge's base URL. */
  url: string;
  key: string;
  streams: number;
  seconds: number;
  /** The process whose tree's memory is sampled (npm start's). */
  rootPid?: number;
  body?: Record<string, unknown>;
}

export interface Quantiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface LoadResult {
  streams: number;
  seconds: number;
  requests: number;
  completed: number;
  /** Failures by kind (`http 503`, `error internal`, `exception …`). */
  errors: Record<string, number>;
  first_block_ms: Quantiles;
  stream_ms: Quantiles;
  tokens: number;
  tokens_per_s: number;
  /** Resident memory of the tree, MB: [seconds since start, MB] samples, and start / peak / end. */
  memory_mb: { samples: [number, number][]; start: number; peak: number; end: number };
}

const PROMPTS = [
  "def add(a, b):\n",
  "class Stack:\n    def __init__(self):\n",
  "import os\n\ndef walk(path):\n",
  "# sort a list\n",
];

export function quantiles(xs: number[]): Quantiles {
  const sorted = [...xs].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

export interface QuantileInterval {
  /** The sample quantile, as `quantiles` takes it. */
  value: number;
  /** A 95% confidence interval for the true quantile: two order statistics of the samples. */
  low: number;
  high: number;
  /** False where the samples are too few to bound it above (`high` is then only their maximum). */
  bounded: boolean;
  n: number;
}

/**
 * The q-quantile of `xs` with a distribution-free 95% confidence interval: how many samples fall
 * below the true quantile is binomial(n, q), so the order statistics at ranks n·q ∓ 1.96·√(n·q·(1−q))
 * bracket it (normal approximation). A p99 from a few hundred samples rests on its top handful:
 * the interval says how little it then pins down.
 */
export function quantileInterval(xs: number[], q: number): QuantileInterval {
  const sorted = [...xs].sort((a, b) => a - b);
  const n = sorted.length;
  const spread = 1.96 * Math.sqrt(n * q * (1 - q));
  const lowRank = Math.floor(n * q - spread);
  const highRank = Math.ceil(n * q + spread);
  const at = (rank: number) => sorted[Math.max(0, Math.min(n - 1, rank))] ?? Number.NaN;
  return {
    value: at(Math.floor(q * n)),
    low: at(lowRank),
    high: at(highRank),
    bounded: highRank <= n - 1,
    n,
  };
}

/** Resident set size, MB, of `pid` and every process descended from it (Linux /proc). */
export function treeRssMb(pid: number): number {
  const parent = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {} // the process ended meanwhile
  }
  const tree = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [child, ppid] of parent) {
      if (tree.has(ppid) && !tree.has(child)) {
        tree.add(child);
        grew = true;
      }
    }
  }
  let kb = 0;
  for (const p of tree) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, "utf8"))?.[1] ?? 0);
    } catch {}
  }
  return kb / 1024;
}

/** One streamed generation: ms to the first block and to the end, tokens, or what went wrong. */
async function oneStream(url: string, key: string, body: Record<string, unknown>) {
  const t0 = performance.now();
  const response = await fetch(`${url}/v1/generate`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    return { error: `http ${response.status}` };
  }
  let first = 0;
  let tokens = 0;
  let error: string | undefined;
  let done = false;
  const parser = createParser({
    onEvent: (event) => {
      const data = JSON.parse(event.data);
      if (event.event === "block") {
        if (first === 0) first = performance.now() - t0;
        tokens += data.tokens ?? 0;
      }
      if (event.event === "error") error = `error ${data.code}`;
      if (event.event === "done") done = true;
    },
  });
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    parser.feed(decoder.decode(read.value, { stream: true }));
  }
  if (error) return { error };
  if (!done) return { error: "stream ended without done" };
  return { first, total: performance.now() - t0, tokens };
}

export async function runLoad({
  url,
  key,
  streams,
  seconds,
  rootPid,
  body = {},
}: LoadOptions): Promise<LoadResult> {
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const samples: [number, number][] = [];
  const sample = () => {
    if (rootPid)
      samples.push([Math.round((performance.now() - started) / 100) / 10, Math.round(treeRssMb(rootPid))]);
  };
  sample();
  const sampler = setInterval(sample, 500);
  const firsts: number[] = [];
  const totals: number[] = [];
  const errors: Record<string, number> = {};
  let requests = 0;
  let tokens = 0;
  await Promise.all(
    Array.from({ length: streams }, async (_, client) => {
      for (let i = 0; performance.now() < deadline; i++) {
        requests++;
        const prompt = PROMPTS[(client + i) % PROMPTS.length];
        const outcome = await oneStream(url, key, {
          model: "sprout-tiny",
          prompt,
          max_tokens: 32,
          block_size: 8,
          ...body,
        }).catch((e: Error) => ({ error: `exception ${e.message}` }));
        if ("error" in outcome) {
          const kind = outcome.error ?? "unknown";
          errors[kind] = (errors[kind] ?? 0) + 1;
        } else {
          firsts.push(outcome.first);
          totals.push(outcome.total);
          tokens += outcome.tokens;
        }
      }
    }),
  );
  clearInterval(sampler);
  sample();
  const elapsed = (performance.now() - started) / 1000;
  const mb = samples.map(([, m]) => m);
  return {
    streams,
    seconds: Math.round(elapsed * 10) / 10,
    requests,
    completed: totals.length,
    errors,
    first_block_ms: quantiles(firsts),
    stream_ms: quantiles(totals),
    tokens,
    tokens_per_s: tokens / elapsed,
    memory_mb: { samples, start: mb[0] ?? 0, peak: Math.max(0, ...mb), end: mb.at(-1) ?? 0 },
  };
}
