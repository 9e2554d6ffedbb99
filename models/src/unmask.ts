/**
 * Which masked positions of a block one denoising step commits, and which visible tokens an
 * edit round revises. These are the speed/quality dial of block diffusion:
 *
 * - `threshold` (Fast-dLLM): every masked position whose chosen token has probability ≥ τ; at
 *   least the single most confident one. τ = 1 is one token per step.
 * - `steps`: a fixed budget of steps per block; each step commits the most confident
 *   ⌈masked ÷ steps left⌉ positions, so a block always takes `steps` forwards (fewer if short).
 * - `entropy` (EB-sampler): the least uncertain positions first, as many as keep the sum of
 *   their entropies within the bound (nats); at least one.
 */
import type { Choice, Pick } from "./sampling.ts";

/** The token chosen for a block position, with the model's confidence in it and its entropy. */
export type Chooser = (position: number) => Choice;

/**
 * A chooser over `[block, vocab]` logits in JavaScript: `pick` each position's row, with
 * `firstBan` instead of the picker's own banned ids at position 0 (token healing's first token).
 */
export function logitsChooser(
  logits: Float32Array,
  vocab: number,
  pick: Pick,
  firstBan?: Uint8Array,
): Chooser {
  return (position) =>
    pick(logits.subarray(position * vocab, (position + 1) * vocab), position === 0 ? firstBan : undefined);
}

/**
 * - `threshold`: every candidate at or above τ (`strict`: above it), at least the most confident
 *   one (Sprout's; Fast-dLLM v2's "above τ, plus the argmax" is the same set, strictly).
 * - `steps`: a fixed budget of steps per block; each step commits the most confident
 *   ⌈masked ÷ steps left⌉ positions (Sprout's).
 * - `dynamic` (SDAR's low_confidence_dynamic): every candidate above τ if there are at least the
 *   step's quota of them, else the quota's most confident; the quotas split the block size evenly
 *   over `steps` (SDAR's get_num_transfer_tokens), capped by the masks left.
 * - `top_k` (dllm's BD3LM sampler): exactly the step's quota, the most confident first; the
 *   quotas split the block's masks over `steps` by the linear schedule (linearQuotas).
 * - `entropy` (EB-sampler): the least uncertain first, within a total entropy bound (nats).
 */
export type Unmasking =
  | { kind: "threshold"; threshold: number; strict: boolean }
  | { kind: "steps"; steps: number }
  | { kind: "dynamic"; threshold: number; steps: number }
  | { kind: "top_k"; steps: number }
  | { kind: "entropy"; bound: number };

export interface CommitRule {
  mask: number;
  eosIds: ReadonlySet<number>;
  unmasking: Unmasking;
  /** This block's earlier steps. */
  stepsTaken: number;
  blockSize: number;
  /** Masks the block had when it began. */
  masksAtStart: number;
  /** The masked positions this step may unmask (all of them, or one sub-block's). */
  candidates: readonly number[];
  /** Once an end token is committed, settle the masks after it as end tokens (they are cut). */
  settleAfterEos: boolean;
  /** Where the generated part of the block starts (what precedes it is committed context). */
  from: number;
}

/**
 * Fills masked positions of `block` in place from one step's choices; returns how many were
 * committed. A position whose choice is the mask token itself stays masked.
 */
export function commitTokens(block: number[], choose: Chooser, rule: CommitRule): number {
  const candidates = rule.candidates.map((position) => ({ position, ...choose(position) }));
  const chosen = selectPositions(candidates, rule).filter((c) => c.token !== rule.mask);
  for (const c of chosen) block[c.position] = c.token;
  let committed = chosen.length;
  if (rule.settleAfterEos) {
    const eosAt = block.findIndex((id, i) => i >= rule.from && rule.eosIds.has(id));
    if (eosAt !== -1) {
      for (let position = eosAt + 1; position < block.length; position++) {
        if (block[position] === rule.mask) {
          block[position] = block[eosAt] as number;
          committed++;
        }
      }
    }
  }
  return committed;
}

/** `total` split over `steps`: ⌊total/steps⌋ each, one more for the first total mod steps (SDAR's). */
export function evenQuotas(total: number, steps: number): number[] {
  return Array.from({ length: steps }, (_, j) => Math.floor(total / steps) + (j < total % steps ? 1 : 0));
}

/**
 * dllm's schedule for `masks` over `steps` under its linear α(t) = 1 − t: step j unmasks
 * round(left × (1 − s/t)) of the masks left, s = (steps−j−1)/steps and t = (steps−j)/steps,
 * the ratio computed in float32 as its scheduler does and rounded half to even as torch.round
 * does (the two decide the x.5 cases); steps that unmask nothing are dropped.
 */
export function linearQuotas(masks: number, steps: number): number[] {
  const quotas: number[] = [];
  let left = masks;
  for (let j = 0; j < steps && left > 0; j++) {
    const s = Math.fround((steps - j - 1) / steps);
    const t = Math.fround((steps - j) / steps);
    const ratio = Math.fround(Math.fround(1 - Math.fround(1 - s)) / Math.fround(1 - Math.fround(1 - t)));
    const k = Math.min(roundHalfEven(left * (1 - ratio)), left);
    if (k > 0) quotas.push(k);
    left -= k;
  }
  return quotas;
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

function selectPositions<C extends Choice>(candidates: C[], rule: CommitRule): C[] {
  const byConfidence = () => [...candidates].sort((a, b) => b.confidence - a.confidence);
  const { unmasking, stepsTaken } = rule;
  switch (unmasking.kind) {
    case "threshold": {
      const { threshold, strict } = unmasking;
      // threshold ≥ 1 means one token per step (a probability can round to exactly 1.0).
      const sure =
        threshold < 1
          ? candidates.filter((c) => (strict ? c.confidence > threshold : c.confidence >= threshold))
          : [];
      return sure.length > 0 ? sure : byConfidence().slice(0, 1);
    }
    case "steps": {
      const left = Math.max(1, unmasking.steps - stepsTaken);
      return byConfidence().slice(0, Math.ceil(candidates.length / left));
    }
    case "dynamic": {
      const planned = evenQuotas(rule.blockSize, unmasking.steps)[stepsTaken] ?? candidates.length;
      const quota = Math.max(1, Math.min(planned, candidates.length));
      const sure = candidates.filter((c) => c.confidence > unmasking.threshold);
      return sure.length >= quota ? sure : byConfidence().slice(0, quota);
    }
    case "top_k": {
      const planned = linearQuotas(rule.masksAtStart, unmasking.steps)[stepsTaken] ?? candidates.length;
      return byConfidence().slice(0, Math.max(1, Math.min(planned, candidates.length)));
    }
    case "entropy": {
      const ordered = [...candidates].sort((a, b) => a.entropy - b.entropy);
      let total = 0;
      let count = 0;
      while (
        count < ordered.length &&
        (count === 0 || total + (ordered[count] as C).entropy <= unmasking.bound)
      ) {
        total += (ordered[count] as C).entropy;
        count++;
      }
      return ordered.slice(0, count);
    }
  }
}

export interface Revision {
  position: number;
  from: number;
  to: number;
}

/**
 * One edit round over a block with no masks left (the stage-2 ability): every position where the
 * model's own choice differs from the token there and has probability ≥ `threshold` is revised
 * in place. Positions from the first end token on are left alone, except that an end token
 * chosen earlier settles the rest of the block. Returns the revisions.
 */
export function reviseTokens(
  block: number[],
  choose: Chooser,
  eosIds: ReadonlySet<number>,
  threshold: number,
  from = 0,
): Revision[] {
  const endOf = () => {
    const at = block.findIndex((id, i) => i >= from && eosIds.has(id));
    return at === -1 ? block.length : at;
  };
  const end = endOf();
  const revisions: Revision[] = [];
  for (let position = from; position < end; position++) {
    const { token, confidence } = choose(position);
    if (token !== block[position] && confidence >= threshold) {
      revisions.push({ position, from: block[position] as number, to: token });
    }
  }
  for (const { position, to } of revisions) block[position] = to;
  const eosAt = endOf();
  if (eosAt < block.length) block.fill(block[eosAt] as number, eosAt);
  return revisions;
}
