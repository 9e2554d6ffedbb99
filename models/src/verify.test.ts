import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "./index.ts";

const FUNCTION = `def count_vowels(text):
    count = 0
    for char in text.lower():
        if char in "aeiou":
            count += 1
    return count
`;

describe("self-verification", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
  });
  afterAll(() => model.close());

  it("scores code that parses, in two forwards", async () => {
    const result = await model.verify({ code: FUNCTION });
    expect(result.syntax).toEqual({ ok: true });
    expect(result.score).toBeGreaterThan(0);
    expect(result.score).toBeLessThanOrEqual(1);
    expect(result.bits_per_token).toBeCloseTo(-Math.log2(result.score), 6);
    expect(result.forward_passes).toBe(2);
    expect(result.verdict).toBe(result.score >= 0.01 ? "plausible" : "doubtful");
  });

  it("finds real code far more plausible than the same lines in scrambled order", async () => {
    const scrambled = FUNCTION.split("\n").reverse().join("\n");
    const words = FUNCTION.split(" ").reverse().join(" ");
    const real = await model.verify({ code: FUNCTION });
    for (const code of [scrambled, words]) {
      const result = await model.verify({ code });
      expect(result.score).toBeLessThan(real.score);
      expect(result.verdict).toBe("syntax_error");
    }
  });

  it("takes the prompt as context: the code it continues scores higher with it", async () => {
    const body = FUNCTION.slice(FUNCTION.indexOf("\n") + 1);
    const alone = await model.verify({ code: body });
    const continued = await model.verify({
      code: body,
      prompt: FUNCTION.slice(0, FUNCTION.indexOf("\n") + 1),
    });
    expect(continued.tokens).toBe(alone.tokens);
    expect(continued.score).toBeGreaterThan(alone.score);
  });

  it("says where the syntax breaks", async () => {
    const result = await model.verify({ code: "def f(x):\n    return (x + 1\n" });
    expect(result.verdict).toBe("syntax_error");
    expect(result.syntax).toMatchObject({ ok: false, error: { line: expect.any(Number) } });
  });
});
