/**
 * The TypeScript decoder against the Python reference sampler (models/python/sample.py) on the
 * same exported graph: same text, same tokens and steps in every block. Together with the golden
 * test (ONNX = PyTorch) this ties serving to training.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { venvPython } from "../../test/support/python.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR, TWIN_MODEL_DIR } from "./index.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));

function pythonSample(
  modelDir: string,
  prompt: string,
  maxTokens: number,
  blockSize: number,
  threshold: number,
  suffix?: string,
) {
  const out = execFileSync(
    venvPython(),
    [
      join(root, "models/python/sample.py"),
      "--onnx",
      join(modelDir, "denoiser.onnx"),
      "--prompt",
      prompt,
      "--max-tokens",
      String(maxTokens),
      "--block-size",
      String(blockSize),
      "--threshold",
      String(threshold),
      ...(suffix === undefined ? [] : ["--suffix", suffix]),
    ],
    { encoding: "utf8" },
  );
  return JSON.parse(out) as { text: string; blocks: { tokens: number; steps: number }[] };
}

describe("greedy decoding matches the Python reference sampler", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
  });
  afterAll(() => model.close());

  it.each([
    ["def add(a, b):\n", 40, 16, 0.9, undefined],
    ["import os\n\n\nclass Config:\n", 48, 32, 0.5, undefined],
    ["x = ", 12, 4, 1, undefined],
    ["def area(r):\n", 24, 16, 0.9, "    return result\n"], // infilling
  ])(
    "for %j (max %i, block %i, τ %f, suffix %j)",
    async (prompt, maxTokens, blockSize, threshold, suffix) => {
      const blocks: { tokens: number; steps: number }[] = [];
      let text = "";
      for await (const event of model.generate({ prompt, suffix, maxTokens, blockSize, threshold })) {
        if (event.type === "block") {
          blocks.push({ tokens: event.tokens, steps: event.steps });
          text += event.text;
        }
      }
      const reference = pythonSample(SHIPPED_MODEL_DIR, prompt, maxTokens, blockSize, threshold, suffix);
      expect(text).toBe(reference.text);
      expect(blocks).toEqual(reference.blocks.map(({ tokens, steps }) => ({ tokens, steps })));
    },
  );
});

describe("autoregressive decoding of the twin matches the Python reference", () => {
  let twin: Model;
  beforeAll(async () => {
    twin = await loadModel(TWIN_MODEL_DIR);
  });
  afterAll(() => twin.close());

  it.each([
    ["def add(a, b):\n", 40, undefined],
    ["def area(r):\n", 24, "    return result\n"], // infilling
  ])("for %j (max %i, suffix %j): same text, one forward per token", async (prompt, maxTokens, suffix) => {
    let text = "";
    let forwards = 0;
    for await (const event of twin.generate({ prompt, suffix, maxTokens, blockSize: 8 })) {
      if (event.type === "block") text += event.text;
      if (event.type === "done") forwards = event.usage.forward_passes;
    }
    const reference = pythonSample(TWIN_MODEL_DIR, prompt, maxTokens, 8, 1, suffix);
    expect(text).toBe(reference.text);
    expect(forwards).toBe(reference.blocks[0]?.steps);
  });
});
