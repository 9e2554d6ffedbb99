/**
 * Where a batched step's time goes: `CONCURRENT` generations (MBPP prompts, ≤ 64 tokens, greedy,
 * τ 0.9, the node's defaults otherwise) through the node's Scheduler, every forward split into
 * its parts: building ids/positions/mask, the batched past, the graph, the greedy statistics
 * (pick graph), handing each sequence its rows; then each generation's `take` (appending to its
 * KV cache, unmasking) and the scheduler's own turn (asking each work for its next rows),
 * and garbage collection (V8's pauses, as PerformanceObserver reports them). Also the shapes
 * the graph saw: rows, new tokens and past, real and padded.
 *
 *   npx tsx bench/step-profile.ts [concurrent=8] [requests=16] [maxBatch=16] [runs=3] [forwardCostTokens]
 *
 * (forwardCostTokens: the session option; Infinity never splits a batch into graph runs).
 *
 * Prints a table (the median of `runs` runs in this process, per forward) and writes
 * bench/results/step-profile.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Scheduler } from "../apps/denoiser/src/scheduler.ts";
import { type DecodeEvent, loadModel, SHIPPED_MODEL_DIR, type Work } from "../models/src/index.ts";
import { KvCache, newStepProfile } from "../models/src/session.ts";
import { mbppTasks } from "./quality.ts";

const [CONCURRENT = 8, REQUESTS = 16, MAX_BATCH = 16, RUNS = 3, COST] = process.argv.slice(2).map(Number);
const MAX_TOKENS = 64;
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

const model = await loadModel(SHIPPED_MODEL_DIR, COST === undefined ? {} : { forwardCostTokens: COST });
const prompts = mbppTasks(REQUESTS).map((task) => task.prompt);

// Cache appends happen inside each generation's take(): timed by wrapping KvCache.append.
let appendMs = 0;
const append = KvCache.prototype.append;
KvCache.prototype.append = function (this: KvCache, ...args: Parameters<KvCache["append"]>) {
  const t0 = performance.now();
  const out = append.apply(this, args);
  appendMs += performance.now() - t0;
  return out;
};

let gcMs = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMs += entry.duration;
}).observe({ entryTypes: ["gc"] });

interface Shape {
  sequences: number;
  time: number;
  past: number;
  tokens: number;
  cached: number;
  withContext: number;
}

async function run() {
  const profile = newStepProfile();
  const shapes: Shape[] = [];
  let takeMs = 0;
  let forwardMs = 0;
  const scheduler = new Scheduler({
    forward: async (inputs, options) => {
      const lengths = inputs.map((i) => i.context.length + i.block.length);
      shapes.push({
        sequences: inputs.length,
        time: Math.max(...lengths),
        past: Math.max(...inputs.map((i) => i.cache.length)),
        tokens: sum(lengths),
        cached: sum(inputs.map((i) => i.cache.length)),
        withContext: inputs.filter((i) => i.context.length > 0).length,
      });
      const t0 = performance.now();
      const out = await model.session.forwardBatch(inputs, { ...options, profile });
      forwardMs += performance.now() - t0;
      return out;
    },
    maxBatch: MAX_BATCH,
    maxQueue: 64,
  });
  /** A generation whose take() is timed. */
  const timed = (work: Work<DecodeEvent>): Work<DecodeEvent> => ({
    get done() {
      return work.done;
    },
    get wantsStats() {
      return work.wantsStats;
    },
    next: () => work.next(),
    cancel: () => work.cancel(),
    take: (results) => {
      const t0 = performance.now();
      const out = work.take(results);
      takeMs += performance.now() - t0;
      return out;
    },
  });
  appendMs = 0;
  gcMs = 0;
  let tokens = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < prompts.length) {
      const prompt = prompts[next++] as string;
      for await (const event of scheduler.submit(timed(model.start({ prompt, maxTokens: MAX_TOKENS })))) {
        if (event.type === "done") tokens += event.usage.completion_tokens;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT }, worker));
  const wall = performance.now() - t0;
  const forwards = shapes.length;
  const per = (ms: number) => ms / forwards;
  const parts = {
    "ids, positions, mask": per(profile.ms.inputs),
    "batched past": per(profile.ms.past),
    graph: per(profile.ms.graph),
    "pick graph": per(profile.ms.pick),
    "rows to each sequence": per(profile.ms.results),
    "cache appends (in take)": per(appendMs),
    "rest of take (unmasking, events)": per(takeMs - appendMs),
    "scheduler and event loop": per(wall - forwardMs - takeMs),
  };
  return {
    tokens_per_s: tokens / (wall / 1000),
    forwards,
    step_ms: per(wall),
    parts,
    gc_ms: per(gcMs),
    shape: {
      mean_sequences: sum(shapes.map((s) => s.sequences)) / forwards,
      mean_time: sum(shapes.map((s) => s.time)) / forwards,
      mean_past: sum(shapes.map((s) => s.past)) / forwards,
      /** Share of the new-token slots that would be padding in one graph run per forward… */
      padded_tokens: 1 - sum(shapes.map((s) => s.tokens)) / sum(shapes.map((s) => s.sequences * s.time)),
      /** …and in the graph runs forwardBatch made (splitting by length). */
      padded_tokens_run: 1 - sum(shapes.map((s) => s.tokens)) / profile.slots,
      graph_runs_per_forward: profile.runs / forwards,
      picked_rows_per_forward: profile.pickedRows / forwards,
      /** Share of the graph's past slots that are padding. */
      padded_past: 1 - sum(shapes.map((s) => s.cached)) / sum(shapes.map((s) => s.sequences * s.past)),
      /** Share of forwards where some sequence brought uncached context (a prefill or a committed block). */
      with_context: shapes.filter((s) => s.withContext > 0).length / forwards,
    },
  };
}

await run(); // warm-up
const runs: Awaited<ReturnType<typeof run>>[] = [];
for (let r = 0; r < RUNS; r++) runs.push(await run());
const mid = (f: (r: (typeof runs)[number]) => number) => median(runs.map(f));
const stepMs = mid((r) => r.step_ms);
const partNames = Object.keys(runs[0]?.parts ?? {}) as (keyof (typeof runs)[number]["parts"])[];
const parts = Object.fromEntries(partNames.map((name) => [name, mid((r) => r.parts[name])]));
console.log(
  `${CONCURRENT} concurrent (${REQUESTS} requests, max batch ${MAX_BATCH}), ${model.manifest.name}: ` +
    `${mid((r) => r.tokens_per_s).toFixed(0)} tokens/s, ${mid((r) => r.forwards)} forwards, ${stepMs.toFixed(1)} ms per forward (median of ${RUNS})`,
);
console.table(
  Object.entries(parts).map(([part, ms]) => ({
    part,
    "ms per forward": ms.toFixed(2),
    share: `${((100 * ms) / stepMs).toFixed(1)}%`,
  })),
);
const shape = runs[Math.floor(RUNS / 2)]?.shape;
console.log(`of which garbage collection pauses: ${mid((r) => r.gc_ms).toFixed(2)} ms per forward`);
console.log("shapes:", shape);
mkdirSync(here("./results/"), { recursive: true });
writeFileSync(
  here("./results/step-profile.json"),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      model: model.manifest.name,
      concurrent: CONCURRENT,
      requests: REQUESTS,
      max_batch: MAX_BATCH,
      median: { step_ms: stepMs, parts, gc_ms: mid((r) => r.gc_ms) },
      runs,
    },
    null,
    2,
  )}\n`,
);
await model.close();
