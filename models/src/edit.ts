/**
 * Editing given code, two ways.
 *
 * - **Regions** (`RegionRewrite`): each marked character range is rewritten by infilling, with
 *   the text before it as prompt and the text after it as suffix (the layout the model was
 *   trained on); regions are taken left to right, each seeing the rewrites before it.
 * - **Repair** (`CodeRepair`): the stage-2 ability on code nobody marked. The code is read block
 *   by block behind a causal cache, as in decoding; each block gets up to `rounds` edit rounds in
 *   which every token the model prefers to replace with probability ≥ `threshold` is revised
 *   (unmask.ts's `reviseTokens`). Substitutions only: the block keeps its length.
 *
 * Both are step machines (work.ts), so the node batches them with generations; both end with
 * the new code and the edits as character ranges of the original code.
 */
import type { CodeEdit, EditResult } from "../../protocol/src/index.ts";
import { DiffusionGeneration } from "./decode.ts";
import { DEFAULT_EDIT_THRESHOLD, type Decoder } from "./generation.ts";
import { bannedTokenIds, DecodeInputError, sproutContextStart } from "./prompt.ts";
import { type Pick, tokenPicker } from "./sampling.ts";
import { type ForwardInput, type ForwardResult, KvCache } from "./session.ts";
import { logitsChooser, reviseTokens } from "./unmask.ts";
import type { Work } from "./work.ts";

export type { CodeEdit, EditResult };

/** A character range of the code, `end` exclusive. */
type Region = { start: number; end: number };

export interface RegionOptions {
  code: string;
  regions: Region[];
  /** Tokens each region's rewrite may take at most (default 64). */
  maxTokens?: number;
  threshold?: number;
  blockSize?: number;
}

/**
 * Rewrites regions left to right, each one a generation (infilling) whose forwards are this
 * work's: a driver that batches generations batches a rewrite with them.
 */
export class RegionRewrite implements Work<EditResult> {
  private readonly regions: Region[];
  private code: string;
  private shift = 0; // how far later offsets moved in the rewritten code
  private forwardPasses = 0;
  /** Tokens the rewrites read and wrote (their generations' prompt and completion tokens). */
  private tokens = 0;
  private readonly edits: CodeEdit[] = [];
  /** The region being rewritten, its generation and the text it wrote so far; none once all are done. */
  private current: { region: Region; generation: DiffusionGeneration; written: string } | undefined;
  private finished = false;

  constructor(
    private readonly decoder: Decoder,
    private readonly options: RegionOptions,
  ) {
    this.regions = [...options.regions].sort((a, b) => a.start - b.start);
    this.code = options.code;
    this.current = this.nextRegion(); // a region the model cannot take is refused here, up front
  }

  get done(): boolean {
    return this.finished;
  }

  get wantsStats(): boolean {
    return this.current?.generation.wantsStats ?? false;
  }

  next(): ForwardInput[] {
    return this.current?.generation.next() ?? [];
  }

  take(results: readonly ForwardResult[]): EditResult[] {
    const current = this.current;
    if (current) {
      for (const event of current.generation.take(results)) {
        if (event.type === "block") current.written += event.text;
        if (event.type === "done") {
          this.forwardPasses += event.usage.forward_passes;
          this.tokens += event.usage.prompt_tokens + event.usage.completion_tokens;
        }
      }
      if (!current.generation.done) return [];
      this.replace(current.region, current.written);
      this.current = this.nextRegion();
      if (this.current) return [];
    }
    this.finished = true;
    return [{ code: this.code, edits: this.edits, tokens: this.tokens, forward_passes: this.forwardPasses }];
  }

  cancel(): EditResult[] {
    this.current?.generation.cancel();
    this.finished = true;
    return [];
  }

  /** The next region's rewrite, between the text around it as rewritten so far. */
  private nextRegion(): typeof this.current {
    const region = this.regions[this.edits.length];
    if (!region) return undefined;
    const generation = new DiffusionGeneration(this.decoder, {
      prompt: this.code.slice(0, region.start + this.shift),
      suffix: this.code.slice(region.end + this.shift),
      maxTokens: this.options.maxTokens ?? 64,
      threshold: this.options.threshold,
      blockSize: this.options.blockSize,
    });
    return { region, generation, written: "" };
  }

  private replace({ start, end }: Region, after: string): void {
    const before = this.options.code.slice(start, end);
    this.code = this.code.slice(0, start + this.shift) + after + this.code.slice(end + this.shift);
    this.shift += after.length - before.length;
    this.edits.push({ start, end, before, after });
  }
}

export interface RepairOptions {
  code: string;
  /** Text the code follows (context, never edited). */
  prompt?: string;
  threshold?: number;
  rounds?: number;
  blockSize?: number;
}

/** Repair as a step machine: one forward per edit round of a block, one row each. */
export class CodeRepair implements Work<EditResult> {
  readonly wantsStats = false;
  private readonly decoder: Decoder;
  private readonly blockSize: number;
  private readonly threshold: number;
  private readonly rounds: number;
  private readonly pick: Pick;
  private readonly original: number[];
  /** Tokens the repair reads: the context and the code. */
  private readonly tokens: number;
  private readonly ids: number[];
  private cache: KvCache;
  private uncached: number[];
  /** The block under repair: it starts at token `start` of the code. */
  private start = 0;
  private block: number[];
  private round = 0;
  private forwardPasses = 0;
  private finished = false;

  constructor(decoder: Decoder, options: RepairOptions) {
    const { manifest, tokenizer } = decoder;
    this.decoder = decoder;
    this.blockSize = options.blockSize ?? manifest.block_sizes[0] ?? 32;
    this.threshold = options.threshold ?? DEFAULT_EDIT_THRESHOLD;
    this.rounds = options.rounds ?? 1;
    if (!Number.isInteger(this.rounds) || this.rounds < 1) {
      throw new DecodeInputError("rounds must be a positive integer");
    }
    // Control tokens are never written into code, the end token included (it would cut the code).
    const banned = bannedTokenIds(manifest);
    banned[manifest.special_tokens.eos] = 1;
    this.pick = tokenPicker(banned);
    this.original = tokenizer.encode(options.code);
    const context = [
      ...sproutContextStart(manifest, "repair"),
      ...(options.prompt ? tokenizer.encode(options.prompt) : []),
    ];
    if (context.length + this.original.length > decoder.contextLength) {
      throw new DecodeInputError(
        `the code (${this.original.length} tokens) does not fit the model's context of ${decoder.contextLength} tokens`,
      );
    }
    this.tokens = context.length + this.original.length;
    this.ids = [...this.original];
    this.cache = KvCache.empty(manifest);
    this.uncached = context;
    this.block = this.ids.slice(0, this.blockSize);
  }

  get done(): boolean {
    return this.finished;
  }

  /** The block against the cached text before it (empty code: no forward at all). */
  next(): ForwardInput[] {
    if (this.finished || this.block.length === 0) return [];
    return [{ context: this.uncached, block: this.block, cache: this.cache }];
  }

  take([result]: readonly ForwardResult[]): EditResult[] {
    if (result && this.reviseBlock(result)) return [];
    this.finished = true;
    return [
      {
        ...diff(this.decoder.tokenizer, this.original, this.ids),
        tokens: this.tokens,
        forward_passes: this.forwardPasses,
      },
    ];
  }

  cancel(): EditResult[] {
    this.finished = true;
    return [];
  }

  /** One edit round of the current block; whether a forward is still wanted (this block or the next). */
  private reviseBlock(result: ForwardResult): boolean {
    const { manifest } = this.decoder;
    const vocab = manifest.architecture.vocab_size;
    this.forwardPasses++;
    const blockLogits = result.logits.subarray(this.uncached.length * vocab);
    if (this.uncached.length > 0) {
      this.cache = this.cache.append(result.newKey, result.newValue, this.uncached.length, result.batchRow);
      this.uncached = [];
    }
    const chooser = logitsChooser(blockLogits, vocab, this.pick);
    const eosIds = new Set(manifest.special_tokens.eos_ids);
    const revised = reviseTokens(this.block, chooser, eosIds, this.threshold).length > 0;
    this.round++;
    if (revised && this.round < this.rounds) return true;
    // The block is settled; the next one sees it (as revised) as causal context.
    this.ids.splice(this.start, this.block.length, ...this.block);
    this.uncached = this.block;
    this.start += this.blockSize;
    this.block = this.ids.slice(this.start, this.start + this.blockSize);
    this.round = 0;
    return this.block.length > 0;
  }
}

/** The edited code and its token substitutions as character ranges of the original. */
function diff(
  tokenizer: Decoder["tokenizer"],
  original: readonly number[],
  edited: readonly number[],
): { code: string; edits: CodeEdit[] } {
  const offsets = [0];
  for (let i = 1; i <= original.length; i++) offsets.push(tokenizer.decode(original.slice(0, i)).length);
  const edits: CodeEdit[] = [];
  for (let i = 0; i < original.length; i++) {
    if (original[i] === edited[i]) continue;
    const last = edits.at(-1);
    const start = offsets[i] as number;
    const end = offsets[i + 1] as number;
    const after = tokenizer.decode([edited[i] as number]);
    if (last && last.end === start) {
      last.end = end;
      last.before += tokenizer.decode([original[i] as number]);
      last.after += after;
    } else {
      edits.push({ start, end, before: tokenizer.decode([original[i] as number]), after });
    }
  }
  return { code: tokenizer.decode([...edited]), edits };
}
