/**
 * A large imported model in the TypeScript runtime (what a node does with it): load time (the
 * sha256 of every file included), a short greedy generation after a 64-token prompt, ms per
 * forward and resident memory. For the model directories bench/large_import.py builds:
 *
 *   /usr/bin/time -v npx tsx bench/large-decode.ts /work/large/qwen3-1.7b-sprout
 *
 * (peak memory from /usr/bin/time; the resident memory printed is once loaded and decoding).
 */
import { loadModel } from "../models/src/index.ts";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: bench/large-decode.ts MODEL_DIR");
  process.exit(2);
}
const loading = performance.now();
const model = await loadModel(dir);
const loadMs = performance.now() - loading;
// The large-shape checkpoints have a word-level tokenizer: "t0" … "t151935".
const prompt = Array.from({ length: 64 }, (_, i) => `t${(i * 37) % 5000}`).join(" ");
const started = performance.now();
let usage = { completion_tokens: 0, forward_passes: 0 };
for await (const event of model.generate({ prompt, maxTokens: 8, threshold: 1 })) {
  if (event.type === "done") usage = event.usage;
}
const decodeMs = performance.now() - started;
console.log(
  JSON.stringify({
    model: model.manifest.name,
    load_ms: Math.round(loadMs),
    tokens: usage.completion_tokens,
    forwards: usage.forward_passes,
    decode_ms: Math.round(decodeMs),
    ms_per_forward: Math.round(decodeMs / usage.forward_passes),
    resident_gib: +(process.memoryUsage().rss / 2 ** 30).toFixed(2),
  }),
);
await model.close();
