/**
 * The context a generation continues, and the ids it may choose. Token healing: the prompt's
 * last token is given back (`healed`, its text) and the first generated token must begin with
 * that text. BPE merges across the point where a prompt ends: in training, "):\n    return" is
 * `):` `\n   ` ` return`, so a prompt that ends in a lone `\n` token sits on a boundary the model
 * has only seen before unindented lines. models/python/sample.py's `encode_prompt` is the same.
 */
import type { Manifest } from "./manifest.ts";
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
): PromptTokens {
  const special = manifest.special_tokens;
  const head = tokenizer.encode(prompt);
  const healed = tokenizer.decode(head.slice(-1));
  const kept = head.slice(0, -1);
  if (suffix === undefined) return { ids: [special.bos, ...kept], healed, count: head.length };
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
  for (const id of Object.values(manifest.special_tokens)) ban[id] = 1;
  return ban;
}

/** 1 for control tokens the model must never produce in text (end-of-sequence it may). */
export function bannedTokenIds(manifest: Manifest): Uint8Array {
  const banned = new Uint8Array(manifest.architecture.vocab_size);
  for (const id of Object.values(manifest.special_tokens)) banned[id] = 1;
  banned[manifest.special_tokens.eos] = 0;
  return banned;
}
