/**
 * `npm run bench:distill -- <model dir> <model dir> …`: what stages 3-4 buy, side by side in one
 * run. Each model (e.g. the stage-2 model, then its stage-3 and stage-4 fine-tunes, exported with
 * models/python/export.py) decodes the same held-out MBPP prompts greedily at several thresholds,
 * block 32, in this process (the runtime the node runs): tokens per forward, tokens/s, and quality
 * — the function's lines parse, and the completion's bits per token under the autoregressive
 * twin. Then each model is served by `npm start` (SPROUT_MODEL_DIR) and the same prompts go
 * through the API at each τ: tokens per forward as a client sees it in `usage`.
 *
 * DISTILL_PROMPTS (default 40), DISTILL_THRESHOLDS (default 0.9,0.7,0.5) and DISTILL_API_THRESHOLDS
 * (default: the same) change the sweep.
 * Prints tables and writes bench/results/distill.json.
 */
import { join, resolve } from "node:path";
import { loadModel, TWIN_MODEL_DIR } from "../models/src/index.ts";
import { TextTokenizer } from "../models/src/tokenizer.ts";
import { freePort, startSprout, whenReady } from "../test/support/sprout.ts";
import { dialRow, mbppTasks } from "./quality.ts";
import { stamp, writeResult } from "./report.ts";

const dirs = process.argv.slice(2).map((dir) => resolve(dir));
if (dirs.length === 0) {
  console.error("usage: npm run bench:distill -- <model dir> [<model dir> …]");
  process.exit(2);
}
/** Held-out MBPP prompts: the first PROMPTS of the test split (task ids 11…; stage 4 trains on the train split, 601-974). */
const PROMPTS = Number(process.env.DISTILL_PROMPTS ?? 40);
const MAX_TOKENS = 64;
const THRESHOLDS = (process.env.DISTILL_THRESHOLDS ?? "0.9,0.7,0.5").split(",").map(Number);
const API_THRESHOLDS = (process.env.DISTILL_API_THRESHOLDS ?? THRESHOLDS.join(",")).split(",").map(Number);
const tasks = mbppTasks(PROMPTS);
const twin = await loadModel(TWIN_MODEL_DIR);
const tokenizer = await TextTokenizer.fromFile(join(TWIN_MODEL_DIR, "tokenizer.json"));

const engine = [];
for (const dir of dirs) {
  const model = await loadModel(dir);
  for (const threshold of THRESHOLDS) {
    const row = await dialRow(
      `${dir.split("/").at(-1)} τ ${threshold}`,
      model,
      { threshold },
      {
        tasks,
        twin,
        tokenizer,
        maxTokens: MAX_TOKENS,
      },
    );
    engine.push({ model: dir, threshold, ...row });
    console.log(JSON.stringify(engine.at(-1)));
  }
  await model.session.release();
}

/** The same prompts through the API: `npm start` serving this model, POST /v1/completions, each τ. */
async function throughApi(dir: string) {
  const edgePort = await freePort();
  const key = "sk-bench-distill";
  const sprout = startSprout({
    SPROUT_API_KEY: key,
    SPROUT_EDGE_PORT: String(edgePort),
    SPROUT_NODE_PORT: String(await freePort()),
    SPROUT_MODEL_DIR: dir,
  });
  const rows = [];
  try {
    await whenReady(sprout);
    for (const threshold of API_THRESHOLDS) {
      let tokens = 0;
      let forwards = 0;
      const t0 = performance.now();
      for (const task of tasks) {
        const response = await fetch(`http://127.0.0.1:${edgePort}/v1/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: "sprout-tiny",
            prompt: task.prompt,
            max_tokens: MAX_TOKENS,
            threshold,
          }),
        });
        const body = (await response.json()) as {
          usage: { completion_tokens: number; forward_passes: number };
        };
        tokens += body.usage.completion_tokens;
        forwards += body.usage.forward_passes;
      }
      const seconds = (performance.now() - t0) / 1000;
      rows.push({
        model: dir,
        threshold,
        tokens_per_forward: tokens / forwards,
        tokens_per_s: tokens / seconds,
      });
      console.log(JSON.stringify(rows.at(-1)));
    }
    return rows;
  } finally {
    sprout.child.kill("SIGINT");
    await sprout.exited;
  }
}

const api = [];
for (const dir of dirs) api.push(...(await throughApi(dir)));

console.log(`\n${PROMPTS} held-out MBPP prompts, ≤ ${MAX_TOKENS} tokens, greedy, block 32`);
console.table(
  engine.map((r) => ({
    model: r.model.split("/").at(-1),
    τ: r.threshold,
    "tokens/forward": r.tokens_per_forward.toFixed(2),
    "tokens/s": r.tokens_per_s.toFixed(0),
    "syntax-valid": `${(100 * r.syntax_valid).toFixed(1)}%`,
    "twin bits/token": r.twin_bits_per_token.toFixed(2),
    "repeated 4-grams": `${(100 * r.repeated_4grams).toFixed(0)}%`,
  })),
);
console.log("Through the API (npm start, POST /v1/completions)");
console.table(
  api.map((r) => ({
    model: r.model.split("/").at(-1),
    τ: r.threshold,
    "tokens/forward": r.tokens_per_forward.toFixed(2),
    "tokens/s": r.tokens_per_s.toFixed(0),
  })),
);
const out = writeResult("distill", { ...stamp(), prompts: PROMPTS, max_tokens: MAX_TOKENS, engine, api });
console.log(`wrote ${out}`);
