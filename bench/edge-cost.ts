/**
 * `npm run bench:edge` (after bench/edge.ts; also part of `npm run bench`): the edge's own work,
 * apart from wrangler dev's proxy and from any model. A fake node (test/support/fake-node.ts)
 * speaks the node protocol and streams a generation's precomputed events as fast as the socket
 * takes them; the edge worker is bundled as wrangler bundles it and run in workerd by Miniflare
 * directly (wrangler's own Miniflare, bindings from wrangler.toml; no proxy worker). Two parts:
 *
 * - workerd: each round sends the same generation to the fake node directly and through the
 *   edge (native `/v1/generate` and OpenAI `/v1/completions`, streamed), with a short stream
 *   (`SHORT` blocks) and a long one (`LONG` blocks), in turn. Per request: the edge's time minus
 *   the node's for the short stream, paired per round; per event: how much more that difference
 *   grows with the long stream, divided by the events it has more. Includes the edge's own
 *   loopback hop to the node, which any deployment pays too.
 * - the floor: in the same rounds, a worker that only forwards the request to the node and its
 *   answer back (one hop through workerd, no JS per event): the edge's rows beyond it are the
 *   edge's own code.
 * - wrangler dev: the same rounds (at most 60) through `wrangler dev`, as `npm start` runs the
 *   edge: what its proxy adds on top, for comparison with bench/edge.ts.
 * - in process (Node, the same V8): the edge's app called with `app.fetch`, its node reached
 *   through an injected `fetch` that answers from memory; no socket at all, the edge's own code
 *   only: the same differences, from many more samples.
 *
 * Prints a table and writes bench/results/edge-cost.json; the table goes into the README.
 */

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";
import { DenoiserNodeBackend, ModelRouter } from "../adapters/src/index.ts";
import { createEdgeApp } from "../apps/edge/src/app.ts";
import type { Env } from "../apps/edge/src/env.ts";
import { fakeNodeEvents, startFakeNode } from "../test/support/fake-node.ts";
import { quantiles } from "../test/support/load.ts";
import { freePort } from "../test/support/sprout.ts";
import { writeReadmeSection } from "./readme.ts";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const ROUNDS = Number(process.env.EDGE_COST_ROUNDS ?? 150);
const IN_PROCESS_ROUNDS = Number(process.env.EDGE_COST_IN_PROCESS_ROUNDS ?? 1500);
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
type Path = "node" | "forward" | "native" | "openai";
const route: Record<Path, string> = {
  node: "/v1/generate",
  forward: "/v1/generate",
  native: "/v1/generate",
  openai: "/v1/completions",
};

/** One streamed request read to its end: ms, and the bytes it got. */
async function timed(
  call: (path: string, init: RequestInit) => Promise<Response>,
  path: Path,
  blocks: number,
): Promise<number> {
  const body = JSON.stringify(path === "openai" ? bodies.openai(blocks) : bodies.native(blocks));
  const t0 = performance.now();
  const response = await call(route[path], {
    method: "POST",
    headers: {
      authorization: `Bearer ${path === "node" || path === "forward" ? secret : key}`,
      "content-type": "application/json",
    },
    body,
  });
  if (!response.ok || !response.body) throw new Error(`${path} answered ${response.status}`);
  const reader = response.body.getReader();
  let tail = "";
  const decoder = new TextDecoder();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    tail = (tail + decoder.decode(read.value, { stream: true })).slice(-256);
  }
  const ms = performance.now() - t0;
  // Each stream must have ended as it should: a broken one would measure nothing.
  if (!/("type":"done"|\[DONE\])/.test(tail) || /"error"|event: error/.test(tail))
    throw new Error(`${path}: ${tail}`);
  return ms;
}

type Caller = (path: string, init: RequestInit) => Promise<Response>;
interface Samples {
  node: { short: number[]; long: number[] };
  forward: { short: number[]; long: number[] };
  native: { short: number[]; long: number[] };
  openai: { short: number[]; long: number[] };
}

/** Rounds of each path in turn (the forwarding worker's only where given), short and long. */
async function measure(
  call: Caller,
  callNode: Caller,
  rounds: number,
  warmup: number,
  callForward?: Caller,
): Promise<Samples> {
  const callers: Record<Path, Caller | undefined> = {
    node: callNode,
    forward: callForward,
    native: call,
    openai: call,
  };
  const samples: Samples = {
    node: { short: [], long: [] },
    forward: { short: [], long: [] },
    native: { short: [], long: [] },
    openai: { short: [], long: [] },
  };
  for (let round = -warmup; round < rounds; round++) {
    for (const [length, blocks] of [
      ["short", SHORT],
      ["long", LONG],
    ] as const) {
      for (const path of ["node", "forward", "native", "openai"] as const) {
        const caller = callers[path];
        if (!caller) continue;
        const ms = await timed(caller, path, blocks);
        if (round >= 0) samples[path][length].push(ms);
      }
    }
  }
  return samples;
}

const extraEvents = LONG - SHORT;
/** The per-request and per-event cost of one path beyond `base`'s (the node alone), paired by round. */
function costs(samples: Samples, path: "forward" | "native" | "openai", base: "node" | "forward" = "node") {
  const perRequest = samples[path].short.map((ms, i) => ms - (samples[base].short[i] as number));
  const perEvent = samples[path].long.map(
    (ms, i) => (ms - (samples[base].long[i] as number) - (perRequest[i] as number)) / extraEvents,
  );
  const r = quantiles(perRequest);
  const e = quantiles(perEvent);
  return {
    stream_short_p50_ms: quantiles(samples[path].short).p50,
    stream_long_p50_ms: quantiles(samples[path].long).p50,
    per_request_p50_ms: r.p50,
    per_request_p99_ms: r.p99,
    per_event_p50_ms: e.p50,
    per_event_p99_ms: e.p99,
  };
}

// --- workerd, through Miniflare directly -------------------------------------------------------
const fakeNode = await startFakeNode(secret, MODEL);
const callNode = (path: string, init: RequestInit) => fetch(new URL(path, fakeNode.url), init);

const bundleDir = mkdtempSync(join(tmpdir(), "sprout-edge-bundle-"));
await build({
  entryPoints: [here("../apps/edge/src/index.ts")],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2024",
  conditions: ["workerd", "worker", "browser"],
  mainFields: ["workerd", "worker", "browser", "module", "main"],
  outfile: join(bundleDir, "index.js"),
  logLevel: "warning",
});
const { workerOptions } = unstable_getMiniflareWorkerOptions(here("../wrangler.toml"));
const mf = new Miniflare({
  ...workerOptions,
  name: "sprout-edge",
  modules: true,
  scriptPath: join(bundleDir, "index.js"),
  modulesRoot: bundleDir,
  // No [assets]: the playground is not what is measured.
  assets: undefined,
  bindings: { DENOISER_URL: fakeNode.url, DENOISER_SECRET: secret, API_KEY_HASHES: keyHash },
  kvPersist: false,
  durableObjectsPersist: false,
  cachePersist: false,
} as ConstructorParameters<typeof Miniflare>[0]);
const edgeUrl = await mf.ready;
const callEdge = (path: string, init: RequestInit) => fetch(new URL(path, edgeUrl), init);
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
const forwarderUrl = await forwarder.ready;
const callForward = (path: string, init: RequestInit) => fetch(new URL(path, forwarderUrl), init);
let workerd: Samples;
let wranglerDev: Samples;
try {
  workerd = await measure(callEdge, callNode, ROUNDS, 10, callForward);
  await mf.dispose();
  await forwarder.dispose();
  wranglerDev = await underWranglerDev();
} finally {
  await mf.dispose().catch(() => {});
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
    const call = (path: string, init: RequestInit) => fetch(new URL(path, base), init);
    return await measure(call, callNode, Math.min(ROUNDS, 60), 5);
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
const inProcess = await measure(callApp, callMemoryNode, IN_PROCESS_ROUNDS, 50);

// --- report -------------------------------------------------------------------------------------
const rows = {
  workerd_forward: costs(workerd, "forward"),
  workerd_native: costs(workerd, "native"),
  workerd_openai: costs(workerd, "openai"),
  workerd_native_beyond_forward: costs(workerd, "native", "forward"),
  workerd_openai_beyond_forward: costs(workerd, "openai", "forward"),
  wrangler_dev_native: costs(wranglerDev, "native"),
  wrangler_dev_openai: costs(wranglerDev, "openai"),
  in_process_native: costs(inProcess, "native"),
  in_process_openai: costs(inProcess, "openai"),
};
const node = {
  workerd: { short_p50_ms: quantiles(workerd.node.short).p50, long_p50_ms: quantiles(workerd.node.long).p50 },
  in_process: {
    short_p50_ms: quantiles(inProcess.node.short).p50,
    long_p50_ms: quantiles(inProcess.node.long).p50,
  },
};
const label: Record<keyof typeof rows, string> = {
  workerd_forward: "workerd (Miniflare), a worker that only forwards (the floor)",
  workerd_native: "workerd (Miniflare), native /v1/generate",
  workerd_openai: "workerd (Miniflare), OpenAI /v1/completions",
  workerd_native_beyond_forward: "workerd, native, beyond the forwarding worker",
  workerd_openai_beyond_forward: "workerd, OpenAI, beyond the forwarding worker",
  wrangler_dev_native: "wrangler dev (its proxy in front), native /v1/generate",
  wrangler_dev_openai: "wrangler dev (its proxy in front), OpenAI /v1/completions",
  in_process_native: "in process (Node), native /v1/generate",
  in_process_openai: "in process (Node), OpenAI /v1/completions",
};
const f = (ms: number, digits = 2) => ms.toFixed(digits);
console.log(
  `\nThe edge's own work against a fake node (${SHORT} and ${LONG} blocks of ${BLOCK} tokens; workerd ${ROUNDS} rounds, in process ${IN_PROCESS_ROUNDS})`,
);
console.table(
  Object.entries(rows).map(([name, r]) => ({
    path: label[name as keyof typeof rows],
    "per request p50 ms": f(r.per_request_p50_ms),
    "per request p99 ms": f(r.per_request_p99_ms),
    "per event p50 ms": f(r.per_event_p50_ms, 4),
    "per event p99 ms": f(r.per_event_p99_ms, 4),
  })),
);
console.log(
  `The fake node alone: ${f(node.workerd.short_p50_ms)} ms (${SHORT} blocks) and ${f(node.workerd.long_p50_ms)} ms (${LONG} blocks) at p50 over loopback.`,
);

const result = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  blocks: { short: SHORT, long: LONG, block_size: BLOCK },
  rounds: { workerd: ROUNDS, wrangler_dev: Math.min(ROUNDS, 60), in_process: IN_PROCESS_ROUNDS },
  node,
  ...rows,
};
mkdirSync(here("./results/"), { recursive: true });
writeFileSync(here("./results/edge-cost.json"), `${JSON.stringify(result, null, 2)}\n`);
const markdown = [
  `Measured ${result.date.slice(0, 10)} (\`bench/results/edge-cost.json\`, \`bench/edge-cost.ts\`): the edge's own work against a fake node that streams precomputed events instantly, ${SHORT} and ${LONG} blocks of ${BLOCK} tokens per stream. Per request: the edge's time minus the node's for the short stream, paired per round (in workerd it includes the edge's own loopback hop to the node); per event: how much more that grows per extra event of the long stream.`,
  "",
  "| path | per request p50 (ms) | per request p99 (ms) | per event p50 (ms) | per event p99 (ms) |",
  "|---|---|---|---|---|",
  ...Object.entries(rows).map(
    ([name, r]) =>
      `| ${label[name as keyof typeof rows]} | ${f(r.per_request_p50_ms)} | ${f(r.per_request_p99_ms)} | ${f(r.per_event_p50_ms, 4)} | ${f(r.per_event_p99_ms, 4)} |`,
  ),
].join("\n");
writeReadmeSection("bench-edge-cost", markdown);
