/** The token picker (sampling.ts): greedy, seeded temperature and nucleus sampling, banned ids. */
import { describe, expect, it } from "vitest";
import { tokenPicker } from "./sampling.ts";

const VOCAB = 16;

describe("sampling", () => {
  const row = new Float32Array([0, 1, 2, 3, 2.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const none = new Uint8Array(VOCAB);

  it("is the argmax at temperature 0 and inside a tiny nucleus", () => {
    expect(tokenPicker(none)(row).token).toBe(3);
    const tiny = tokenPicker(none, { temperature: 1, topP: 1e-9, seed: 1 });
    for (let i = 0; i < 20; i++) expect(tiny(row).token).toBe(3);
  });

  it("repeats itself for a seed and explores across draws", () => {
    const draws = (seed: number) => {
      const pick = tokenPicker(none, { temperature: 2, seed });
      return Array.from({ length: 50 }, () => pick(row).token);
    };
    expect(draws(7)).toEqual(draws(7));
    expect(new Set(draws(7)).size).toBeGreaterThan(3);
  });

  it("draws only inside the nucleus, never a banned id", () => {
    const banned = new Uint8Array(VOCAB);
    banned[4] = 1; // the second most likely token
    const pick = tokenPicker(banned, { temperature: 1, topP: 0.5, seed: 5 });
    // Without id 4 the most likely are 3 (≈0.47) and 2 (≈0.17): the nucleus of 0.5 is {3, 2}.
    const drawn = new Set(Array.from({ length: 500 }, () => pick(row).token));
    expect([...drawn].sort()).toEqual([2, 3]);
  });

  it("reports the model's own probability as confidence, whatever the temperature", () => {
    const greedyChoice = tokenPicker(none)(row);
    for (const temperature of [0.05, 1, 1.9]) {
      const pick = tokenPicker(none, { temperature, topP: 1e-9, seed: 2 });
      expect(pick(row)).toMatchObject({ token: 3, confidence: expect.closeTo(greedyChoice.confidence, 9) });
    }
  });

  it("draws in proportion to the tempered probabilities", () => {
    const pick = tokenPicker(none, { temperature: 1, topP: 1, seed: 3 });
    const counts = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const { token } = pick(row);
      counts.set(token, (counts.get(token) ?? 0) + 1);
    }
    const weights = Array.from(row, Math.exp);
    const total = weights.reduce((a, b) => a + b, 0);
    for (const token of [1, 2, 3, 4]) {
      expect((counts.get(token) ?? 0) / 4000).toBeCloseTo((weights[token] as number) / total, 1);
    }
  });
});
