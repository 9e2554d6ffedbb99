/**
 * Editing given code, two ways.
 *
 * - **Regions** (`rewriteRegions`): each marked character range is rewritten by infilling, with
 *   the text before it as prompt and the text after it as suffix (the layout the model was
 *   trained on); regions are taken left to right, each seeing the rewrites before it.
 * - **Repair** (`repairCode`): the stage-2 ability on code nobody marked. The code is read block
 *   by block behind a causal cache, as in decoding; each block gets up to `rounds` edit rounds in
 *   which every token the model prefers to replace with probability ≥ `threshold` is revised
 *   (unmask.ts's `reviseTokens`). Substitutions only: the block keeps its length.
 *
 * Both return the new code and the edits as character ranges of the original code.
 */
import type { CodeEdit, EditResult } from "../../protocol/src/index.ts";
import { DiffusionGeneration } from "./decode.ts";
import { DEFAULT_EDIT_THRESHOLD, type Decoder, runAlone } from "./generation.ts";
import { bannedTokenIds, DecodeInputError } from "./prompt.ts";
import { tokenPicker } from "./sampling.ts";
import { KvCache } from "./session.ts";
import { logitsChooser, reviseTokens } from "./unmask.ts";

export type { CodeEdit, EditResult };

export interface RegionOptions {
  code: string;
  regions: { start: number; end: number }[];
  /** Tokens each region's rewrite may take at most (default 64). */
  maxTokens?: number;
  threshold?: number;
  blockSize?: number;
}

export async function rewriteRegions(decoder: Decoder, options: RegionOptions): Promise<EditResult> {
  const regions = [...options.regions].sort((a, b) => a.start - b.start);
  let code = options.code;
  let shift = 0; // how far later offsets moved in the rewritten code
  let forwardPasses = 0;
  let tokens = 0;
  const edits: CodeEdit[] = [];
  for (const { start, end } of regions) {
    const before = options.code.slice(start, end);
    const generation = new DiffusionGeneration(decoder, {
      prompt: code.slice(0, start + shift),
      suffix: code.slice(end + shift),
      maxTokens: options.maxTokens ?? 64,
      threshold: options.threshold,
      blockSize: options.blockSize,
    });
    let after = "";
    for await (const event of runAlone(generation, decoder.session)) {
      if (event.type === "block") after += event.text;
      if (event.type === "done") {
        forwardPasses += event.usage.forward_passes;
        tokens += event.usage.prompt_tokens + event.usage.completion_tokens;
      }
    }
    code = code.slice(0, start + shift) + after + code.slice(end + shift);
    shift += after.length - before.length;
    edits.push({ start, end, before, after });
  }
  return { code, edits, tokens, forward_passes: forwardPasses };
}

export interface RepairOptions {
  code: string;
  /** Text the code follows (context, never edited). */
  prompt?: string;
  threshold?: number;
  rounds?: number;
  blockSize?: number;
}

export async function repairCode(
  { manifest, session, tokenizer }: Decoder,
  options: RepairOptions,
): Promise<EditResult> {
  const vocab = manifest.architecture.vocab_size;
  const blockSize = options.blockSize ?? manifest.block_sizes[0] ?? 32;
  const threshold = options.threshold ?? DEFAULT_EDIT_THRESHOLD;
  // Control tokens are never written into code, the end token included (it would cut the code).
  const banned = bannedTokenIds(manifest);
  banned[manifest.special_tokens.eos] = 1;
  const pick = tokenPicker(banned);
  const original = tokenizer.encode(options.code);
  const context = [manifest.special_tokens.bos, ...(options.prompt ? tokenizer.encode(options.prompt) : [])];
  if (context.length + original.length > manifest.context_length) {
    throw new DecodeInputError(
      `the code (${original.length} tokens) does not fit the model's context of ${manifest.context_length} tokens`,
    );
  }
  const ids = [...original];
  let cache = KvCache.empty(manifest);
  let uncached = context;
  let forwardPasses = 0;
  for (let start = 0; start < ids.length; start += blockSize) {
    const block = ids.slice(start, start + blockSize);
    for (let round = 0; round < (options.rounds ?? 1); round++) {
      const [result] = await session.forwardBatch([{ context: uncached, block, cache }]);
      if (!result) throw new Error("no forward result");
      forwardPasses++;
      const blockLogits = result.logits.subarray(uncached.length * vocab);
      if (uncached.length > 0) {
        cache = cache.append(result.newKey, result.newValue, uncached.length);
        uncached = [];
      }
      if (reviseTokens(block, logitsChooser(blockLogits, vocab, pick), manifest, threshold).length === 0)
        break;
    }
    ids.splice(start, block.length, ...block);
    uncached = block;
  }
  return {
    ...diff(tokenizer, original, ids),
    tokens: context.length + original.length,
    forward_passes: forwardPasses,
  };
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
