/** The serving side of the shared `tokenizer.json` (trained by models/python/tokenizer.py). */
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";

export class TextTokenizer {
  private texts: string[] | undefined;

  private constructor(private readonly tokenizer: Tokenizer) {}

  static async fromFile(path: string): Promise<TextTokenizer> {
    const json = JSON.parse(await readFile(path, "utf8"));
    return new TextTokenizer(new Tokenizer(json, {}));
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
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
