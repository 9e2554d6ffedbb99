/**
 * Block-wise parallel decoding as a Generation (generation.ts), for every family's conventions
 * (the manifest's `decoding`, manifest.ts): Sprout's own and the imported checkpoints'.
 *
 * Blocks are generated in order; inside a block the positions to generate start as the mask
 * token and every step is one forward pass of the block against the cached context. Each step
 * commits some masked positions (unmask.ts: the family's rule, or a request's threshold, step
 * budget or entropy bound), so a block of n tokens takes between 1 and n steps. Optional edit
 * rounds then re-check the block's visible tokens and revise those the model confidently
 * disagrees with (the stage-2 ability); they run before the block is final, so streamed text is
 * never taken back.
 *
 * Where blocks fall (`block_alignment`): right after the prompt, or on absolute positions, in
 * which case the block holding the prompt's tail is denoised with that tail in it. Committed
 * tokens not yet cached (the prompt, then each finished block) ride along in the next forward,
 * causally or block-causally (`prompt_attention`), which appends their keys/values to the exact
 * KV cache; under a block-causal mask that is exactly what a commit pass of its own computes.
 * A family whose commit pass also yields the next block's first token (`commit:
 * pass_yields_next_first_token`, with `logit_shift: 1`) runs that pass as a forward of its own.
 */
import type { DecodeEvent, EditedToken } from "./events.ts";
import {
  DEFAULT_EDIT_THRESHOLD,
  DEFAULT_THRESHOLD,
  type DecodeOptions,
  type Decoder,
  Generation,
} from "./generation.ts";
import type { Decoding } from "./manifest.ts";
import { DecodeInputError } from "./prompt.ts";
import type { ForwardInput, ForwardResult } from "./session.ts";
import { type Chooser, commitTokens, reviseTokens, type Unmasking } from "./unmask.ts";

export class DiffusionGeneration extends Generation {
  private readonly unmasking: Unmasking;
  private readonly editRounds: number;
  private readonly decoding: Decoding;
  private readonly eosIds: ReadonlySet<number>;
  /** Absolute position where the generation's blocks are counted from (mod blockSize). */
  private readonly origin: number;
  /** Absolute position of the current block's first token. */
  private blockStart: number;
  /** The current block: committed tokens already in it (the prompt's tail), then the generated ones. */
  private block: number[];
  /** Where the generated part of `block` begins. */
  private blockFrom = 0;
  /** Masks in the generated part when the block began (the step schedules split these). */
  private blockMasks = 0;
  /** Forwards spent on the current block: denoising steps, then edit rounds. */
  private steps = 0;
  private editRound = 0;
  /** The next block needs its first token from a commit pass before it is denoised. */
  private needsFirstToken = false;
  /** The block positions whose predictions the last forward asked for (rowsAsked), in order. */
  private read: number[] = [];

  constructor(decoder: Decoder, options: DecodeOptions) {
    super(decoder, options);
    this.decoding = this.manifest.decoding;
    this.unmasking = unmaskingOf(options, this.decoding, this.blockSize);
    this.editRounds = options.editRounds ?? 0;
    this.eosIds = new Set(this.manifest.special_tokens.eos_ids);
    const length = this.uncached.length; // the prompt and any resumed tokens; nothing is cached yet
    const promptLength = this.prompt.ids.length;
    if (length < this.decoding.logit_shift) {
      throw new DecodeInputError(
        `${this.manifest.name} predicts each token from the one before it: give a prompt (or messages)`,
      );
    }
    if (this.decoding.block_alignment === "absolute") this.origin = 0;
    else if (this.decoding.block_alignment === "left_padded") this.origin = promptLength % this.blockSize;
    else this.origin = length % this.blockSize; // Sprout's: blocks follow whatever came before
    this.blockStart = length - this.offsetInBlock(length);
    // The generation's first block is the one holding its first position (maybe the prompt's tail).
    if (this.decoding.block_alignment !== "after_prompt") {
      this.blockIndex = this.blockOf(length) - this.blockOf(promptLength);
    }
    const tail = this.uncached.splice(this.blockStart); // nothing is cached: index = position
    this.block = tail;
    this.blockFrom = tail.length;
    this.needsFirstToken = this.firstTokenFromPass(this.blockStart, tail.length);
    if (!this.needsFirstToken) this.fillMasks();
  }

  protected input(): ForwardInput {
    const contextBlocks =
      this.decoding.prompt_attention === "block_causal"
        ? { size: this.blockSize, origin: this.origin }
        : undefined;
    if (this.needsFirstToken) {
      // The commit pass: the finished block (and anything else uncached) alone; its last row
      // gives the next block's first token.
      const rows = [this.uncached.length - 1];
      return {
        context: this.uncached,
        block: [],
        cache: this.cache,
        rows,
        ...(contextBlocks && { contextBlocks }),
      };
    }
    return {
      context: this.uncached,
      block: this.block,
      cache: this.cache,
      rows: this.rowsAsked(),
      ...(contextBlocks && { contextBlocks }),
    };
  }

  override get wantsStats(): boolean {
    return this.greedy;
  }

  protected apply(result: ForwardResult, _contextLength: number): DecodeEvent[] {
    if (this.needsFirstToken) return this.takeFirstToken(result);
    const choose = this.chooser(result);
    const { mask } = this.manifest.special_tokens;
    const events: DecodeEvent[] = [];
    this.steps++;
    if (this.block.includes(mask)) {
      const committed = commitTokens(this.block, choose, {
        mask,
        eosIds: this.eosIds,
        unmasking: this.unmasking,
        stepsTaken: this.steps - 1,
        blockSize: this.blockSize,
        masksAtStart: this.blockMasks,
        candidates: this.candidatePositions(),
        settleAfterEos: this.decoding.settle_after_eos,
        from: this.blockFrom,
      });
      if (committed === 0) {
        throw new Error(`${this.manifest.name} chose its own mask token for every position it could unmask`);
      }
      const firstMask = this.block.indexOf(mask);
      const generated = this.block.slice(this.blockFrom, firstMask === -1 ? undefined : firstMask);
      if (firstMask > this.blockFrom && this.stopsWithin(generated)) {
        this.block.length = firstMask; // what follows the stop is never shown: drop it
      } else if (this.decoding.stop === "eos_unmasked_with_no_masks_before" && this.endIn(generated) !== -1) {
        this.block.length = this.blockFrom + this.endIn(generated) + 1; // it ends here, mid-block
      }
      if (this.options.emitSteps) {
        const state = this.block
          .slice(this.blockFrom)
          .map((id) => (id === mask ? null : this.tokenizer.decode([id])));
        const remaining = state.filter((t) => t === null).length;
        events.push({ type: "step", block: this.blockIndex, step: this.steps, committed, remaining, state });
      }
      // A full last block (`last_block: full`) is final once every position max_tokens keeps is
      // committed: later steps would only fill positions that are cut.
      const kept = this.blockFrom + this.options.maxTokens - this.generated.length;
      if (this.block.length > kept && !this.block.slice(0, kept).includes(mask)) this.block.length = kept;
      if (this.block.includes(mask) || this.editRounds > 0) return events;
    } else {
      const threshold = this.options.editThreshold ?? DEFAULT_EDIT_THRESHOLD;
      const from = this.positionsRead()[0] ?? this.block.length;
      const revisions = reviseTokens(this.block, choose, this.eosIds, threshold, from);
      this.editRound++;
      if (revisions.length > 0) {
        const text = (id: number) => this.tokenizer.decode([id]);
        const edits: EditedToken[] = revisions.map((r) => ({
          position: r.position - this.blockFrom,
          from: text(r.from),
          to: text(r.to),
        }));
        events.push({ type: "edit", block: this.blockIndex, round: this.editRound, edits });
      }
      if (revisions.length > 0 && this.editRound < this.editRounds) return events;
    }
    return [...events, ...this.finishBlock()];
  }

  /** The block is final: its generated tokens (cut at an end token) are committed. */
  private finishBlock(): DecodeEvent[] {
    const room = this.options.maxTokens - this.generated.length;
    const generated = this.block.slice(this.blockFrom, this.blockFrom + room); // a full last block is cut
    const endAt = this.endIn(generated);
    const ids = endAt === -1 ? generated : generated.slice(0, endAt);
    const events = this.commitBlock(ids, endAt !== -1, this.steps);
    this.uncached.push(...this.block); // cached by the next forward
    if (!this.done) this.nextBlock();
    return events;
  }

  private nextBlock(): void {
    this.blockStart += this.block.length;
    this.block = [];
    this.blockFrom = 0;
    this.steps = 0;
    this.editRound = 0;
    this.needsFirstToken = this.firstTokenFromPass(this.blockStart, 0);
    if (!this.needsFirstToken) this.fillMasks();
  }

  /** The commit pass's last row is the next block's first token (greedy, as the family does). */
  private takeFirstToken(result: ForwardResult): DecodeEvent[] {
    const { token } = this.chooser(result)(0);
    this.needsFirstToken = false;
    this.block = [token];
    this.blockFrom = 0;
    if (this.eosIds.has(token)) return this.commitBlock([], true, 0);
    this.fillMasks();
    if (this.generated.length + 1 >= this.options.maxTokens) {
      this.block.length = 1;
      return this.finishBlock(); // max_tokens left room for this one token only
    }
    return [];
  }

  /** Masks for the rest of the block: as many as max_tokens still allows, or all (`last_block: full`). */
  private fillMasks(): void {
    const room = this.options.maxTokens - this.generated.length - (this.block.length - this.blockFrom);
    const rest = this.blockSize - this.block.length;
    const length = Math.max(0, this.decoding.last_block === "full" ? rest : Math.min(rest, room));
    this.block.push(...new Array<number>(length).fill(this.manifest.special_tokens.mask));
    this.blockMasks = length;
  }

  /** Whether a block starting at `start` with `known` tokens in it gets its first token from a pass. */
  private firstTokenFromPass(start: number, known: number): boolean {
    return this.decoding.commit === "pass_yields_next_first_token" && known === 0 && start > 0;
  }

  private blockOf(position: number): number {
    return Math.floor((position - this.origin) / this.blockSize);
  }

  private offsetInBlock(position: number): number {
    return (((position - this.origin) % this.blockSize) + this.blockSize) % this.blockSize;
  }

  /** The masked positions this step may unmask: all of them, or those of the first sub-block holding one. */
  private candidatePositions(): number[] {
    const { mask } = this.manifest.special_tokens;
    const masked = this.block.flatMap((id, position) => (id === mask ? [position] : []));
    const size = this.decoding.sub_block_size;
    if (size === null || masked.length === 0) return masked;
    const sub = Math.floor((masked[0] as number) / size);
    return masked.filter((position) => Math.floor(position / size) === sub);
  }

  /** Block positions whose prediction this step reads: the candidates, or the whole generated part for an edit round. */
  private positionsRead(): number[] {
    const { mask } = this.manifest.special_tokens;
    if (this.block.includes(mask)) return this.candidatePositions();
    // An edit round re-reads the generated part; under a logit shift, a first position whose
    // predictor is already cached is not in this forward, so it is left as it is.
    const first = Math.max(this.blockFrom, this.decoding.logit_shift - this.uncached.length);
    return this.block.map((_, i) => i).slice(first);
  }

  /**
   * The rows of this forward whose logits predict the positions read (a position's own row, or
   * the one before it under `logit_shift: 1`), in order: only those, so that the greedy
   * statistics (and, with a graph that computes only the rows asked for, the head) cost what
   * the masked positions need, not the whole block.
   */
  private rowsAsked(): number[] {
    this.read = this.positionsRead();
    return this.read.map((position) => this.rowOf(position, this.uncached.length));
  }

  /** The forward's row (index into context + block) whose logit predicts block `position`. */
  private rowOf(position: number, contextLength: number): number {
    return contextLength + position - this.decoding.logit_shift;
  }

  /**
   * How the block's positions get their tokens this step: from the forward's row statistics
   * (greedy; computed by onnxruntime), or by reading the logits in JavaScript (sampling, and
   * the first token under token healing, whose banned ids differ). `result` holds the rows
   * asked for (rowsAsked; the commit pass: its last), in order.
   */
  private chooser({ logits, stats }: ForwardResult): Chooser {
    const vocab = this.manifest.architecture.vocab_size;
    // Where each position read is among the rows asked (rowsAsked: the positions read, in order).
    const asked = new Map(this.read.map((position, k) => [position, k]));
    const row = (position: number) => {
      if (this.needsFirstToken) return 0;
      const k = asked.get(position);
      if (k === undefined) throw new Error(`block position ${position} was not asked of the forward`);
      return k;
    };
    const firstBan = this.banAt(this.generated.length);
    const pick = this.picker();
    const firstGenerated = this.blockFrom;
    const fromLogits = (position: number) => {
      const k = row(position);
      return pick(
        logits.subarray(k * vocab, (k + 1) * vocab),
        position === firstGenerated ? firstBan : undefined,
      );
    };
    if (!stats) return fromLogits;
    return (position) => {
      if (position === firstGenerated && firstBan) return fromLogits(position);
      const k = row(position);
      return {
        token: Number(stats.topId[k]),
        confidence: Math.exp(stats.topLogprob[k] as number),
        entropy: stats.entropy[k] as number,
      };
    };
  }

  /** Index of the first end token in `ids`, or -1. */
  private endIn(ids: readonly number[]): number {
    return ids.findIndex((id) => this.eosIds.has(id));
  }

  /** Whether the text so far plus the block's committed prefix completes a stop sequence. */
  private stopsWithin(prefix: readonly number[]): boolean {
    if (this.stops.length === 0 || this.endIn(prefix) !== -1) return false;
    const text = this.textOf([...this.generated, ...prefix]);
    const from = this.emittedText.length;
    return this.stops.some((stop) => text.indexOf(stop, Math.max(0, from - stop.length)) !== -1);
  }
}

/**
 * The unmasking a request asks for: at most one of threshold, steps, entropy bound; none gives
 * the model family's own rule (`decoding.unmasking`) at its threshold and step count. A threshold
 * or step count with a family rule that has that knob changes the knob, keeping the rule (SDAR's
 * has both, so both may be given).
 */
export function unmaskingOf(
  { threshold, steps, entropyBound }: DecodeOptions,
  decoding: Decoding,
  blockSize: number,
): Unmasking {
  const given = [threshold, steps, entropyBound].filter((v) => v !== undefined).length;
  const bothKnobs = decoding.unmasking === "low_confidence_dynamic" && entropyBound === undefined;
  if (given > 1 && !bothKnobs) {
    throw new DecodeInputError("give at most one of threshold, steps and entropy_bound");
  }
  if (steps !== undefined && (!Number.isInteger(steps) || steps < 1)) {
    throw new DecodeInputError("steps must be a positive integer");
  }
  if (entropyBound !== undefined) {
    if (!(entropyBound >= 0)) throw new DecodeInputError("entropy_bound must be at least 0");
    return { kind: "entropy", bound: entropyBound };
  }
  const familyThreshold = decoding.confidence_threshold ?? DEFAULT_THRESHOLD;
  switch (decoding.unmasking) {
    case "low_confidence_dynamic":
      return {
        kind: "dynamic",
        threshold: threshold ?? familyThreshold,
        steps: steps ?? decoding.steps ?? blockSize,
      };
    case "top_k_per_step":
      if (threshold !== undefined) return { kind: "threshold", threshold, strict: false };
      return { kind: "top_k", steps: steps ?? decoding.steps ?? blockSize };
    case "threshold_with_forced_argmax":
      if (steps !== undefined) return { kind: "steps", steps };
      return { kind: "threshold", threshold: threshold ?? familyThreshold, strict: true };
    case "threshold":
      if (steps !== undefined) return { kind: "steps", steps };
      return { kind: "threshold", threshold: threshold ?? familyThreshold, strict: false };
  }
}
