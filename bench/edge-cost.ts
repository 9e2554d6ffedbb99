/**
 * `npm run bench:edge` (after bench/edge.ts; also part of `npm run bench`): the edge's own work,
 * apart from wrangler dev's proxy and from any model. A fake node (test/support/fake-node.ts)
 * speaks the node protocol and streams a generation's precomputed events as fast as the socket
 * takes them; the edge worker is bundled as wrangler bundles it and run in workerd by Miniflare
 * directly (wrangler's own Miniflare, bindings from wrangler.toml; no proxy worker). Parts:
 *
 * - workerd: each round sends the same generation to the fake node directly and through the
 *   edge (native `/v1/generate` and OpenAI `/v1/completions`, streamed), with a short stream
 *   (`SHORT` blocks) and a long one (`LONG` blocks). Per request: the edge's time minus the
 *   node's for the short stream, paired per round; per event: how much more that difference
 *   grows with the long stream, divided by the events it has more. Includes the edge's own
 *   loopback hop to the node, which any deployment pays too.
 * - the floor: in the same rounds, a worker that only forwards the request to the node and its
 *   answer back (one hop through workerd, no JS per event): the edge's rows beyond it are the
 *   edge's own code.
 * - a baseline (`EDGE_COST_BASELINE=<checkout>`, a checkout of another commit with its
 *   node_modules): its edge, bundled from that checkout and run beside this one in the same
 *   rounds, so a change shows as before and after measured under the same conditions.
 * - wrangler dev: the same rounds (fewer) through `wrangler dev`, as `npm start` runs the
 *   edge: what its proxy adds on top, for comparison with bench/edge.ts.
 * - in process (Node, the same V8): the edge's app called with `app.fetch`, its node reached
 *   through an injected `fetch` that answers from memory; no socket at all, the edge's own code
 *   only: the same differences, from many more samples.
 *
 * Every round sends its requests (each path, short and long) in a new random order: a request
 * that reaches the edge after it sat idle while other processes served (the node, the
 * forwarding worker) takes longer on this machine, and the fixed order this benchmark had
 * charged that to the path that always came first, the native one: 0.4 ms per request (5–7 ms
 * under wrangler dev) it does not cost. The order is drawn from `EDGE_COST_SEED` (recorded) and
 * can be repeated. Each quantile comes
 * with its 95% confidence interval and sample count (test/support/load.ts `quantileInterval`):
 * on a shared machine a p99 is mostly the machine's, and the interval says how well the run
 * pinned it down.
 *
 * Prints a table and writes bench/results/edge-cost.json; the table goes into the README.
 */

import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { DenoiserNodeBackend, ModelRouter } from "../adapters/src/index.ts";
import { createEdgeApp } from "../apps/edge/src/app.ts";
import type { Env } from "../apps/edge/src/env.ts";
import { fakeNodeEvents, startFakeNode } from "../test/support/fake-node.ts";
import { type QuantileInterval, quantileInterval, quantiles } from "../test/support/load.ts";
import { freePort } from "../test/support/sprout.ts";
import { machine, writeReadmeSection, writeResult } from "./report.ts";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
/**
 * Rounds in workerd: enough that a p99's confidence interval is bounded by the samples (from
 * about 550 on; below that its upper end is only the maximum seen).
 */
const ROUNDS = Number(process.env.EDGE_COST_ROUNDS ?? 1000);
const WRANGLER_DEV_ROUNDS = Number(process.env.EDGE_COST_WRANGLER_DEV_ROUNDS ?? Math.min(ROUNDS, 150));
const IN_PROCESS_ROUNDS = Number(process.env.EDGE_COST_IN_PROCESS_ROUNDS ?? 1500);
const SEED = Number(process.env.EDGE_COST_SEED ?? Math.floor(Math.random() * 2 ** 32));
const BASELINE = process.env.EDGE_COST_BASELINE;
const BLOCK = 8;
/** Blocks of the short and the long stream (events: blocks + start + done). */
const SHORT = 2;
const LONG = 128;
const key = `sk-sprout-${randomBytes(24).toString("base64url")}`;
const keyHash = createHash("sha256").update(key).digest("hex");
const secret = randomBytes(32).toString("hex");
const MODEL = "sprout-tiny";

const bodies = {
  native: (blocks: number) => ({
    model: MODEL,
    prompt: "def add(a, b):\n",
    max_tokens: blocks * BLOCK,
    block_size: BLOCK,
  }),
  openai: (blocks: number) => ({
    model: MODEL,
    prompt: "def add(a, b):\n",
    max_tokens: blocks * BLOCK,
    block_size: BLOCK,
    stream: true,
    stream_options: { include_usage: true },
  }),
};
/** What a request goes to: the node itself, or a worker in front of it, and in which API. */
interface Target {
  call: Caller;
  api: "native" | "openai";
  /** The node and the forwarding worker take the node's secret; the edge, an API key. */
  auth: "secret" | "key";
}
type Caller = (path: string, init: RequestInit) => Promise<Response>;
const route = { native: "/v1/generate", openai: "/v1/completions" };

/** One streamed request read to its end: ms. */
async function timed(target: Target, blocks: number): Promise<number> {
  const body = JSON.stringify(bodies[target.api](blocks));
  const t0 = performance.now();
  const response = await target.call(route[target.api], {
    method: "POST",
    headers: {
      authorization: `Bearer ${target.auth === "secret" ? secret : key}`,
      "content-type": "application/json",
    },
    body,
  });
  if (!response.ok || !response.body) throw new Error(`${route[target.api]} answered ${response.status}`);
  const reader = response.body.getReader();
  let tail = "";
  const decoder = new TextDecoder();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    tail = (tail + decoder.decode(read.value, { stream: true })).slice(-256);
  }
  const ms = performance.now() - t0;
  // Each stream must have ended as it should: a broken one would measure nothing.
  if (!/("type":"done"|\[DONE\])/.test(tail) || /"error"|event: error/.test(tail))
    throw new Error(`${route[target.api]}: ${tail}`);
  return ms;
}

/** Each target's times, by round, for the short and the long stream. */
type Samples = Record<string, { short: number[]; long: number[] }>;

/** mulberry32: a small seeded generator, so that a run's order can be drawn again. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** Rounds of every target, short and long, in a new random order each round. */
async function measure(
  targets: Record<string, Target>,
  rounds: number,
  warmup: number,
  random: () => number,
): Promise<Samples> {
  const samples: Samples = {};
  for (const name of Object.keys(targets)) samples[name] = { short: [], long: [] };
  for (let round = -warmup; round < rounds; round++) {
    const requests = Object.keys(targets).flatMap((name) => [
      [name, "short"] as const,
      [name, "long"] as const,
    ]);
    for (const [name, length] of shuffle(requests, random)) {
      const ms = await timed(targets[name] as Target, length === "short" ? SHORT : LONG);
      if (round >= 0) samples[name]?.[length].push(ms);
    }
  }
  return samples;
}

const extraEvents = LONG - SHORT;
const interval = (q: QuantileInterval) => ({ ms: q.value, ci_ms: [q.low, q.high], bounded: q.bounded });

/** The per-request and per-event cost of one target beyond `base`'s (the node alone), paired by round. */
function costs(samples: Samples, path: string, base = "node") {
  const of = (name: string) => samples[name] ?? { short: [], long: [] };
  const [mine, theirs] = [of(path), of(base)];
  const perRequest = mine.short.map((ms, i) => ms - (theirs.short[i] as number));
  const perEvent = mine.long.map(
    (ms, i) => (ms - (theirs.long[i] as number) - (perRequest[i] as number)) / extraEvents,
  );
  const [r50, r99] = [quantileInterval(perRequest, 0.5), quantileInterval(perRequest, 0.99)];
  const [e50, e99] = [quantileInterval(perEvent, 0.5), quantileInterval(perEvent, 0.99)];
  return {
    samples: perRequest.length,
    stream_short_p50_ms: quantiles(mine.short).p50,
    stream_long_p50_ms: quantiles(mine.long).p50,
    per_request_p50_ms: r50.value,
    per_request_p99_ms: r99.value,
    per_event_p50_ms: e50.value,
    per_event_p99_ms: e99.value,
    /** Each quantile with its 95% confidence interval; `bounded: false`: too few samples to bound it above. */
    intervals: {
      per_request_p50: interval(r50),
      per_request_p99: interval(r99),
      per_event_p50: interval(e50),
      per_event_p99: interval(e99),
    },
  };
}
type Cost = ReturnType<typeof costs>;

// --- workerd, through Miniflare directly -------------------------------------------------------
const fakeNode = await startFakeNode(secret, MODEL);
const callNode = (path: string, init: RequestInit) => fetch(new URL(path, fakeNode.url), init);

const bundleDir = mkdtempSync(join(tmpdir(), "sprout-edge-bundle-"));
const { workerOptions } = unstable_getMiniflareWorkerOptions(here("../wrangler.toml"));
const random = seeded(SEED);
/**
 * The commit a checkout is at, `+` where the edge's sources (apps, adapters, protocol) have
 * changes (a benchmark's own results do not count); a tree outside git goes by its path.
 */
const commitOf = (dir: string) => {
  const git = (...args: string[]) => execFileSync("git", ["-C", dir, ...args], { encoding: "utf8" }).trim();
  try {
    const edge = ["apps", "adapters", "protocol"];
    const changed = git("status", "--porcelain", "--untracked-files=no", "--", ...edge);
    return `${git("rev-parse", "--short", "HEAD")}${changed ? "+" : ""}`;
  } catch {
    return dir;
  }
};
const checkouts = { this: commitOf(here("..")), baseline: BASELINE ? commitOf(BASELINE) : undefined };

/** The edge of the checkout at `root`, bundled as wrangler bundles it, in workerd with this wrangler.toml's bindings. */
async function startEdge(root: string, name: string): Promise<Miniflare> {
  const outDir = join(bundleDir, name);
  await build({
    entryPoints: [join(root, "apps/edge/src/index.ts")],
    absWorkingDir: root,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2024",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["workerd", "worker", "browser", "module", "main"],
    outfile: join(outDir, "index.js"),
    logLevel: "warning",
  });
  const edge = new Miniflare({
    ...workerOptions,
    name: "sprout-edge",
    modules: true,
    scriptPath: join(outDir, "index.js"),
    modulesRoot: outDir,
    // No [assets]: the playground is not what is measured.
    assets: undefined,
    bindings: { DENOISER_URL: fakeNode.url, DENOISER_SECRET: secret, API_KEY_HASHES: keyHash },
    kvPersist: false,
    durableObjectsPersist: false,
    cachePersist: false,
  } as ConstructorParameters<typeof Miniflare>[0]);
  await edge.ready;
  return edge;
}
const callerOf = (base: URL) => (path: string, init: RequestInit) => fetch(new URL(path, base), init);

const mf = await startEdge(here(".."), "edge");
const baseline = BASELINE ? await startEdge(BASELINE, "baseline") : undefined;
/** The floor of any worker in front of the node: one that forwards the request and its answer untouched. */
const forwarder = new Miniflare({
  modules: true,
  compatibilityDate: workerOptions.compatibilityDate,
  bindings: { NODE_URL: fakeNode.url },
  script: `export default {
    fetch(request, env) {
      const { pathname } = new URL(request.url);
      return fetch(new URL(pathname, env.NODE_URL), { method: request.method, headers: request.headers, body: request.body });
    },
  };`,
});
const [callEdge, callForward] = [callerOf(await mf.ready), callerOf(await forwarder.ready)];
const callBaseline = baseline && callerOf(await baseline.ready);
const load = { start: loadavg()[0] as number, end: 0 };
let workerd: Samples;
let wranglerDev: Samples;
try {
  workerd = await measure(
    {
      node: { call: callNode, api: "native", auth: "secret" },
      forward: { call: callForward, api: "native", auth: "secret" },
      native: { call: callEdge, api: "native", auth: "key" },
      openai: { call: callEdge, api: "openai", auth: "key" },
      ...(callBaseline && {
        baseline_native: { call: callBaseline, api: "native", auth: "key" },
        baseline_openai: { call: callBaseline, api: "openai", auth: "key" },
      }),
    },
    ROUNDS,
    10,
    random,
  );
  await mf.dispose();
  await baseline?.dispose();
  await forwarder.dispose();
  wranglerDev = await underWranglerDev();
} finally {
  await mf.dispose().catch(() => {});
  await baseline?.dispose().catch(() => {});
  await forwarder.dispose().catch(() => {});
  rmSync(bundleDir, { recursive: true, force: true });
  await fakeNode.close();
}

/** The same rounds through `wrangler dev` (as `npm start` runs the edge): its proxy in front. */
async function underWranglerDev(): Promise<Samples> {
  const port = await freePort();
  const envFile = join(bundleDir, "edge.env");
  writeFileSync(
    envFile,
    `DENOISER_SECRET=${secret}\nAPI_KEY_HASHES=${keyHash}\nDENOISER_URL=${fakeNode.url}\n`,
    {
      mode: 0o600,
    },
  );
  const child = spawn(
    here("../node_modules/.bin/wrangler"),
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--env-file",
      envFile,
      "--show-interactive-dev-session=false",
    ],
    {
      cwd: here(".."),
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
      stdio: "ignore",
      detached: true,
    },
  );
  try {
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const up = await fetch(`${base}/openapi.json`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error("wrangler dev did not start");
      await new Promise((r) => setTimeout(r, 300));
    }
    const call = callerOf(new URL(base));
    return await measure(
      {
        node: { call: callNode, api: "native", auth: "secret" },
        native: { call, api: "native", auth: "key" },
        openai: { call, api: "openai", auth: "key" },
      },
      WRANGLER_DEV_ROUNDS,
      5,
      random,
    );
  } finally {
    try {
      if (child.pid) process.kill(-child.pid, "SIGTERM"); // its group: workerd runs beneath it
    } catch {}
  }
}

// --- in process: the edge's app with its node in memory ----------------------------------------
const encoder = new TextEncoder();
const sseOf = (blocks: number) =>
  fakeNodeEvents(MODEL, blocks, BLOCK).map((event) =>
    encoder.encode(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`),
  );
const chunks = new Map<number, Uint8Array[]>([
  [SHORT, sseOf(SHORT)],
  [LONG, sseOf(LONG)],
]);
const readyz = JSON.stringify({
  ready: true,
  model: MODEL,
  models: [{ name: MODEL, sha256: "fake-node", context_length: 1 << 16 }],
});
/** The fake node's answers, from memory: one chunk per event, as the socket would bring them. */
const memoryNode = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
  const url = new URL(input instanceof Request ? input.url : input);
  const headers = { "sprout-protocol": "2" };
  if (url.pathname === "/readyz") return new Response(readyz, { headers });
  const body = JSON.parse(String(init?.body)) as { max_tokens: number; block_size: number };
  const parts = chunks.get(Math.ceil(body.max_tokens / body.block_size)) ?? [];
  let i = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = parts[i++];
      if (part) controller.enqueue(part);
      else controller.close();
    },
  });
  return new Response(stream, { headers: { ...headers, "content-type": "text/event-stream" } });
};
const router = new ModelRouter({
  members: [{ backend: new DenoiserNodeBackend({ url: "http://node.invalid", secret, fetch: memoryNode }) }],
});
const app = createEdgeApp({ backendFor: () => router });
const env = { DENOISER_URL: "http://node.invalid", DENOISER_SECRET: secret, API_KEY_HASHES: keyHash } as Env;
const callApp = async (path: string, init: RequestInit) =>
  app.fetch(new Request(new URL(path, "http://edge.local"), init), env);
const callMemoryNode = (path: string, init: RequestInit) =>
  memoryNode(new URL(path, "http://node.invalid"), init);
const inProcess = await measure(
  {
    node: { call: callMemoryNode, api: "native", auth: "secret" },
    native: { call: callApp, api: "native", auth: "key" },
    openai: { call: callApp, api: "openai", auth: "key" },
  },
  IN_PROCESS_ROUNDS,
  50,
  random,
);
load.end = loadavg()[0] as number;

// --- report -------------------------------------------------------------------------------------
const rows: Record<string, Cost> = {
  workerd_forward: costs(workerd, "forward"),
  workerd_native: costs(workerd, "native"),
  workerd_openai: costs(workerd, "openai"),
  workerd_native_beyond_forward: costs(workerd, "native", "forward"),
  workerd_openai_beyond_forward: costs(workerd, "openai", "forward"),
  ...(BASELINE && {
    baseline_native: costs(workerd, "baseline_native"),
    baseline_openai: costs(workerd, "baseline_openai"),
    baseline_native_beyond_forward: costs(workerd, "baseline_native", "forward"),
    baseline_openai_beyond_forward: costs(workerd, "baseline_openai", "forward"),
  }),
  wrangler_dev_native: costs(wranglerDev, "native"),
  wrangler_dev_openai: costs(wranglerDev, "openai"),
  in_process_native: costs(inProcess, "native"),
  in_process_openai: costs(inProcess, "openai"),
};
const p50Of = (xs: number[] | undefined) => quantiles(xs ?? []).p50;
const node = {
  workerd: { short_p50_ms: p50Of(workerd.node?.short), long_p50_ms: p50Of(workerd.node?.long) },
  in_process: { short_p50_ms: p50Of(inProcess.node?.short), long_p50_ms: p50Of(inProcess.node?.long) },
};
const label: Record<string, string> = {
  workerd_forward: "workerd (Miniflare), a worker that only forwards (the floor)",
  workerd_native: `workerd (Miniflare), native /v1/generate (${checkouts.this})`,
  workerd_openai: `workerd (Miniflare), OpenAI /v1/completions (${checkouts.this})`,
  workerd_native_beyond_forward: "workerd, native, beyond the forwarding worker",
  workerd_openai_beyond_forward: "workerd, OpenAI, beyond the forwarding worker",
  baseline_native: `workerd, baseline (${checkouts.baseline}), native /v1/generate`,
  baseline_openai: `workerd, baseline (${checkouts.baseline}), OpenAI /v1/completions`,
  baseline_native_beyond_forward: "workerd, baseline, native, beyond the forwarding worker",
  baseline_openai_beyond_forward: "workerd, baseline, OpenAI, beyond the forwarding worker",
  wrangler_dev_native: "wrangler dev (its proxy in front), native /v1/generate",
  wrangler_dev_openai: "wrangler dev (its proxy in front), OpenAI /v1/completions",
  in_process_native: "in process (Node), native /v1/generate",
  in_process_openai: "in process (Node), OpenAI /v1/completions",
};
/** A quantile and its 95% interval; `>` where the samples were too few to bound it above. */
const shown = ({ ms, ci_ms: [low, high], bounded }: ReturnType<typeof interval>, digits: number) =>
  `${ms.toFixed(digits)} [${(low as number).toFixed(digits)}, ${bounded ? "" : ">"}${(high as number).toFixed(digits)}]`;
const cells = (r: Cost) => ({
  n: r.samples,
  "per request p50 ms": shown(r.intervals.per_request_p50, 2),
  "per request p99 ms": shown(r.intervals.per_request_p99, 2),
  "per event p50 ms": shown(r.intervals.per_event_p50, 4),
  "per event p99 ms": shown(r.intervals.per_event_p99, 4),
});
const f = (ms: number, digits = 2) => ms.toFixed(digits);
const cores = cpus().length;
const busy = Math.max(load.start, load.end) > cores / 2;
const conditions = `Load average ${f(load.start)} at the start, ${f(load.end)} at the end, on ${cores} cores${
  busy ? ": the machine was shared, and the p99s are mostly its scheduling, not the edge's work" : ""
}.`;
console.log(
  `\nThe edge's own work against a fake node (${SHORT} and ${LONG} blocks of ${BLOCK} tokens; rounds: workerd ${ROUNDS}, wrangler dev ${WRANGLER_DEV_ROUNDS}, in process ${IN_PROCESS_ROUNDS}, each in a random order, seed ${SEED}). Each cell: the quantile [its 95% confidence interval]; n: paired samples.`,
);
console.table(Object.entries(rows).map(([name, r]) => ({ path: label[name], ...cells(r) })));
console.log(
  `The fake node alone: ${f(node.workerd.short_p50_ms)} ms (${SHORT} blocks) and ${f(node.workerd.long_p50_ms)} ms (${LONG} blocks) at p50 over loopback. ${conditions}`,
);

const result = {
  date: new Date().toISOString(),
  machine: { ...machine(), load_average: load },
  checkouts,
  blocks: { short: SHORT, long: LONG, block_size: BLOCK },
  rounds: { workerd: ROUNDS, wrangler_dev: WRANGLER_DEV_ROUNDS, in_process: IN_PROCESS_ROUNDS },
  order: { shuffled_per_round: true, seed: SEED },
  node,
  ...rows,
};
writeResult("edge-cost", result);
const markdown = [
  `Measured ${result.date.slice(0, 10)} at ${checkouts.this} (\`bench/results/edge-cost.json\`, \`bench/edge-cost.ts\`): the edge's own work against a fake node that streams precomputed events instantly, ${SHORT} and ${LONG} blocks of ${BLOCK} tokens per stream. Per request: the edge's time minus the node's for the short stream, paired per round (in workerd it includes the edge's own loopback hop to the node); per event: how much more that grows per extra event of the long stream. Each round's requests go in a random order. Each cell: the quantile [its 95% confidence interval; \`>\`: too few samples to bound it above]; n: paired samples. ${conditions}`,
  "",
  "| path | n | per request p50 (ms) | per request p99 (ms) | per event p50 (ms) | per event p99 (ms) |",
  "|---|---|---|---|---|---|",
  ...Object.entries(rows).map(([name, r]) => `| ${label[name]} | ${Object.values(cells(r)).join(" | ")} |`),
].join("\n");
writeReadmeSection("bench-edge-cost", markdown);
