/**
 * Block-wise parallel decoding with confidence-threshold unmasking (Fast-dLLM style).
 *
 * Blocks are generated in order; inside a block all positions start as `<|mask|>` and every step
 * is one forward pass of the block against the cached context. Each step commits every masked
 * position whose most likely token has probability ≥ `threshold`, and always at least the single
 * most confident one, so a block of n tokens takes between 1 and n steps (n when threshold ≥ 1).
 * Tokens committed but not yet cached (the prompt, then each finished block) ride along causally
 * in the first step of the next block, which appends their keys/values to the exact KV cache:
 * every forward pass is a denoising step, so forward passes = steps.
 */
import type { DecodeEvent, FinishReason } from "./events.ts";
import type { Manifest } from "./manifest.ts";
import { type Pick, type SamplingOptions, tokenPicker } from "./sampling.ts";
import { type DenoiserSession, KvCache } from "./session.ts";
import type { TextTokenizer } from "./tokenizer.ts";

export interface DecodeOptions {
  prompt: string;
  /**
   * Infilling: write the middle between `prompt` and this, as the model was trained
   * (`<|fim_prefix|> prompt <|fim_suffix|> suffix <|fim_middle|>`, the middle ends at `<|eos|>`).
   */
  suffix?: string;
  maxTokens: number;
  blockSize?: number;
  /** Commit masked tokens whose top probability is at least this; 1 means one token per step. */
  threshold?: number;
  /** Yield a `step` event after each forward pass inside a block. */
  emitSteps?: boolean;
  /** Greedy unless a temperature is given (see sampling.ts). */
  sampling?: SamplingOptions;
  /** Stop before the first occurrence of any of these strings (not included in the text). */
  stop?: readonly string[];
  signal?: AbortSignal;
}

export class DecodeInputError extends Error {
  override name = "DecodeInputError";
}

export interface Decoder {
  manifest: Manifest;
  session: DenoiserSession;
  tokenizer: TextTokenizer;
}

export const DEFAULT_THRESHOLD = 0.9;

export async function* decode(model: Decoder, options: DecodeOptions): AsyncGenerator<DecodeEvent> {
  const { manifest, session, tokenizer } = model;
  const special = manifest.special_tokens;
  const blockSize = options.blockSize ?? manifest.block_sizes[0] ?? 32;
  const threshold = options.threshold ?? DEFAULT_THRESHOLD;
  const { ids: promptIds, healed } = promptTokens(model, options);
  const firstBan = healed === "" ? undefined : healingBan(model, healed);
  /** The completion's text: the generated tokens' text after the healed part, which is prompt. */
  const textOf = (ids: readonly number[]) => tokenizer.decode(ids).slice(healed.length);
  // The prompt's own tokens: not <|bos|> or the three infilling markers; the healed token counts.
  const promptTokenCount =
    promptIds.length - (options.suffix === undefined ? 1 : 3) + (healed === "" ? 0 : 1);
  if (promptIds.length + options.maxTokens > manifest.context_length) {
    throw new DecodeInputError(
      `prompt${options.suffix === undefined ? "" : " and suffix"} (${promptIds.length} tokens) plus max_tokens (${options.maxTokens}) exceeds the context of ${manifest.context_length} tokens`,
    );
  }
  const pick = tokenPicker(bannedTokenIds(manifest), options.sampling);
  const stops = (options.stop ?? []).filter((s) => s.length > 0);
  /** Whether text before the block plus the block's committed prefix completes a stop sequence. */
  const stopsWithin = (before: readonly number[], prefix: readonly number[], shown: number): boolean => {
    if (prefix.length === 0 || prefix.includes(special.eos)) return false;
    const text = textOf([...before, ...prefix]);
    return stops.some((stop) => text.indexOf(stop, Math.max(0, shown - stop.length)) !== -1);
  };
  yield {
    type: "start",
    model: manifest.name,
    prompt_tokens: promptTokenCount,
    block_size: blockSize,
  };

  let forwardPasses = 0;
  let cache = KvCache.empty(manifest);
  let uncached = promptIds; // committed tokens whose keys/values are not in the cache yet

  const generated: number[] = [];
  let emittedText = "";
  let finish: FinishReason = "length";
  for (let index = 0; generated.length < options.maxTokens; index++) {
    const block = new Array<number>(Math.min(blockSize, options.maxTokens - generated.length)).fill(
      special.mask,
    );
    let steps = 0;
    while (block.includes(special.mask)) {
      if (options.signal?.aborted) {
        finish = "cancelled";
        break;
      }
      const { logits, newKey, newValue } = await session.forward(uncached, block, cache);
      forwardPasses++;
      steps++;
      const blockLogits = logits.subarray(uncached.length * manifest.architecture.vocab_size);
      if (uncached.length > 0) {
        cache = cache.append(newKey, newValue, uncached.length);
        uncached = [];
      }
      const committed = commitConfidentTokens(
        block,
        blockLogits,
        manifest,
        pick,
        threshold,
        generated.length === 0 ? firstBan : undefined,
      );
      const firstMask = block.indexOf(special.mask);
      if (
        firstMask > 0 &&
        stops.length > 0 &&
        stopsWithin(generated, block.slice(0, firstMask), emittedText.length)
      ) {
        block.length = firstMask; // what follows the stop is never shown: drop it
      }
      if (options.emitSteps) {
        const remaining = block.filter((t) => t === special.mask).length;
        yield { type: "step", block: index, step: steps, committed, remaining };
      }
    }
    if (finish === "cancelled") break;

    const eosAt = block.indexOf(special.eos);
    const kept = eosAt === -1 ? block : block.slice(0, eosAt);
    generated.push(...kept);
    const { text, final } = visibleText(
      textOf(generated),
      stops,
      eosAt !== -1,
      generated.length >= options.maxTokens,
    );
    yield { type: "block", index, text: text.slice(emittedText.length), tokens: kept.length, steps };
    emittedText = text;
    if (final !== null) {
      finish = final;
      break;
    }
    uncached = block;
  }
  yield {
    type: "done",
    finish_reason: finish,
    usage: {
      prompt_tokens: promptTokenCount,
      completion_tokens: generated.length,
      forward_passes: forwardPasses,
    },
  };
}

/**
 * The context the model continues: `<|bos|> prompt`, or the infilling layout when a suffix is
 * given, with token healing: the prompt's last token is given back (`healed`, its text) and the
 * first generated token must begin with that text. BPE merges across the point where a prompt
 * ends: in training, "):\n    return" is `):` `\n   ` ` return`, so a prompt that ends in a lone
 * `\n` token sits on a boundary the model has only seen before unindented lines.
 * models/python/sample.py's `encode_prompt` is the same.
 */
function promptTokens(
  { manifest, tokenizer }: Decoder,
  options: DecodeOptions,
): { ids: number[]; healed: string } {
  const special = manifest.special_tokens;
  const head = tokenizer.encode(options.prompt);
  const healed = tokenizer.decode(head.slice(-1));
  const kept = head.slice(0, -1);
  if (options.suffix === undefined) return { ids: [special.bos, ...kept], healed };
  const { fim_prefix: prefix, fim_suffix: suffix, fim_middle: middle } = special;
  if (prefix === undefined || suffix === undefined || middle === undefined) {
    throw new DecodeInputError(`the model ${manifest.name} has no infilling tokens`);
  }
  return { ids: [prefix, ...kept, suffix, ...tokenizer.encode(options.suffix), middle], healed };
}

/** Banned ids for the first generated token: special tokens, and any token not beginning with `healed`. */
function healingBan({ manifest, tokenizer }: Decoder, healed: string): Uint8Array {
  const texts = tokenizer.tokenTexts(manifest.architecture.vocab_size);
  const ban = Uint8Array.from(texts, (text) => (text.startsWith(healed) ? 0 : 1));
  for (const id of Object.values(manifest.special_tokens)) ban[id] = 1;
  return ban;
}

/**
 * What of the decoded text may be shown now, and whether generation ends here. Held back until a
 * later block: a trailing U+FFFD (a multi-byte character whose last byte is still to come) and
 * the last characters that could be the start of a stop sequence.
 */
export function visibleText(
  decoded: string,
  stops: readonly string[],
  ended: boolean,
  atLimit: boolean,
): { text: string; final: "stop" | "length" | null } {
  let stopAt = -1;
  for (const stop of stops) {
    const at = decoded.indexOf(stop);
    if (at !== -1 && (stopAt === -1 || at < stopAt)) stopAt = at;
  }
  if (stopAt !== -1) return { text: decoded.slice(0, stopAt), final: "stop" };
  if (ended) return { text: decoded, final: "stop" };
  if (atLimit) return { text: decoded, final: "length" };
  let text = decoded.replace(/\uFFFD+$/, "");
  const holdBack = Math.max(0, ...stops.map((s) => s.length - 1));
  for (let keep = Math.min(holdBack, text.length); keep > 0; keep--) {
    const tail = text.slice(text.length - keep);
    if (stops.some((s) => s.startsWith(tail))) {
      text = text.slice(0, text.length - keep);
      break;
    }
  }
  return { text, final: null };
}

/** 1 for control tokens the model must never produce in text (end-of-sequence it may). */
function bannedTokenIds(manifest: Manifest): Uint8Array {
  const banned = new Uint8Array(manifest.architecture.vocab_size);
  for (const id of Object.values(manifest.special_tokens)) banned[id] = 1;
  banned[manifest.special_tokens.eos] = 0;
  return banned;
}

/**
 * Fills masked positions of `block` in place from one step's logits: every position whose top
 * probability reaches `threshold`, or else the single most confident one. Once an end token is
 * committed, positions after it are settled as end tokens too (they will be cut). Returns how
 * many positions were committed.
 */
export function commitConfidentTokens(
  block: number[],
  logits: Float32Array,
  manifest: Manifest,
  pick: Pick,
  threshold: number,
  /** Banned ids at position 0 instead of the picker's own (token healing's first token). */
  firstBan?: Uint8Array,
): number {
  const vocab = manifest.architecture.vocab_size;
  const { mask, eos } = manifest.special_tokens;
  const candidates: { position: number; token: number; confidence: number }[] = [];
  for (let position = 0; position < block.length; position++) {
    if (block[position] !== mask) continue;
    const row = logits.subarray(position * vocab, (position + 1) * vocab);
    candidates.push({ position, ...pick(row, position === 0 ? firstBan : undefined) });
  }
  // threshold ≥ 1 means one token per step (a probability can round to exactly 1.0).
  let chosen = threshold < 1 ? candidates.filter((c) => c.confidence >= threshold) : [];
  if (chosen.length === 0) {
    chosen = [candidates.reduce((best, c) => (c.confidence > best.confidence ? c : best))];
  }
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
