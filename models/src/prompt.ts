/**
 * The context a generation continues, and the ids it may choose. Token healing: the prompt's
 * last token is given back (`healed`, its text) and the first generated token must begin with
 * that text. BPE merges across the point where a prompt ends: in training, "):\n    return" is
 * `):` `\n   ` ` return`, so a prompt that ends in a lone `\n` token sits on a boundary the model
 * has only seen before unindented lines. models/python/sample.py's `encode_prompt` is the same.
 */
import { type ChatMessage, chatPrompt, chatPromptIds, hasChatTemplate } from "./chat.ts";
import { controlTokenIds, type Manifest } from "./manifest.ts";
import type { TextTokenizer } from "./tokenizer.ts";

export class DecodeInputError extends Error {
  override name = "DecodeInputError";
}

export interface PromptTokens {
  /** `<|bos|> prompt`, or `<|fim_prefix|> prompt <|fim_suffix|> suffix <|fim_middle|>`, less the healed token. */
  ids: number[];
  /** The text of the prompt's last token, which the first generated token must begin with. */
  healed: string;
  /** The prompt's own tokens (the healed one included, the markers not): usage's prompt_tokens. */
  count: number;
}

export function promptTokens(
  manifest: Manifest,
  tokenizer: TextTokenizer,
  prompt: string,
  suffix: string | undefined,
  /** A conversation instead of `prompt` (chat.ts): the template's ids as they are, or chatPrompt's text. */
  messages?: readonly ChatMessage[],
): PromptTokens {
  if (messages !== undefined) {
    if (hasChatTemplate(manifest)) {
      const ids = chatPromptIds(manifest, tokenizer, messages);
      return { ids, healed: "", count: ids.length };
    }
    return promptTokens(manifest, tokenizer, chatPrompt(messages), undefined);
  }
  const special = manifest.special_tokens;
  const { token_healing, add_bos } = manifest.decoding;
  const head = tokenizer.encode(prompt);
  const healed = token_healing ? tokenizer.decode(head.slice(-1)) : "";
  const kept = token_healing ? head.slice(0, -1) : head;
  if (suffix === undefined) {
    const bos = add_bos && special.bos != null ? [special.bos] : [];
    return { ids: [...bos, ...kept], healed, count: head.length };
  }
  const { fim_prefix: prefix, fim_suffix: marker, fim_middle: middle } = special;
  if (prefix === undefined || marker === undefined || middle === undefined) {
    throw new DecodeInputError(`the model ${manifest.name} has no infilling tokens`);
  }
  const tail = tokenizer.encode(suffix);
  return { ids: [prefix, ...kept, marker, ...tail, middle], healed, count: head.length + tail.length };
}

/** Banned ids for the first generated token: special tokens, and any token not beginning with `healed`. */
export function healingBan(
  manifest: Manifest,
  tokenizer: TextTokenizer,
  healed: string,
): Uint8Array | undefined {
  if (healed === "") return undefined;
  const texts = tokenizer.tokenTexts(manifest.architecture.vocab_size);
  const ban = Uint8Array.from(texts, (text) => (text.startsWith(healed) ? 0 : 1));
  for (const id of controlTokenIds(manifest)) ban[id] = 1;
  return ban;
}

/**
 * 1 for ids the model must never produce: its control tokens, end ids excepted, where its
 * family suppresses them (Sprout's); none for the families that choose from the whole vocabulary.
 */
export function bannedTokenIds(manifest: Manifest): Uint8Array {
  const banned = new Uint8Array(manifest.architecture.vocab_size);
  if (!manifest.decoding.suppress_control_tokens) return banned;
  for (const id of controlTokenIds(manifest)) banned[id] = 1;
  for (const id of manifest.special_tokens.eos_ids) banned[id] = 0;
  return banned;
}

/**
 * The ids a verification or repair puts before the code: `<|bos|>`. Both score and revise code
 * by Sprout's own conventions (a causal prompt, blocks right after it, no shift); a model that
 * decodes otherwise (an imported checkpoint) gets a clear refusal instead of wrong numbers.
 */
export function sproutContextStart(manifest: Manifest, what: string): number[] {
  const { logit_shift, block_alignment, prompt_attention } = manifest.decoding;
  const { bos } = manifest.special_tokens;
  if (
    logit_shift !== 0 ||
    block_alignment !== "after_prompt" ||
    prompt_attention !== "causal" ||
    bos == null
  ) {
    throw new DecodeInputError(
      `${what} needs a model with Sprout's decoding conventions; ${manifest.name} has its own`,
    );
  }
  return [bos];
}
