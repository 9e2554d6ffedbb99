/**
 * Decodes one prompt with the TypeScript runtime and prints the generated ids as one JSON line:
 * what models/python/tests/test_runtime_matches_reference.py compares with each family's own
 * reference sampler.
 *
 *   node --import tsx models/scripts/decode-ids.ts --model DIR --prompt TEXT --max-tokens N
 *     [--threshold T | --steps S] [--block-size B]
 *
 * Prints `{"ids":[…],"forward_passes":n,"finish_reason":"stop"|"length"}`.
 */
import { parseArgs } from "node:util";
import { loadModel } from "../src/index.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    prompt: { type: "string" },
    "max-tokens": { type: "string" },
    threshold: { type: "string" },
    steps: { type: "string" },
    "block-size": { type: "string" },
  },
});
if (!values.model || values.prompt === undefined || !values["max-tokens"]) {
  console.error(
    "usage: decode-ids.ts --model DIR --prompt TEXT --max-tokens N [--threshold T | --steps S] [--block-size B]",
  );
  process.exit(2);
}
const number = (value: string | undefined) => (value === undefined ? undefined : Number(value));
const model = await loadModel(values.model, { intraOpNumThreads: 1 });
const ids: number[] = [];
let done: { finish_reason: string; forward_passes: number } | undefined;
for await (const event of model.generate({
  prompt: values.prompt,
  maxTokens: Number(values["max-tokens"]),
  ...(values.threshold !== undefined && { threshold: number(values.threshold) }),
  ...(values.steps !== undefined && { steps: number(values.steps) }),
  ...(values["block-size"] !== undefined && { blockSize: number(values["block-size"]) }),
})) {
  if (event.type === "block") ids.push(...event.ids);
  if (event.type === "done")
    done = { finish_reason: event.finish_reason, forward_passes: event.usage.forward_passes };
}
await model.close();
console.log(
  JSON.stringify({ ids, forward_passes: done?.forward_passes, finish_reason: done?.finish_reason }),
);
