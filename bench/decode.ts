/**
 * `npm run bench`: what one decoding step and one completion cost on this machine, for the
 * shipped model through the TypeScript runtime (onnxruntime-node, CPU). Prints a table and
 * writes bench/results/decode.json, and puts the tables into the README. Side by side in one run: threshold decoding against
 * one-token-per-step decoding of the same model.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, SHIPPED_MODEL_DIR } from "../models/src/index.ts";
import { loadManifest } from "../models/src/manifest.ts";
import { DenoiserSession, KvCache } from "../models/src/session.ts";

const REPEATS = 5;
const PROMPTS = [
  "def fibonacci(n):\n",
  "import os\n\n\ndef list_python_files(root):\n",
  "class Stack:\n    def __init__(self):\n",
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

async function stepLatency(blockSize: number, context: number): Promise<number> {
  const manifest = await loadManifest(SHIPPED_MODEL_DIR);
  const session = await DenoiserSession.create(join(SHIPPED_MODEL_DIR, manifest.graph.file), manifest);
  const contextIds = Array.from({ length: context }, (_, i) => 100 + (i % 500));
  const prefill = await session.forward(contextIds, [], KvCache.empty(manifest));
  const cache = KvCache.empty(manifest).append(prefill.newKey, prefill.newValue);
  const block = new Array(blockSize).fill(manifest.special_tokens.mask);
  await session.forward([], block, cache);
  const times: number[] = [];
  for (let i = 0; i < REPEATS * 4; i++) {
    const t0 = performance.now();
    await session.forward([], block, cache);
    times.push(performance.now() - t0);
  }
  await session.release();
  return median(times);
}

async function completion(threshold: number, blockSize: number, maxTokens: number) {
  const model = await loadModel(SHIPPED_MODEL_DIR);
  const walls: number[] = [];
  let tokens = 0;
  let forwards = 0;
  let steps = 0;
  for (let r = -1; r < REPEATS; r++) {
    for (const prompt of PROMPTS) {
      const t0 = performance.now();
      let runTokens = 0;
      let runForwards = 0;
      let runSteps = 0;
      for await (const event of model.generate({ prompt, maxTokens, blockSize, threshold })) {
        if (event.type === "block") runSteps += event.steps;
        if (event.type === "done") {
          runTokens = event.usage.completion_tokens;
          runForwards = event.usage.forward_passes;
        }
      }
      if (r < 0) continue; // a warm-up round, not counted
      walls.push(performance.now() - t0);
      tokens += runTokens;
      forwards += runForwards;
      steps += runSteps;
    }
  }
  await model.close();
  const wall = walls.reduce((a, b) => a + b, 0);
  return {
    threshold,
    block_size: blockSize,
    max_tokens: maxTokens,
    median_completion_ms: median(walls),
    /** Generated tokens per forward pass (prefill and cache updates ride along with steps). */
    tokens_per_forward: tokens / forwards,
    steps_per_forward: steps / forwards,
    mean_tokens: tokens / walls.length,
    tokens_per_s: tokens / (wall / 1000),
  };
}

const steps = [];
for (const [blockSize, context] of [
  [32, 16],
  [32, 128],
  [32, 512],
]) {
  steps.push({
    block_size: blockSize,
    context,
    median_step_ms: await stepLatency(blockSize as number, context as number),
  });
}
// The speed/quality dial: τ = 1 is one token per step; lower τ commits more tokens per step.
const completions = [];
for (const threshold of [1, 0.9, 0.7, 0.5]) completions.push(await completion(threshold, 32, 64));

console.log("\nOne denoising step (one forward of a masked block against the KV cache)");
console.table(
  steps.map((s) => ({ block: s.block_size, context: s.context, "median ms": s.median_step_ms.toFixed(2) })),
);
console.log(
  `Completions of up to 64 tokens, ${PROMPTS.length} prompts × ${REPEATS} (greedy; stops early at end-of-text)`,
);
console.table(
  completions.map((c) => ({
    threshold: c.threshold,
    block: c.block_size,
    "median ms": c.median_completion_ms.toFixed(0),
    "tokens/forward": c.tokens_per_forward.toFixed(2),
    "mean tokens": c.mean_tokens.toFixed(1),
    "tokens/s": c.tokens_per_s.toFixed(0),
  })),
);
const result = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  model: (await loadManifest(SHIPPED_MODEL_DIR)).name,
  steps,
  completions,
};
const dir = fileURLToPath(new URL("./results/", import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "decode.json"), `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${join(dir, "decode.json")}`);

// The README quotes the latest run, between its bench markers.
const readme = fileURLToPath(new URL("../README.md", import.meta.url));
const table = [
  `Measured ${result.date.slice(0, 10)}, ${result.machine.cpus} × ${result.machine.cpu}, Node ${result.machine.node}, model \`${result.model}\`.`,
  "",
  "| block | context | one step (median ms) |",
  "|---|---|---|",
  ...steps.map((s) => `| ${s.block_size} | ${s.context} | ${s.median_step_ms.toFixed(1)} |`),
  "",
  "| τ | block | completion, ≤ 64 tokens (median ms) | mean tokens | tokens/forward | tokens/s |",
  "|---|---|---|---|---|---|",
  ...completions.map(
    (c) =>
      `| ${c.threshold} | ${c.block_size} | ${c.median_completion_ms.toFixed(0)} | ${c.mean_tokens.toFixed(1)} | ${c.tokens_per_forward.toFixed(2)} | ${c.tokens_per_s.toFixed(0)} |`,
  ),
].join("\n");
writeFileSync(
  readme,
  readFileSync(readme, "utf8").replace(
    /<!-- bench:start -->[\s\S]*<!-- bench:end -->/,
    `<!-- bench:start -->\n${table}\n<!-- bench:end -->`,
  ),
);
