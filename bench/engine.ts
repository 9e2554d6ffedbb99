/**
 * `npm run bench`: the decoding engine on this machine, side by side in one run, for the shipped
 * model (and its autoregressive twin) through the TypeScript runtime (onnxruntime-node, CPU).
 *
 *  1. the machine's ceiling: a large float32 GEMM through onnxruntime (bench/matmul.onnx);
 *  2. the cost of one forward against the number of tokens in it (the cost model's two terms);
 *  3. step latency against context length, with the KV cache and without (recomputing the context);
 *  4. the speed/quality dial on MBPP prompts: τ, fixed steps, entropy bound and block size, each
 *     against one-token-per-step decoding of the same model and the twin decoding
 *     autoregressively, with the quality each reaches (syntax-valid rate of the function);
 *  5. aggregate tokens/s with 1 … 16 concurrent requests through the batching scheduler, the
 *     share of the GEMM ceiling reached, where the rest of the time goes, and peak memory.
 *
 * Prints tables, writes bench/results/engine.json and puts the tables into the README.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import {
  type DecodeOptions,
  loadModel,
  type Model,
  SHIPPED_MODEL_DIR,
  TWIN_MODEL_DIR,
} from "../models/src/index.ts";
import { KvCache } from "../models/src/session.ts";
import { TextTokenizer } from "../models/src/tokenizer.ts";
import { concurrency as runConcurrent } from "./concurrency.ts";
import { dialRow, mbppTasks } from "./quality.ts";
import { stamp, writeReadmeSection, writeResult } from "./report.ts";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const PROMPT_COUNT = 40;
const MAX_TOKENS = 64;

const model = await loadModel(SHIPPED_MODEL_DIR);
const twin = await loadModel(TWIN_MODEL_DIR);
const tokenizer = await TextTokenizer.fromFile(join(SHIPPED_MODEL_DIR, "tokenizer.json"));
const { architecture: arch } = model.manifest;

// 1. The ceiling: GFLOP/s of a 1024³ float32 matrix multiply, the best of a few runs.
async function gemmRate(size = 1024, runs = 8): Promise<number> {
  const session = await ort.InferenceSession.create(here("./matmul.onnx"));
  const a = new ort.Tensor(
    "float32",
    Float32Array.from({ length: size * size }, (_, i) => (i % 7) / 7),
    [size, size],
  );
  const b = new ort.Tensor(
    "float32",
    Float32Array.from({ length: size * size }, (_, i) => (i % 5) / 5),
    [size, size],
  );
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await session.run({ a, b });
    best = Math.min(best, performance.now() - t0);
  }
  await session.release();
  return (2 * size ** 3) / (best / 1000) / 1e9;
}

/** FLOPs of one token through the network (matrix multiplies, incl. the output head) with `context` tokens to attend to. */
function flopsPerToken(context: number): number {
  const { d_model: d, n_layers: layers, vocab_size: vocab, ffn_hidden: ffn } = arch;
  const weights = layers * (4 * d * d + 3 * d * ffn) + d * vocab;
  return 2 * weights + 4 * layers * d * context;
}

async function timeForward(
  context: number,
  block: number[],
  cache: KvCache,
  repeats: number,
): Promise<number> {
  const ids = Array.from({ length: context }, (_, i) => 100 + (i % 500));
  await model.session.forward(ids, block, cache);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await model.session.forward(ids, block, cache);
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function cacheOf(length: number): Promise<KvCache> {
  const ids = Array.from({ length }, (_, i) => 100 + (i % 500));
  const prefill = await model.session.forward(ids, [], KvCache.empty(model.manifest));
  return KvCache.empty(model.manifest).append(prefill.newKey, prefill.newValue);
}

// 2. Cost model: one denoising step (a forward with the greedy statistics of its rows) costs
// fixed + per-token × tokens, fitted by least squares over 1 … 64 tokens (the sizes decoding
// uses) at 128 cached tokens; 128 and 256 are shown, not fitted.
async function costModel() {
  const cache = await cacheOf(128);
  const mask = model.manifest.special_tokens.mask;
  const points: { tokens: number; ms: number }[] = [];
  for (const tokens of [1, 2, 4, 8, 16, 32, 64, 128, 256]) {
    const block = new Array(tokens).fill(mask);
    await model.session.forwardBatch([{ context: [], block, cache }], { stats: true });
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      await model.session.forwardBatch([{ context: [], block, cache }], { stats: true });
      times.push(performance.now() - t0);
    }
    points.push({ tokens, ms: median(times) });
  }
  const fitted = points.filter((p) => p.tokens <= 64);
  const n = fitted.length;
  const mx = sum(fitted.map((p) => p.tokens)) / n;
  const my = sum(fitted.map((p) => p.ms)) / n;
  const slope =
    sum(fitted.map((p) => (p.tokens - mx) * (p.ms - my))) / sum(fitted.map((p) => (p.tokens - mx) ** 2));
  return { points, fixed_ms: my - slope * mx, per_token_ms: slope };
}

// 3. Step latency (a block of 32 masks) against context, with the cache and recomputing it.
async function stepLatency() {
  const block = new Array(32).fill(model.manifest.special_tokens.mask);
  const rows = [];
  for (const context of [128, 256, 512, 1024 - 32]) {
    const cached = await timeForward(0, block, await cacheOf(context), 15);
    const uncached = await timeForward(context, block, KvCache.empty(model.manifest), 5);
    rows.push({ context, with_cache_ms: cached, without_cache_ms: uncached });
  }
  return rows;
}

/**
 * Where a batched step's time goes: 8 sequences × a block of 32 against 128 cached tokens each,
 * the graph alone, then with the greedy statistics (pick.onnx) over its 256 rows.
 */
async function breakdown() {
  const cache = await cacheOf(128);
  const block = new Array(32).fill(model.manifest.special_tokens.mask);
  const inputs = Array.from({ length: 8 }, () => ({ context: [], block, cache }));
  const time = async (stats: boolean) => {
    await model.session.forwardBatch(inputs, { stats });
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      await model.session.forwardBatch(inputs, { stats });
      times.push(performance.now() - t0);
    }
    return median(times);
  };
  const graph = await time(false);
  const withStats = await time(true);
  const gflops = (8 * 32 * flopsPerToken(128 + 16)) / (graph / 1000) / 1e9;
  return { graph_ms: graph, pick_ms: withStats - graph, graph_gflops: gflops };
}

// 4. The dial, on MBPP prompts (the first PROMPT_COUNT tasks), greedy: bench/quality.ts.
const tasks = mbppTasks(PROMPT_COUNT);
const dial = (name: string, which: Model, settings: Partial<DecodeOptions>) =>
  dialRow(name, which, settings, { tasks, twin, tokenizer, maxTokens: MAX_TOKENS });

// 5. Concurrency through the scheduler (bench/concurrency.ts): `level` requests at a time, 16 in
// all, with the node's batch limits (batching on) or one sequence per forward (off).
async function concurrency(level: number, maxBatch: number | undefined, which: Model = model) {
  const requests = tasks.slice(0, 16).map((task) => ({ prompt: task.prompt, maxTokens: MAX_TOKENS }));
  const run = await runConcurrent(which, requests, level, maxBatch);
  const meanContext = 128; // prompts ≈ 60–120 tokens plus up to 64 generated
  return {
    model: run.model,
    concurrency: level,
    max_batch: run.max_batch,
    tokens_per_s: run.tokens_per_s,
    mean_batch: run.mean_batch,
    token_forwards_per_s: run.token_forwards_per_s,
    padded_share: run.padded_share,
    gflops: (run.token_forwards * flopsPerToken(meanContext)) / run.wall_s / 1e9,
    forward_share: run.forward_share,
    peak_rss_mb: run.peak_rss_mb,
  };
}

const gemm = await gemmRate();
console.log(`GEMM ceiling: ${gemm.toFixed(1)} GFLOP/s (float32 1024³ through onnxruntime)`);
const cost = await costModel();
const steps = await stepLatency();
const split = await breakdown();
const dials = [
  await dial("one token per step (τ = 1)", model, { threshold: 1 }),
  await dial("τ 0.9", model, { threshold: 0.9 }),
  await dial("τ 0.7", model, { threshold: 0.7 }),
  await dial("τ 0.5", model, { threshold: 0.5 }),
  await dial("τ 0.3", model, { threshold: 0.3 }),
  await dial("τ 0.5, block 16", model, { threshold: 0.5, blockSize: 16 }),
  await dial("τ 0.5, block 8", model, { threshold: 0.5, blockSize: 8 }),
  await dial("τ 0.5, block 64", model, { threshold: 0.5, blockSize: 64 }),
  await dial("entropy ≤ 1 nat", model, { entropyBound: 1 }),
  await dial("entropy ≤ 4 nats", model, { entropyBound: 4 }),
  await dial("8 steps / block of 32", model, { steps: 8 }),
  await dial("4 steps / block of 32", model, { steps: 4 }),
  await dial("autoregressive twin", twin, {}),
];
/**
 * The cost model's prediction of each row's speed against the twin: a forward costs a + b·tokens,
 * so diffusion pays a + b·block per forward for `tokens_per_forward` tokens, the twin a + b per token.
 */
const twinRow = dials.at(-1) as (typeof dials)[number];
const cost1 = cost.fixed_ms + cost.per_token_ms;
const versusTwin = dials.map((d) => {
  const block = d.settings.blockSize ?? 32;
  const predicted =
    d === twinRow ? 1 : (d.tokens_per_forward * cost1) / (cost.fixed_ms + cost.per_token_ms * block);
  return { predicted, measured: d.tokens_per_s / twinRow.tokens_per_s };
});
const levels: Awaited<ReturnType<typeof concurrency>>[] = [];
for (const level of [1, 2, 4, 8, 16]) {
  levels.push(await concurrency(level, undefined)); // batching on: the node's limits
  levels.push(await concurrency(level, 1)); // off: one sequence per forward, the requests taking turns
}
for (const level of [1, 8]) levels.push(await concurrency(level, undefined, twin)); // the twin: 1 token per forward

/** A level's tokens/s against the same level with batching off, and against one request alone (both batching on). */
const versus = (l: (typeof levels)[number]) => {
  const same = (m: (typeof levels)[number]) => m.model === l.model && m.max_batch > 1;
  const off = levels.find((m) => m.model === l.model && m.concurrency === l.concurrency && m.max_batch === 1);
  const alone = levels.find((m) => same(m) && m.concurrency === 1);
  return {
    off: l.max_batch > 1 && off ? (l.tokens_per_s / off.tokens_per_s).toFixed(2) : "",
    alone: l.max_batch > 1 && alone ? (l.tokens_per_s / alone.tokens_per_s).toFixed(2) : "",
  };
};
const table = (rows: Record<string, string | number>[]) => console.table(rows);
console.log(
  `\nCost of one step (forward + greedy statistics) at 128 cached tokens: ${cost.fixed_ms.toFixed(2)} ms + ${cost.per_token_ms.toFixed(3)} ms × tokens (fitted on 1 … 64)`,
);
table(cost.points.map((p) => ({ tokens: p.tokens, "median ms": p.ms.toFixed(2) })));
console.log(
  `A batched step (8 × 32 tokens, 128 cached each): graph ${split.graph_ms.toFixed(1)} ms (${split.graph_gflops.toFixed(1)} GFLOP/s, ${((100 * split.graph_gflops) / gemm).toFixed(0)}% of the ceiling) + greedy statistics ${split.pick_ms.toFixed(1)} ms`,
);
console.log("\nOne denoising step (a block of 32) against context length");
table(
  steps.map((s) => ({
    context: s.context,
    "with cache ms": s.with_cache_ms.toFixed(2),
    "without cache ms": s.without_cache_ms.toFixed(2),
  })),
);
console.log(`\nThe dial: ${tasks.length} MBPP prompts, ≤ ${MAX_TOKENS} tokens, greedy, block 32 unless said`);
table(
  dials.map((d, i) => ({
    decoding: d.name,
    "×twin predicted": versusTwin[i]?.predicted.toFixed(2) ?? "",
    "×twin measured": versusTwin[i]?.measured.toFixed(2) ?? "",
    "tokens/forward": d.tokens_per_forward.toFixed(2),
    "tokens/s": d.tokens_per_s.toFixed(0),
    "syntax-valid": `${(100 * d.syntax_valid).toFixed(1)}%`,
    "twin bits/token": d.twin_bits_per_token.toFixed(2),
    "mean tokens": d.mean_tokens.toFixed(1),
  })),
);
console.log(
  `\nConcurrent requests through the scheduler (16 requests, τ 0.9); ceiling ${gemm.toFixed(1)} GFLOP/s`,
);
table(
  levels.map((l) => ({
    model: l.model,
    concurrent: l.concurrency,
    batching: l.max_batch > 1 ? "on" : "off",
    "tokens/s": l.tokens_per_s.toFixed(0),
    "× off": versus(l).off,
    "× alone": versus(l).alone,
    "mean batch": l.mean_batch.toFixed(1),
    "GFLOP/s": l.gflops.toFixed(1),
    "of ceiling": `${((100 * l.gflops) / gemm).toFixed(0)}%`,
    "in forward": `${(100 * l.forward_share).toFixed(0)}%`,
    padding: `${(100 * l.padded_share).toFixed(0)}%`,
    "peak RSS MB": l.peak_rss_mb.toFixed(0),
  })),
);

const result = {
  ...stamp(),
  model: model.manifest.name,
  twin: twin.manifest.name,
  gemm_gflops: gemm,
  flops_per_token_forward_at_128: flopsPerToken(128),
  cost_model: cost,
  batched_step_breakdown: split,
  step_latency: steps,
  dial: dials.map((d, i) => ({ ...d, versus_twin: versusTwin[i] })),
  concurrency: levels,
};
await model.close();
await twin.close();
console.log(`wrote ${writeResult("engine", result)}`);

// The README quotes the latest run, between its bench markers.
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const markdown = [
  `Measured ${result.date.slice(0, 10)}, ${result.machine.cpus} × ${result.machine.cpu}, Node ${result.machine.node}, model \`${result.model}\` (twin \`${result.twin}\`); \`bench/results/engine.json\`.`,
  "",
  `The speed/quality dial on ${tasks.length} MBPP prompts (≤ ${MAX_TOKENS} tokens, greedy, block 32 unless said). Quality: the function's complete lines parse (syntax-valid), and the completion's bits per token under the autoregressive twin (lower is more plausible code):`,
  "",
  "| decoding | tokens/forward | tokens/s | × twin's tokens/s (cost model predicts) | syntax-valid | twin bits/token |",
  "|---|---|---|---|---|---|",
  ...dials.map(
    (d, i) =>
      `| ${d.name} | ${d.tokens_per_forward.toFixed(2)} | ${d.tokens_per_s.toFixed(0)} | ${versusTwin[i]?.measured.toFixed(2)} (${versusTwin[i]?.predicted.toFixed(2)}) | ${pct(d.syntax_valid)} | ${d.twin_bits_per_token.toFixed(2)} |`,
  ),
  "",
  "One denoising step (a block of 32) against context length:",
  "",
  "| context | with KV cache (ms) | recomputing the context (ms) |",
  "|---|---|---|",
  ...steps.map((s) => `| ${s.context} | ${s.with_cache_ms.toFixed(1)} | ${s.without_cache_ms.toFixed(1)} |`),
  "",
  `Concurrent requests through the batching scheduler (16 requests, τ 0.9; GEMM ceiling ${gemm.toFixed(0)} GFLOP/s):`,
  "",
  "| model | concurrent | batching | tokens/s | × batching off | × one request alone | mean batch | share of GEMM ceiling | time in forwardBatch (graph + statistics) | peak RSS of the bench process, both models loaded (MB) |",
  "|---|---|---|---|---|---|---|---|---|---|",
  ...levels.map(
    (l) =>
      `| ${l.model} | ${l.concurrency} | ${l.max_batch > 1 ? "on" : "off"} | ${l.tokens_per_s.toFixed(0)} | ${versus(l).off} | ${versus(l).alone} | ${l.mean_batch.toFixed(1)} | ${pct(l.gflops / gemm)} | ${pct(l.forward_share)} | ${l.peak_rss_mb.toFixed(0)} |`,
  ),
  "",
  `Cost model: one step (a forward and the greedy statistics of its rows) at 128 cached tokens costs ${cost.fixed_ms.toFixed(2)} ms + ${cost.per_token_ms.toFixed(3)} ms per token in it (fitted on 1 … 64 tokens). A batched step (8 × 32 tokens, 128 cached each): the graph ${split.graph_ms.toFixed(1)} ms (${split.graph_gflops.toFixed(0)} GFLOP/s, ${pct(split.graph_gflops / gemm)} of the ceiling), the greedy statistics of its 256 rows ${split.pick_ms.toFixed(1)} ms more.`,
].join("\n");
writeReadmeSection("bench", markdown);
