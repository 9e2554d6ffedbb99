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
import type { Manifest } from "./manifest.ts";
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

export type Unmasking =
  | { kind: "threshold"; threshold: number }
  | { kind: "steps"; steps: number }
  | { kind: "entropy"; bound: number };

/**
 * Fills masked positions of `block` in place from one step's choices and returns how many were
 * committed. `stepsTaken` counts this block's earlier steps. Once an end token is committed,
 * masked positions after it are settled as end tokens too (they are cut).
 */
export function commitTokens(
  block: number[],
  choose: Chooser,
  manifest: Manifest,
  unmasking: Unmasking,
  stepsTaken = 0,
): number {
  const { mask, eos } = manifest.special_tokens;
  const candidates: (Choice & { position: number })[] = [];
  for (let position = 0; position < block.length; position++) {
    if (block[position] === mask) candidates.push({ position, ...choose(position) });
  }
  const chosen = selectPositions(candidates, unmasking, stepsTaken);
  for (const c of chosen) block[c.position] = c.token;
  let committed = chosen.length;
  const eosAt = block.indexOf(eos);
  if (eosAt !== -1) {
    for (let position = eosAt + 1; position < block.length; position++) {
      if (block[position] === mask) {
        block[position] = eos;
        committed++;
      }
    }
  }
  return committed;
}

function selectPositions<C extends Choice>(candidates: C[], unmasking: Unmasking, stepsTaken: number): C[] {
  const byConfidence = () => [...candidates].sort((a, b) => b.confidence - a.confidence);
  switch (unmasking.kind) {
    case "threshold": {
      const { threshold } = unmasking;
      // threshold ≥ 1 means one token per step (a probability can round to exactly 1.0).
      const sure = threshold < 1 ? candidates.filter((c) => c.confidence >= threshold) : [];
      return sure.length > 0 ? sure : byConfidence().slice(0, 1);
    }
    case "steps": {
      const left = Math.max(1, unmasking.steps - stepsTaken);
      return byConfidence().slice(0, Math.ceil(candidates.length / left));
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
  manifest: Manifest,
  threshold: number,
): Revision[] {
  const { eos } = manifest.special_tokens;
  const end = block.includes(eos) ? block.indexOf(eos) : block.length;
  const revisions: Revision[] = [];
  for (let position = 0; position < end; position++) {
    const { token, confidence } = choose(position);
    if (token !== block[position] && confidence >= threshold) {
      revisions.push({ position, from: block[position] as number, to: token });
    }
  }
  for (const { position, to } of revisions) block[position] = to;
  const eosAt = block.indexOf(eos);
  if (eosAt !== -1) block.fill(eos, eosAt);
  return revisions;
}
