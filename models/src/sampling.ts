/**
 * Choosing a token for a masked position from one row of logits. Control tokens are never
 * chosen. Greedy takes the argmax; sampling draws from the softmax at a temperature, within the
 * top-p nucleus, from a seeded generator (same seed, same output). Either way the confidence is
 * the model's own probability of the chosen token (the softmax at temperature 1), which decides
 * whether it is committed in this step: the temperature changes what is drawn, not how sure the
 * model is, so the threshold keeps its meaning.
 */

export interface Choice {
  token: number;
  confidence: number;
  /** Entropy (nats) of the model's distribution at this position, control tokens excluded. */
  entropy: number;
}

/** Chooses a token from one position's logits; `banned` overrides the picker's own banned ids. */
export type Pick = (row: Float32Array, banned?: Uint8Array) => Choice;

export interface SamplingOptions {
  /** 0 (the default) is greedy. */
  temperature?: number;
  /** Nucleus: sample among the most likely tokens whose probabilities add up to this. */
  topP?: number;
  seed?: number;
}

/** `banned[id] === 1` for ids never to choose. */
export function tokenPicker(
  banned: Uint8Array,
  { temperature = 0, topP = 1, seed }: SamplingOptions = {},
): Pick {
  if (temperature <= 0) return (row, override) => greedy(row, override ?? banned);
  const random = mulberry32(seed ?? Math.floor(Math.random() * 2 ** 32));
  return (row, override) => sample(row, override ?? banned, temperature, topP, random);
}

function greedy(row: Float32Array, banned: Uint8Array): Choice {
  let best = -1;
  let max = Number.NEGATIVE_INFINITY;
  for (let id = 0; id < row.length; id++) {
    const value = row[id] as number;
    if (value > max && banned[id] === 0) {
      max = value;
      best = id;
    }
  }
  const { sum, entropy } = softmaxStats(row, banned, max);
  return { token: best, confidence: 1 / sum, entropy };
}

function sample(
  row: Float32Array,
  banned: Uint8Array,
  temperature: number,
  topP: number,
  random: () => number,
): Choice {
  let max = Number.NEGATIVE_INFINITY;
  for (let id = 0; id < row.length; id++) if (banned[id] === 0) max = Math.max(max, row[id] as number);
  const probabilities = new Float64Array(row.length);
  let mass = 0;
  for (let id = 0; id < row.length; id++) {
    if (banned[id] === 0) {
      probabilities[id] = Math.exp(((row[id] as number) - max) / temperature);
      mass += probabilities[id] as number;
    }
  }
  for (let id = 0; id < row.length; id++) probabilities[id] = (probabilities[id] as number) / mass;
  // The nucleus: most likely first, until their mass reaches topP (always at least one token).
  // A native sort of the probabilities finds the cutoff; ids tied with it are all kept.
  let cutoff = 0;
  if (topP < 1) {
    const sorted = probabilities.slice().sort().reverse();
    let kept = 0;
    for (let i = 0; i < sorted.length && (i === 0 || kept < topP); i++) {
      cutoff = sorted[i] as number;
      kept += cutoff;
    }
  }
  const candidates: number[] = [];
  let total = 0;
  for (let id = 0; id < row.length; id++) {
    if (banned[id] === 0 && (probabilities[id] as number) >= cutoff) {
      candidates.push(id);
      total += probabilities[id] as number;
    }
  }
  let draw = random() * total;
  let token = candidates.at(-1) as number;
  for (const id of candidates) {
    draw -= probabilities[id] as number;
    if (draw < 0) {
      token = id;
      break;
    }
  }
  const { sum, entropy } = softmaxStats(row, banned, max);
  return { token, confidence: Math.exp((row[token] as number) - max) / sum, entropy };
}

/**
 * The softmax's normaliser Σ exp(x − max) at temperature 1 over allowed ids, and its entropy
 * H = log Σ − Σ exp(x − max)(x − max) / Σ, in one pass (`max`: the largest allowed logit).
 */
function softmaxStats(row: Float32Array, banned: Uint8Array, max: number): { sum: number; entropy: number } {
  let sum = 0;
  let weighted = 0;
  for (let id = 0; id < row.length; id++) {
    if (banned[id] !== 0) continue;
    const shifted = (row[id] as number) - max;
    const e = Math.exp(shifted);
    sum += e;
    weighted += e * shifted;
  }
  return { sum, entropy: Math.log(sum) - weighted / sum };
}

/** A small, fast, seedable generator of uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
