/**
 * The unmasking rules (unmask.ts) on hand-made logits: which masked positions a step commits, and
 * which visible tokens an edit round revises.
 */
import { describe, expect, it } from "vitest";
import type { Manifest } from "./manifest.ts";
import { type Pick, tokenPicker } from "./sampling.ts";
import {
  type CommitRule,
  commitTokens,
  evenQuotas,
  linearQuotas,
  logitsChooser,
  reviseTokens,
  type Unmasking,
} from "./unmask.ts";

const VOCAB = 16;
const MASK = 3;
const EOS = 2;
const manifest = {
  architecture: { vocab_size: VOCAB },
  special_tokens: { pad: 0, bos: 1, eos: EOS, mask: MASK },
} as unknown as Manifest;
const greedy = tokenPicker(new Uint8Array(VOCAB));
/** Sprout's commit rule for `block`: every mask a candidate, end tokens settle what follows. */
const ruleFor = (block: number[], m: Manifest, unmasking: Unmasking, stepsTaken = 0): CommitRule => ({
  mask: m.special_tokens.mask,
  eosIds: new Set([m.special_tokens.eos]),
  unmasking,
  stepsTaken,
  blockSize: block.length,
  masksAtStart: block.length,
  candidates: block.flatMap((id, i) => (id === m.special_tokens.mask ? [i] : [])),
  settleAfterEos: true,
  from: 0,
});
/** commitTokens with a confidence threshold, over logits. */
const commitAtThreshold = (
  block: number[],
  logits: Float32Array,
  m: Manifest,
  pick: Pick,
  threshold: number,
  firstBan?: Uint8Array,
) =>
  commitTokens(
    block,
    logitsChooser(logits, VOCAB, pick, firstBan),
    ruleFor(block, m, { kind: "threshold", threshold, strict: false }),
  );
/** commitTokens over logits, greedily. */
const commit = (block: number[], logits: Float32Array, unmasking: Unmasking, stepsTaken: number) =>
  commitTokens(block, logitsChooser(logits, VOCAB, greedy), ruleFor(block, manifest, unmasking, stepsTaken));

/** Logits whose softmax puts `probability` on `token` at each row (rest spread evenly). */
function logitsFor(rows: { token: number; probability: number }[]): Float32Array {
  const out = new Float32Array(rows.length * VOCAB);
  rows.forEach(({ token, probability }, r) => {
    const rest = (1 - probability) / (VOCAB - 1);
    for (let id = 0; id < VOCAB; id++) out[r * VOCAB + id] = Math.log(id === token ? probability : rest);
  });
  return out;
}

describe("commitTokens at a confidence threshold", () => {
  it("commits every masked position at or above the threshold in one step", () => {
    const block = [MASK, MASK, MASK, 7];
    const logits = logitsFor([
      { token: 5, probability: 0.95 },
      { token: 6, probability: 0.5 },
      { token: 8, probability: 0.91 },
      { token: 9, probability: 0.99 },
    ]);
    expect(commitAtThreshold(block, logits, manifest, greedy, 0.9)).toBe(2);
    expect(block).toEqual([5, MASK, 8, 7]); // an already committed token is never revised
  });

  it("commits exactly one position per step at threshold 1, however certain the model is", () => {
    const block = [MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 1 },
      { token: 6, probability: 1 },
    ]);
    expect(commitAtThreshold(block, logits, manifest, greedy, 1)).toBe(1);
  });

  it("commits the single most confident position when none reaches the threshold", () => {
    const block = [MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 0.3 },
      { token: 6, probability: 0.6 },
    ]);
    expect(commitAtThreshold(block, logits, manifest, greedy, 0.9)).toBe(1);
    expect(block).toEqual([MASK, 6]);
  });

  it("applies the first-token ban (token healing) at position 0 only", () => {
    const block = [MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 0.95 },
      { token: 5, probability: 0.95 },
    ]);
    const firstBan = new Uint8Array(VOCAB).fill(1);
    firstBan[6] = 0; // position 0 may only be token 6
    commitAtThreshold(block, logits, manifest, greedy, 0.01, firstBan);
    expect(block).toEqual([6, 5]);
  });

  it("never commits a banned control token", () => {
    const banned = new Uint8Array(VOCAB);
    banned[MASK] = 1;
    const block = [MASK];
    commitAtThreshold(
      block,
      logitsFor([{ token: MASK, probability: 0.99 }]),
      manifest,
      tokenPicker(banned),
      0.9,
    );
    expect(block[0]).not.toBe(MASK);
  });

  it("settles everything after a committed end token", () => {
    const block = [MASK, MASK, MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 0.2 },
      { token: EOS, probability: 0.99 },
      { token: 6, probability: 0.2 },
      { token: 7, probability: 0.2 },
    ]);
    expect(commitAtThreshold(block, logits, manifest, greedy, 0.9)).toBe(3);
    expect(block).toEqual([MASK, EOS, EOS, EOS]);
  });
});

describe("the other unmasking policies and edit rounds", () => {
  const rows = [
    { token: 5, probability: 0.3 },
    { token: 6, probability: 0.97 },
    { token: 7, probability: 0.6 },
    { token: 8, probability: 0.99 },
  ];

  it("spreads a block over a fixed number of steps, most confident first", () => {
    const block = [MASK, MASK, MASK, MASK];
    const steps = { kind: "steps", steps: 3 } as const;
    expect(commit(block, logitsFor(rows), steps, 0)).toBe(2); // ⌈4 / 3⌉
    expect(block).toEqual([MASK, 6, MASK, 8]);
    expect(commit(block, logitsFor(rows), steps, 1)).toBe(1); // ⌈2 / 2⌉
    expect(block).toEqual([MASK, 6, 7, 8]);
    expect(commit(block, logitsFor(rows), steps, 2)).toBe(1);
    expect(block).not.toContain(MASK);
  });

  it("commits the least uncertain positions while their summed entropy stays within the bound", () => {
    const entropyOf = (p: number) => -(p * Math.log(p)) - (1 - p) * Math.log((1 - p) / (VOCAB - 1));
    const bound = entropyOf(0.99) + entropyOf(0.97) + 1e-6;
    const block = [MASK, MASK, MASK, MASK];
    expect(commit(block, logitsFor(rows), { kind: "entropy", bound }, 0)).toBe(2);
    expect(block).toEqual([MASK, 6, MASK, 8]);
    const none = [MASK, MASK];
    expect(commit(none, logitsFor(rows.slice(0, 2)), { kind: "entropy", bound: 0 }, 0)).toBe(1);
  });

  it("revises only the visible tokens the model confidently disagrees with", () => {
    const block = [5, 9, 7, EOS];
    const logits = logitsFor([
      { token: 5, probability: 0.99 }, // agrees
      { token: 6, probability: 0.95 }, // disagrees, sure: revised
      { token: 8, probability: 0.5 }, // disagrees, unsure: kept
      { token: 9, probability: 0.99 }, // after the end token: left alone
    ]);
    expect(reviseTokens(block, logitsChooser(logits, VOCAB, greedy), new Set([EOS]), 0.9)).toEqual([
      { position: 1, from: 9, to: 6 },
    ]);
    expect(block).toEqual([5, 6, 7, EOS]);
  });
});

describe("the imported families' step schedules", () => {
  it("splits a block evenly over steps, the first steps taking the remainder (SDAR)", () => {
    expect(evenQuotas(4, 4)).toEqual([1, 1, 1, 1]);
    expect(evenQuotas(8, 3)).toEqual([3, 3, 2]);
  });

  it("follows dllm's float32 linear schedule, rounding half to even, zero steps dropped", () => {
    // The x.5 cases its float32 ratio puts on either side (worked through in torch).
    expect(linearQuotas(8, 3)).toEqual([3, 2, 3]);
    expect(linearQuotas(5, 2)).toEqual([2, 3]);
    expect(linearQuotas(2, 3)).toEqual([1, 1]);
    expect(linearQuotas(1, 2)).toEqual([1]);
    expect(linearQuotas(4, 2)).toEqual([2, 2]);
    expect(linearQuotas(4, 3)).toEqual([1, 1, 2]);
    expect(linearQuotas(32, 32)).toEqual(new Array(32).fill(1));
  });

  it("takes every mask above τ when there are at least the step's quota of them, else the quota (SDAR)", () => {
    const rows = [
      { token: 5, probability: 0.95 },
      { token: 6, probability: 0.5 },
      { token: 7, probability: 0.6 },
      { token: 8, probability: 0.92 },
    ];
    const dynamic = { kind: "dynamic", threshold: 0.9, steps: 2 } as const;
    const sure = [MASK, MASK, MASK, MASK];
    expect(commit(sure, logitsFor(rows), dynamic, 0)).toBe(2); // quota 2, two above τ
    expect(sure).toEqual([5, MASK, MASK, 8]);
    const unsure = [MASK, MASK, MASK, MASK];
    const fewer = rows.map((r, i) => (i === 3 ? { ...r, probability: 0.5 } : r));
    expect(commit(unsure, logitsFor(fewer), dynamic, 0)).toBe(2); // one above τ: the top two
    expect(unsure).toEqual([5, MASK, 7, MASK]);
  });
});
