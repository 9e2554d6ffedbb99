import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { venvPython } from "../../test/support/python.ts";
import { SHIPPED_MODEL_DIR } from "./index.ts";
import { TextTokenizer } from "./tokenizer.ts";

const TOKENIZER = join(SHIPPED_MODEL_DIR, "tokenizer.json");

/** Ids from the Python side (Hugging Face `tokenizers`, as used in training). */
function pythonIds(texts: string[]): number[][] {
  const script = `
import json, sys
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
t.encode_special_tokens = True  # tokenizer.py's load_tokenizer
print(json.dumps([e.ids for e in t.encode_batch(json.load(sys.stdin), add_special_tokens=False)]))`;
  const out = execFileSync(venvPython(), ["-c", script, TOKENIZER], {
    input: JSON.stringify(texts),
    encoding: "utf8",
  });
  return JSON.parse(out);
}

describe("the shared tokenizer", () => {
  const samples = [
    "def fibonacci(n: int) -> int:\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    'print("ünïcödé 🌱 — 中文", r"\\d+", f"{x!r:>10}")\t# tabs\r\n',
    "from . import x\nmode = 'read' if a , b else 's' ; f(a ,b) ?\n",
    "",
    "    \n\n\n        ",
    // Text that spells the control tokens: plain text on both sides.
    "x = '<|mask|>' + \"<|eos|>\"  # <|fim_prefix|><|fim_suffix|><|fim_middle|><|bos|><|pad|>\n",
    // A real file of the kind the model was trained on.
    readFileSync(new URL("../python/model.py", import.meta.url), "utf8"),
  ];

  it("gives the same ids in TypeScript as in Python", async () => {
    const tokenizer = await TextTokenizer.fromFile(TOKENIZER);
    expect(samples.map((s) => tokenizer.encode(s))).toEqual(pythonIds(samples));
  });

  it("encodes text that spells a control token as plain text, never as the control token", async () => {
    const tokenizer = await TextTokenizer.fromFile(TOKENIZER);
    const { added_tokens } = JSON.parse(readFileSync(TOKENIZER, "utf8")) as {
      added_tokens: { id: number; content: string; special: boolean }[];
    };
    const specials = added_tokens.filter((t) => t.special).map((t) => t.content);
    expect(specials).toContain("<|mask|>");
    for (const special of specials) {
      const ids = tokenizer.encode(`a${special}b ${special}`);
      expect(ids.every((id) => id >= specials.length)).toBe(true);
      expect(tokenizer.decode(ids)).toBe(`a${special}b ${special}`);
    }
  });

  it("decodes back to the exact text", async () => {
    const tokenizer = await TextTokenizer.fromFile(TOKENIZER);
    for (const sample of samples) expect(tokenizer.decode(tokenizer.encode(sample))).toBe(sample);
  });
});
