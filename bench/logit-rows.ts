/**
 * What computing logits only for the rows decoding reads saves, for one model directory (run it
 * on a graph with and without `logit_rows`, alternating; issue 18):
 *
 *   node --import tsx bench/logit-rows.ts --model DIR [--runs 5] [--threads N]
 *
 *  - one 8-request batched step (DenoiserSession.forwardBatch): 8 prompts of 40–110 tokens
 *    prefilled, then a step of a 32-mask block with the previous block (32 committed tokens)
 *    riding along as context, greedy statistics on, the rows decode.ts asks for (the block's);
 *  - the same step with no context riding along (a block of masks only);
 *  - one request decoding 128 tokens alone (greedy, τ 0.9, blocks of 32): tokens/s.
 *
 * Prints one JSON line of medians (ms, tokens/s) and every run.
 */
import { parseArgs } from "node:util";
import { loadModel } from "../models/src/index.ts";
import { type ForwardInput, KvCache } from "../models/src/session.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    runs: { type: "string", default: "5" },
    threads: { type: "string" },
  },
});
if (!values.model) {
  console.error("usage: logit-rows.ts --model DIR [--runs N] [--threads N]");
  process.exit(2);
}
const runs = Number(values.runs);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const model = await loadModel(values.model, {
  ...(values.threads !== undefined && { intraOpNumThreads: Number(values.threads) }),
});
const { session, manifest } = model;
const mask = manifest.special_tokens.mask;
const BLOCK = 32;

// Eight caches of different lengths (ordinary token ids), built once.
const caches: KvCache[] = [];
for (let r = 0; r < 8; r++) {
  const prompt = Array.from({ length: 40 + r * 10 }, (_, i) => 100 + ((i * 37 + r * 11) % 5000));
  const out = await session.forward(prompt, [], KvCache.empty(manifest));
  caches.push(KvCache.empty(manifest).append(out.newKey, out.newValue));
}
const block = Array(BLOCK).fill(mask) as number[];
const committed = Array.from({ length: BLOCK }, (_, i) => 200 + i);
const blockRows = (context: number) => Array.from({ length: BLOCK }, (_, k) => context + k);
const withContext: ForwardInput[] = caches.map((cache) => ({
  context: committed,
  block,
  cache,
  rows: blockRows(committed.length),
}));
const blockOnly: ForwardInput[] = caches.map((cache) => ({ context: [], block, cache, rows: blockRows(0) }));

async function stepMs(inputs: ForwardInput[]): Promise<number> {
  const t0 = performance.now();
  await session.forwardBatch(inputs, { stats: true });
  return performance.now() - t0;
}

async function decodeTokensPerSecond(): Promise<number> {
  const t0 = performance.now();
  let tokens = 0;
  for await (const event of model.generate({
    prompt: "def fibonacci(n):\n",
    maxTokens: 128,
    threshold: 0.9,
    blockSize: BLOCK,
  })) {
    if (event.type === "block") tokens += event.ids.length;
  }
  return tokens / ((performance.now() - t0) / 1000);
}

await stepMs(withContext); // warm-up
await decodeTokensPerSecond();
const results = {
  step8WithContextMs: [] as number[],
  step8BlockOnlyMs: [] as number[],
  singleTokensPerS: [] as number[],
};
for (let r = 0; r < runs; r++) {
  results.step8WithContextMs.push(await stepMs(withContext));
  results.step8BlockOnlyMs.push(await stepMs(blockOnly));
  results.singleTokensPerS.push(await decodeTokensPerSecond());
}
await model.close();
console.log(
  JSON.stringify({
    model: values.model,
    logit_rows: manifest.graph.inputs.logit_rows !== undefined,
    median: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, Number(median(v).toFixed(2))])),
    runs: Object.fromEntries(
      Object.entries(results).map(([k, v]) => [k, v.map((x) => Number(x.toFixed(2)))]),
    ),
  }),
);
