/**
 * One request's generation as a state machine driven one forward pass at a time (a `Work`,
 * work.ts): `next()` says what this sequence puts into the next forward (one row), `take()`
 * applies that forward's row and returns the events it produces. A driver owns the forwards:
 * `runAlone` runs one generation by itself; the denoiser node's scheduler runs many in shared,
 * batched forwards, beside edits and verifications. The decoding algorithms are the subclasses:
 * block diffusion (decode.ts) and the autoregressive twin (autoregressive.ts). What they share
 * lives here: the prompt, the KV cache of committed tokens, turning committed blocks into
 * visible text, and usage.
 */
import type { ChatMessage } from "./chat.ts";
import type { DecodeEvent, FinishReason } from "./events.ts";
import type { Manifest } from "./manifest.ts";
import { bannedTokenIds, DecodeInputError, healingBan, type PromptTokens, promptTokens } from "./prompt.ts";
import { type Pick, type SamplingOptions, tokenPicker } from "./sampling.ts";
import { type DenoiserSession, type ForwardInput, type ForwardResult, KvCache } from "./session.ts";
import { visibleText } from "./text.ts";
import type { TextTokenizer } from "./tokenizer.ts";
import type { Work } from "./work.ts";

export interface DecodeOptions {
  prompt: string;
  /** A conversation instead of `prompt` (chat.ts: the model's chat template, or Sprout's docstring prompt). */
  messages?: readonly ChatMessage[];
  /**
   * Infilling: write the middle between `prompt` and this, as the model was trained
   * (`<|fim_prefix|> prompt <|fim_suffix|> suffix <|fim_middle|>`, the middle ends at `<|eos|>`).
   */
  suffix?: string;
  /** Generated tokens at most, `committed` included. */
  maxTokens: number;
  blockSize?: number;
  /** Unmasking (unmask.ts), at most one of: a confidence threshold (the default, 0.9)… */
  threshold?: number;
  /** …a fixed number of steps per block… */
  steps?: number;
  /** …or an entropy bound in nats per step. */
  entropyBound?: number;
  /** Edit rounds per block once it has no masks left (0, the default: none). */
  editRounds?: number;
  /** A visible token is revised when the model prefers another with at least this probability. */
  editThreshold?: number;
  /** Yield a `step` event after each forward pass inside a block. */
  emitSteps?: boolean;
  /** Greedy unless a temperature is given (see sampling.ts). */
  sampling?: SamplingOptions;
  /** Stop before the first occurrence of any of these strings (not included in the text). */
  stop?: readonly string[];
  /**
   * Resume: token ids already generated and streamed (the `ids` of earlier `block` events, in
   * order), e.g. by a node that died. Generation continues after them; with the same options
   * (seed included) the rest equals what the uninterrupted run would have produced.
   */
  committed?: readonly number[];
  signal?: AbortSignal;
}

export interface Decoder {
  manifest: Manifest;
  session: DenoiserSession;
  tokenizer: TextTokenizer;
  /** Tokens of context a request may fill: the manifest's context_length, or a node's cap below it. */
  contextLength: number;
}

export const DEFAULT_THRESHOLD = 0.9;
export const DEFAULT_EDIT_THRESHOLD = 0.9;

export abstract class Generation implements Work<DecodeEvent> {
  readonly start: DecodeEvent;
  readonly blockSize: number;
  protected readonly manifest: Manifest;
  protected readonly tokenizer: TextTokenizer;
  protected readonly prompt: PromptTokens;
  protected readonly stops: string[];
  /** Ids for the first generated token (token healing), when nothing is generated yet. */
  private readonly firstBan: Uint8Array | undefined;
  private readonly banned: Uint8Array;
  private readonly seed: number | undefined;
  protected readonly generated: number[];
  /** Committed tokens whose keys/values are not in the cache yet: they ride along with the next forward. */
  protected uncached: number[];
  protected cache: KvCache;
  protected blockIndex: number;
  protected emittedText = "";
  private forwardPasses = 0;
  private finished = false;
  private blockPicker: { block: number; pick: Pick } | undefined;

  constructor(
    { manifest, tokenizer, contextLength }: Decoder,
    protected readonly options: DecodeOptions,
  ) {
    this.manifest = manifest;
    this.tokenizer = tokenizer;
    this.blockSize = options.blockSize ?? manifest.block_sizes[0] ?? 32;
    this.prompt = promptTokens(manifest, tokenizer, options.prompt, options.suffix, options.messages);
    const { ids } = this.prompt;
    if (ids.length + options.maxTokens > contextLength) {
      throw new DecodeInputError(
        `prompt${options.suffix === undefined ? "" : " and suffix"} (${ids.length} tokens) plus max_tokens (${options.maxTokens}) exceeds the context of ${contextLength} tokens`,
      );
    }
    this.stops = (options.stop ?? []).filter((s) => s.length > 0);
    this.banned = bannedTokenIds(manifest);
    this.firstBan = healingBan(manifest, tokenizer, this.prompt.healed);
    this.seed =
      (options.sampling?.temperature ?? 0) > 0
        ? (options.sampling?.seed ?? Math.floor(Math.random() * 2 ** 32))
        : undefined;
    // A draw at a temperature could land on the mask token, which greedy never picks: banned.
    if (this.seed !== undefined) this.banned[manifest.special_tokens.mask] = 1;
    const committed = [...(options.committed ?? [])];
    if (committed.length >= options.maxTokens) {
      throw new DecodeInputError(`committed (${committed.length} tokens) leaves nothing to generate`);
    }
    if (
      committed.some(
        (id) =>
          !Number.isInteger(id) ||
          id < 0 ||
          id >= manifest.architecture.vocab_size ||
          this.banned[id] !== 0 ||
          id === manifest.special_tokens.mask ||
          manifest.special_tokens.eos_ids.includes(id),
      )
    ) {
      throw new DecodeInputError("committed holds an id that is not a text token of this model");
    }
    this.generated = committed;
    this.blockIndex = Math.ceil(committed.length / this.blockSize);
    this.uncached = [...ids, ...committed];
    this.cache = KvCache.empty(manifest);
    if (committed.length > 0) {
      const { text, final } = visibleText(this.textOf(committed), this.stops, false, false);
      if (final !== null) throw new DecodeInputError("committed text already ends the generation");
      this.emittedText = text;
    }
    this.start = {
      type: "start",
      model: manifest.name,
      prompt_tokens: this.prompt.count,
      block_size: this.blockSize,
    };
  }

  get done(): boolean {
    return this.finished;
  }

  /** This sequence's row of the next forward (none once it has finished). */
  next(): ForwardInput[] {
    return this.finished ? [] : [this.input()];
  }

  /**
   * Whether this generation uses the forward's greedy row statistics (onnxruntime computes them
   * for the whole batch at once); otherwise it reads the logits in JavaScript.
   */
  get wantsStats(): boolean {
    return false;
  }

  /** Applies this sequence's row of a forward's result; returns the events it produces. */
  take([result]: readonly ForwardResult[]): DecodeEvent[] {
    if (!result) throw new Error("a generation takes the result of its one row");
    this.forwardPasses++;
    const contextLength = this.uncached.length;
    if (contextLength > 0) {
      this.cache = this.cache.append(result.newKey, result.newValue, contextLength, result.batchRow);
      this.uncached = [];
    }
    return this.apply(result, contextLength);
  }

  /** Ends the generation early (the caller went away): a final `done` with what was used. */
  cancel(): DecodeEvent[] {
    return this.finished ? [] : [this.finish("cancelled")];
  }

  protected abstract input(): ForwardInput;
  /** `result` has `contextLength` rows for the context that was uncached, then the block's. */
  protected abstract apply(result: ForwardResult, contextLength: number): DecodeEvent[];

  /** Whether tokens are chosen greedily (no temperature). */
  protected get greedy(): boolean {
    return this.seed === undefined;
  }

  /** The completion's text: the generated tokens' text after the healed part, which is prompt. */
  protected textOf(ids: readonly number[]): string {
    return this.tokenizer.decode(ids).slice(this.prompt.healed.length);
  }

  /** The token chooser for the current block: seeded per block, so resuming at a block repeats the draws. */
  protected picker(): Pick {
    if (this.blockPicker?.block !== this.blockIndex) {
      const block = this.blockIndex;
      const seed = this.seed === undefined ? undefined : (this.seed ^ Math.imul(block + 1, 0x9e3779b1)) >>> 0;
      this.blockPicker = { block, pick: tokenPicker(this.banned, { ...this.options.sampling, seed }) };
    }
    return this.blockPicker.pick;
  }

  /** Banned ids at generated position `index` (token healing restricts the very first one). */
  protected banAt(index: number): Uint8Array | undefined {
    return index === 0 ? this.firstBan : undefined;
  }

  /**
   * A block is final: `ids` (an end token and what follows it cut off) join the generated text.
   * Returns the block event, and `done` if generation ends here.
   */
  protected commitBlock(ids: number[], ended: boolean, steps: number): DecodeEvent[] {
    this.generated.push(...ids);
    const { text, final } = visibleText(
      this.textOf(this.generated),
      this.stops,
      ended,
      this.generated.length >= this.options.maxTokens,
    );
    const events: DecodeEvent[] = [
      {
        type: "block",
        index: this.blockIndex,
        text: text.slice(this.emittedText.length),
        tokens: ids.length,
        steps,
        ids,
      },
    ];
    this.emittedText = text;
    this.blockIndex++;
    if (final !== null) events.push(this.finish(final));
    return events;
  }

  private finish(reason: FinishReason): DecodeEvent {
    this.finished = true;
    return {
      type: "done",
      finish_reason: reason,
      usage: {
        prompt_tokens: this.prompt.count,
        completion_tokens: this.generated.length - (this.options.committed?.length ?? 0),
        forward_passes: this.forwardPasses,
      },
    };
  }
}
