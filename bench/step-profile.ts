/**
 * Where a batched step's time goes: `CONCURRENT` generations (MBPP prompts, ≤ 64 tokens, greedy,
 * τ 0.9, the node's defaults otherwise) through the node's Scheduler, every forward split into
 * its parts: building ids/positions/mask, the batched past, the graph, the greedy statistics
 * (pick graph), handing each sequence its rows; then each generation's `take` (appending to its
 * KV cache, unmasking) and the scheduler's own turn (asking each work for its next rows),
 * and garbage collection (V8's pauses, as PerformanceObserver reports them). Also the shapes
 * the graph saw: rows, new tokens and past, real and padded; then what splitting a batch into
 * graph runs by length buys (splitCost below).
 *
 *   npx tsx bench/step-profile.ts [concurrent=8] [requests=16] [maxBatch=the node's] [runs=3] [forwardCostTokens]
 *
 * (forwardCostTokens: the session option; Infinity never splits a batch into graph runs).
 *
 * Prints a table (the median of `runs` runs in this process, per forward), writes
 * bench/results/step-profile.json and puts the table into the README (`npm run bench` runs it).
 */
import { join } from "node:path";
import { PerformanceObserver } from "node:perf_hooks";
import { DEFAULT_MAX_BATCH, Scheduler } from "../apps/denoiser/src/scheduler.ts";
import { type DecodeEvent, loadModel, SHIPPED_MODEL_DIR, type Work } from "../models/src/index.ts";
import { DenoiserSession, type ForwardInput, KvCache, newStepProfile } from "../models/src/session.ts";
import { mbppTasks } from "./quality.ts";
import { stamp, writeReadmeSection, writeResult } from "./report.ts";

const [CONCURRENT = 8, REQUESTS = 16, MAX_BATCH = DEFAULT_MAX_BATCH, RUNS = 3, COST] = process.argv
  .slice(2)
  .map(Number);
const MAX_TOKENS = 64;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

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
    slots: (inputs) => model.session.slots(inputs),
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
      /** Rows the graph's head computed per forward: the picked ones, padded per sequence to its run's most. */
      head_rows_per_forward: profile.headRows / forwards,
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
console.log(
  `garbage collection pauses (inside the parts above): ${mid((r) => r.gc_ms).toFixed(2)} ms per forward`,
);
console.log("shapes:", shape);

/**
 * What splitting a batch by length buys (the session's forwardCostTokens): 7 sequences taking a
 * denoising step (a block of 32 masks against ~110 cached tokens) and one bringing `extra`
 * tokens of context before its block (a committed block, a prefill), in one padded graph run
 * against two, alternating, with the greedy statistics; wall and CPU ms, medians. The implied
 * cost of a run, in token slots: the slots splitting saves, less the time it saved over the
 * time of a slot in the padded run.
 */
async function splitCost(extra: number, repeats = 15) {
  const graph = join(SHIPPED_MODEL_DIR, model.manifest.graph.file);
  const together = await DenoiserSession.create(graph, model.manifest, {
    forwardCostTokens: Number.POSITIVE_INFINITY,
  });
  // Runs cost nothing and cache padding nothing: the one with context goes apart, the rest together.
  const split = await DenoiserSession.create(graph, model.manifest, {
    forwardCostTokens: 0,
    pastPositionCost: 0,
  });
  const mask = model.manifest.special_tokens.mask;
  const inputs: ForwardInput[] = [];
  for (let b = 0; b < 8; b++) {
    const ids = Array.from({ length: 100 + 3 * b }, (_, i) => 100 + ((i * 7 + b) % 500));
    const prefill = await together.forward(ids, [], KvCache.empty(model.manifest));
    const cache = KvCache.empty(model.manifest).append(prefill.newKey, prefill.newValue);
    const context = b === 7 ? ids.slice(0, extra) : [];
    inputs.push({ context, block: new Array(32).fill(mask), cache, rows: range(context.length, 32) });
  }
  const times = { together: [] as number[], split: [] as number[] };
  const cpu = { together: [] as number[], split: [] as number[] };
  for (let r = 0; r <= repeats; r++) {
    for (const [name, session] of [
      ["together", together],
      ["split", split],
    ] as const) {
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await session.forwardBatch(inputs, { stats: true });
      const c = process.cpuUsage(c0);
      if (r === 0) continue; // warm-up
      times[name].push(performance.now() - t0);
      cpu[name].push((c.user + c.system) / 1000);
    }
  }
  await together.release();
  await split.release();
  const slots = { together: 8 * (32 + extra), split: 7 * 32 + (32 + extra) };
  const [t, s] = [median(times.together), median(times.split)];
  return {
    extra_context: extra,
    together_ms: t,
    split_ms: s,
    together_cpu_ms: median(cpu.together),
    split_cpu_ms: median(cpu.split),
    slots_saved: slots.together - slots.split,
    run_cost_slots: slots.together - slots.split - (t - s) / (t / slots.together),
  };
}
const splits = [await splitCost(32), await splitCost(100)];
console.log(
  "\nOne padded graph run against runs split by length (7 × 32 tokens, one with context before its block)",
);
console.table(
  splits.map((x) => ({
    "context before its block": x.extra_context,
    "one run ms (CPU)": `${x.together_ms.toFixed(1)} (${x.together_cpu_ms.toFixed(1)})`,
    "split ms (CPU)": `${x.split_ms.toFixed(1)} (${x.split_cpu_ms.toFixed(1)})`,
    "padded slots saved": x.slots_saved,
    "implied cost of a run (slots)": x.run_cost_slots.toFixed(0),
  })),
);

writeResult("step-profile", {
  ...stamp(),
  model: model.manifest.name,
  concurrent: CONCURRENT,
  requests: REQUESTS,
  max_batch: MAX_BATCH,
  median: { step_ms: stepMs, parts, gc_ms: mid((r) => r.gc_ms) },
  runs,
  split_by_length: splits,
});
await model.close();

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
writeReadmeSection(
  "bench-step",
  [
    `Measured ${new Date().toISOString().slice(0, 10)} (\`bench/step-profile.ts\`, \`bench/results/step-profile.json\`): ${CONCURRENT} concurrent generations (${REQUESTS} MBPP prompts, ≤ ${MAX_TOKENS} tokens, τ 0.9) through the node's scheduler, ${mid((r) => r.tokens_per_s).toFixed(0)} tokens/s; one forward's time by part, median of ${RUNS} runs:`,
    "",
    "| part of a step | ms per forward | share |",
    "|---|---|---|",
    ...Object.entries(parts).map(([part, ms]) => `| ${part} | ${ms.toFixed(2)} | ${pct(ms / stepMs)} |`),
    `| whole step | ${stepMs.toFixed(2)} | 100% |`,
    "",
    `Garbage collection pauses (inside the parts above): ${mid((r) => r.gc_ms).toFixed(2)} ms per forward. ` +
      `Shape: ${shape?.mean_sequences.toFixed(1)} sequences per forward in ${shape?.graph_runs_per_forward.toFixed(2)} graph runs, ${shape?.mean_time.toFixed(1)} new tokens and ${shape?.mean_past.toFixed(0)} cached at the longest; ` +
      `padded new-token slots ${pct(shape?.padded_tokens_run ?? 0)} (one graph run per forward would pad ${pct(shape?.padded_tokens ?? 0)}), padded cache positions ${pct(shape?.padded_past ?? 0)}; ` +
      `the pick graph reads ${shape?.picked_rows_per_forward.toFixed(0)} rows per forward, and the graph's head computes ${shape?.head_rows_per_forward.toFixed(0)} (\`logit_rows\` is per sequence: each gets as many rows as the one asking most in its run).`,
  ].join("\n"),
);
