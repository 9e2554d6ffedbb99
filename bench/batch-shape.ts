/**
 * What batch shape pays on this machine: the numbers behind the scheduler's limits
 * (apps/denoiser/src/scheduler.ts; the node's SPROUT_MAX_BATCH and SPROUT_MAX_BATCH_TOKENS).
 *
 *  1. Denoising steps side by side: `b` sequences, each a block of `block` masks against
 *     `past` cached tokens, one forward with the greedy statistics of every row, for
 *     b = 1 … 16. Reports milliseconds per forward and per token, and the speed-up over running
 *     the same b steps one at a time: where that stops growing, more sequences in a forward
 *     only make each wait longer.
 *  2. When one request already fills the machine: a prompt of P tokens (its prefill riding along
 *     with its first block) beside 7 plain steps, in one forwardBatch (split into graph runs by
 *     length, as the node runs it) against the two apart.
 *
 *   npx tsx bench/batch-shape.ts [repeats=9]
 *
 * Medians of `repeats`, the shapes interleaved so that drift falls on all alike. Prints tables,
 * writes bench/results/batch-shape.json and puts them into the README.
 */
import { loadModel, SHIPPED_MODEL_DIR } from "../models/src/index.ts";
import { type ForwardInput, KvCache } from "../models/src/session.ts";
import { stamp, writeReadmeSection, writeResult } from "./report.ts";

const [REPEATS = 9] = process.argv.slice(2).map(Number);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const model = await loadModel(SHIPPED_MODEL_DIR);
const { mask } = model.manifest.special_tokens;
const tokens = (n: number, from = 0) => Array.from({ length: n }, (_, i) => 100 + ((from + i) % 500));

/** A cache of `length` committed tokens; distinct caches so that no two rows share storage. */
async function cacheOf(length: number, salt: number): Promise<KvCache> {
  const empty = KvCache.empty(model.manifest);
  if (length === 0) return empty;
  const out = await model.session.forward(tokens(length, salt), [], empty);
  return empty.append(out.newKey, out.newValue);
}

/** Median ms of each shape (a list of forwardBatch calls run back to back), interleaved. */
async function timeShapes(shapes: ForwardInput[][][]): Promise<number[]> {
  const times: number[][] = shapes.map(() => []);
  for (let r = -1; r < REPEATS; r++) {
    for (const [s, calls] of shapes.entries()) {
      const t0 = performance.now();
      for (const inputs of calls) await model.session.forwardBatch(inputs, { stats: true });
      if (r >= 0) times[s]?.push(performance.now() - t0);
    }
  }
  return times.map(median);
}

const PAST = 128;
const caches = await Promise.all(Array.from({ length: 16 }, (_, i) => cacheOf(PAST, 7 * i)));
const steps = [];
for (const block of [32, 8]) {
  const step = (i: number): ForwardInput => ({
    context: [],
    block: new Array(block).fill(mask),
    cache: caches[i] as KvCache,
  });
  const sizes = [1, 2, 4, 6, 8, 12, 16];
  // Each size: once batched; and (for the speed-up) the same steps one at a time.
  const batched = await timeShapes(sizes.map((b) => [Array.from({ length: b }, (_, i) => step(i))]));
  const [alone = 1] = batched;
  for (const [k, b] of sizes.entries()) {
    const ms = batched[k] as number;
    steps.push({
      block,
      past: PAST,
      sequences: b,
      tokens: b * block,
      ms,
      ms_per_token: ms / (b * block),
      speedup_over_one_at_a_time: (b * alone) / ms,
    });
  }
}

// 2. A prefill of P tokens beside 7 plain steps of 32.
const fill = [];
for (const prompt of [64, 128, 256, 480]) {
  const prefill: ForwardInput = {
    context: tokens(prompt, 3),
    block: new Array(32).fill(mask),
    cache: KvCache.empty(model.manifest),
    rows: Array.from({ length: 32 }, (_, i) => prompt + i),
  };
  const others = Array.from({ length: 7 }, (_, i) => ({
    context: [],
    block: new Array(32).fill(mask),
    cache: caches[i] as KvCache,
  }));
  const [together = 0, apart = 0, alone = 0] = await timeShapes([
    [[prefill, ...others]],
    [[prefill], others],
    [[prefill]],
  ]);
  fill.push({ prompt, together_ms: together, apart_ms: apart, prefill_alone_ms: alone });
}

console.log(
  `Denoising steps side by side (${PAST} cached tokens each, statistics of every row), medians of ${REPEATS}`,
);
console.table(
  steps.map((s) => ({
    block: s.block,
    sequences: s.sequences,
    tokens: s.tokens,
    "ms / forward": s.ms.toFixed(2),
    "ms / token": s.ms_per_token.toFixed(4),
    "× one at a time": s.speedup_over_one_at_a_time.toFixed(2),
  })),
);
console.log(
  "A prompt's prefill (with its first block of 32) beside 7 steps of 32: one forwardBatch, or apart",
);
console.table(
  fill.map((f) => ({
    prompt: f.prompt,
    "together ms": f.together_ms.toFixed(1),
    "apart ms": f.apart_ms.toFixed(1),
    "prefill alone ms": f.prefill_alone_ms.toFixed(1),
  })),
);

writeResult("batch-shape", {
  ...stamp(),
  model: model.manifest.name,
  repeats: REPEATS,
  steps,
  prefill_beside_steps: fill,
});
await model.close();

writeReadmeSection(
  "bench-batch-shape",
  [
    `Measured ${new Date().toISOString().slice(0, 10)} (\`bench/batch-shape.ts\`, \`bench/results/batch-shape.json\`), medians of ${REPEATS}: denoising steps side by side in one forward (${PAST} cached tokens each, the greedy statistics of every row), against the same steps one at a time:`,
    "",
    "| block | sequences | tokens | ms per forward | ms per token | × one at a time |",
    "|---|---|---|---|---|---|",
    ...steps.map(
      (s) =>
        `| ${s.block} | ${s.sequences} | ${s.tokens} | ${s.ms.toFixed(1)} | ${s.ms_per_token.toFixed(3)} | ${s.speedup_over_one_at_a_time.toFixed(2)} |`,
    ),
    "",
    "A prompt's prefill (riding along with its first block of 32) beside 7 steps of 32, in one forwardBatch (the session runs them as it plans) or as two:",
    "",
    "| prompt tokens | together (ms) | apart (ms) | the prefill alone (ms) |",
    "|---|---|---|---|",
    ...fill.map(
      (f) =>
        `| ${f.prompt} | ${f.together_ms.toFixed(1)} | ${f.apart_ms.toFixed(1)} | ${f.prefill_alone_ms.toFixed(1)} |`,
    ),
  ].join("\n"),
);
