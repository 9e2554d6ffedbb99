import { describe, expect, it } from "vitest";
import { quantileInterval, quantiles } from "./load.ts";

/** 0, 1, …, n − 1, shuffled: the q-quantile of these is about q·n. */
const ranks = (n: number) => Array.from({ length: n }, (_, i) => (i * 7919) % n);

describe("quantileInterval", () => {
  it("takes the quantile as quantiles does, and brackets it by the binomial spread of ranks", () => {
    const xs = ranks(1000);
    const p99 = quantileInterval(xs, 0.99);
    expect(p99.value).toBe(quantiles(xs).p99);
    // 1000 · 0.99 ∓ 1.96 · √9.9 ≈ 990 ∓ 6.2: ranks 983 and 997.
    expect(p99).toMatchObject({ value: 990, low: 983, high: 997, bounded: true, n: 1000 });
    const p50 = quantileInterval(xs, 0.5);
    expect(p50).toMatchObject({ value: 500, low: 469, high: 531, bounded: true });
  });

  it("says when the samples are too few to bound a p99 above", () => {
    const p99 = quantileInterval(ranks(100), 0.99);
    expect(p99.high).toBe(99); // the maximum: nothing above it was seen
    expect(p99.bounded).toBe(false);
    expect(quantileInterval(ranks(2000), 0.99).bounded).toBe(true);
  });

  it("is NaN for no samples", () => {
    expect(quantileInterval([], 0.5)).toMatchObject({ value: Number.NaN, n: 0, bounded: false });
  });
});
