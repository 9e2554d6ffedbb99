/**
 * Block-wise parallel decoding (Fast-dLLM style) as a Generation (generation.ts).
 *
 * Blocks are generated in order; inside a block all positions start as `<|mask|>` and every step
 * is one forward pass of the block against the cached context. Each step commits some masked
 * positions (unmask.ts: a confidence threshold, a fixed number of steps, or an entropy bound),
 * so a block of n tokens takes between 1 and n steps. Optional edit rounds then re-check the
 * block's visible tokens and revise those the model confidently disagrees with (the stage-2
 * ability); they run before the block is final, so streamed text is never taken back.
 * Tokens committed but not yet cached (the prompt, then each finished block) ride along
 * causally in the first step of the next block, which appends their keys/values to the exact
 * KV cache: every forward pass is a denoising step (or an edit round).
 */
import type { DecodeEvent, EditedToken } from "./events.ts";
import {
  DEFAULT_EDIT_THRESHOLD,
  DEFAULT_THRESHOLD,
  type DecodeOptions,
  type Decoder,
  Generation,
} from "./generation.ts";
import { DecodeInputError } from "./prompt.ts";
import type { ForwardInput, ForwardResult } from "./session.ts";
import { type Chooser, commitTokens, logitsChooser, reviseTokens, type Unmasking } from "./unmask.ts";

export class DiffusionGeneration extends Generation {
  private readonly unmasking: Unmasking;
  private readonly editRounds: number;
  private block: number[];
  /** Forwards spent on the current block: denoising steps, then edit rounds. */
  private steps = 0;
  private editRound = 0;

  constructor(decoder: Decoder, options: DecodeOptions) {
    super(decoder, options);
    this.unmasking = unmaskingOf(options);
    this.editRounds = options.editRounds ?? 0;
    this.block = this.maskedBlock();
  }

  protected input(): ForwardInput {
    return { context: this.uncached, block: this.block, cache: this.cache };
  }

  override get wantsStats(): boolean {
    return this.greedy;
  }

  protected apply(result: ForwardResult, contextLength: number): DecodeEvent[] {
    const choose = this.chooser(result, contextLength);
    const { mask, eos } = this.manifest.special_tokens;
    const events: DecodeEvent[] = [];
    this.steps++;
    if (this.block.includes(mask)) {
      const committed = commitTokens(this.block, choose, this.manifest, this.unmasking, this.steps - 1);
      const firstMask = this.block.indexOf(mask);
      if (firstMask > 0 && this.stopsWithin(this.block.slice(0, firstMask))) {
        this.block.length = firstMask; // what follows the stop is never shown: drop it
      }
      if (this.options.emitSteps) {
        const state = this.block.map((id) => (id === mask ? null : this.tokenizer.decode([id])));
        const remaining = state.filter((t) => t === null).length;
        events.push({ type: "step", block: this.blockIndex, step: this.steps, committed, remaining, state });
      }
      if (this.block.includes(mask) || this.editRounds > 0) return events;
    } else {
      const threshold = this.options.editThreshold ?? DEFAULT_EDIT_THRESHOLD;
      const revisions = reviseTokens(this.block, choose, this.manifest, threshold);
      this.editRound++;
      if (revisions.length > 0) {
        const text = (id: number) => this.tokenizer.decode([id]);
        const edits: EditedToken[] = revisions.map((r) => ({
          position: r.position,
          from: text(r.from),
          to: text(r.to),
        }));
        events.push({ type: "edit", block: this.blockIndex, round: this.editRound, edits });
      }
      if (revisions.length > 0 && this.editRound < this.editRounds) return events;
    }
    // The block is final.
    const eosAt = this.block.indexOf(eos);
    const ids = eosAt === -1 ? this.block : this.block.slice(0, eosAt);
    events.push(...this.commitBlock(ids, eosAt !== -1, this.steps));
    this.uncached = ids; // cached by the next block's first step
    if (!this.done) {
      this.block = this.maskedBlock();
      this.steps = 0;
      this.editRound = 0;
    }
    return events;
  }

  /**
   * How the block's positions get their tokens this step: from the forward's row statistics
   * (greedy; computed by onnxruntime), or by reading the logits in JavaScript (sampling, and
   * the first token under token healing, whose banned ids differ).
   */
  private chooser({ logits, stats }: ForwardResult, contextLength: number): Chooser {
    const vocab = this.manifest.architecture.vocab_size;
    const firstBan = this.banAt(this.generated.length);
    const fromLogits = logitsChooser(logits.subarray(contextLength * vocab), vocab, this.picker(), firstBan);
    if (!stats) return fromLogits;
    return (position) => {
      if (position === 0 && firstBan) return fromLogits(position);
      const row = contextLength + position;
      return {
        token: Number(stats.topId[row]),
        confidence: Math.exp(stats.topLogprob[row] as number),
        entropy: stats.entropy[row] as number,
      };
    };
  }

  private maskedBlock(): number[] {
    const length = Math.min(this.blockSize, this.options.maxTokens - this.generated.length);
    return new Array<number>(length).fill(this.manifest.special_tokens.mask);
  }

  /** Whether the text so far plus the block's committed prefix completes a stop sequence. */
  private stopsWithin(prefix: readonly number[]): boolean {
    if (this.stops.length === 0 || prefix.includes(this.manifest.special_tokens.eos)) return false;
    const text = this.textOf([...this.generated, ...prefix]);
    const from = this.emittedText.length;
    return this.stops.some((stop) => text.indexOf(stop, Math.max(0, from - stop.length)) !== -1);
  }
}

/** The unmasking policy a request asks for: at most one of threshold, steps, entropy bound. */
export function unmaskingOf({ threshold, steps, entropyBound }: DecodeOptions): Unmasking {
  const given = [threshold, steps, entropyBound].filter((v) => v !== undefined).length;
  if (given > 1) throw new DecodeInputError("give at most one of threshold, steps and entropy_bound");
  if (steps !== undefined) {
    if (!Number.isInteger(steps) || steps < 1) throw new DecodeInputError("steps must be a positive integer");
    return { kind: "steps", steps };
  }
  if (entropyBound !== undefined) {
    if (!(entropyBound >= 0)) throw new DecodeInputError("entropy_bound must be at least 0");
    return { kind: "entropy", bound: entropyBound };
  }
  return { kind: "threshold", threshold: threshold ?? DEFAULT_THRESHOLD };
}
