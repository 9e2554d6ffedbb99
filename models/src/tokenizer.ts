/**
 * The serving side of the shared `tokenizer.json` (trained by models/python/tokenizer.py).
 *
 * Text is always text: a prompt or file that spells a control token (`<|mask|>`, `<|eos|>`,
 * `<|fim_prefix|>`…) is encoded byte by byte like any other characters, never as the control
 * token, so no request can inject a mask or end the document early. Encoding uses the tokenizer
 * without its added tokens (the BPE vocabulary and merges are the same, and no merge produces a
 * control token); decoding uses the whole tokenizer. Python does the same
 * (tokenizer.py's `load_tokenizer`: `encode_special_tokens`). Only a chat template's own text
 * (chat.ts) is read with its control tokens recognized (`controlTokens`).
 */
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";

export class TextTokenizer {
  private texts: string[] | undefined;
  /** The added tokens' texts and ids (`<|im_start|>` → its id): the tokens `encode` never produces. */
  readonly controlTokens: ReadonlyMap<string, number>;

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly textOnly: Tokenizer,
    added: readonly { id: number; content: string }[],
    /** The id of the model's unknown token, if it has one. */
    private readonly unknown: number | undefined,
  ) {
    this.controlTokens = new Map(added.map((t) => [t.content, t.id]));
  }

  static async fromFile(path: string): Promise<TextTokenizer> {
    return TextTokenizer.fromJson(JSON.parse(await readFile(path, "utf8")));
  }

  /** From a parsed `tokenizer.json`. */
  static fromJson(json: {
    added_tokens?: { id: number; content: string }[];
    model?: { unk_token?: string | null; vocab?: unknown };
  }): TextTokenizer {
    const { unk_token: unk, vocab } = json.model ?? {};
    const unknown =
      typeof unk === "string" && vocab && typeof vocab === "object" && !Array.isArray(vocab)
        ? (vocab as Record<string, number>)[unk]
        : undefined;
    return new TextTokenizer(
      new Tokenizer(json, {}),
      new Tokenizer({ ...json, added_tokens: [] }, {}),
      json.added_tokens ?? [],
      unknown,
    );
  }

  encode(text: string): number[] {
    const { ids } = this.textOnly.encode(text, { add_special_tokens: false });
    // @huggingface/tokenizers gives no id for a word-level tokenizer's unknown words: its unk token.
    if (!ids.includes(undefined as unknown as number)) return ids;
    if (this.unknown === undefined) throw new Error("the tokenizer has no id for part of the text");
    return ids.map((id) => id ?? (this.unknown as number));
  }

  /** The text of each token id on its own (computed once). */
  tokenTexts(vocabSize: number): readonly string[] {
    this.texts ??= Array.from({ length: vocabSize }, (_, id) => this.decode([id]));
    return this.texts;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ""; // the library refuses an empty list
    // No "clean-up" of spaces before punctuation: in code, `from . import x` must stay as written
    // (and the text decoded so far must never change when more tokens arrive).
    return this.tokenizer.decode([...ids], {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: false,
    });
  }
}
