/**
 * Quality of completions, for the benchmarks: MBPP prompts (evaluate.py's format), whether the
 * function written so far parses, and the completion's bits per token under the autoregressive
 * twin (generative perplexity, as diffusion LM papers report it). One row of the speed/quality
 * dial = one decoding setting run greedily over the prompts.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { DecodeEvent, DecodeOptions, Model } from "../models/src/index.ts";
import { KvCache } from "../models/src/session.ts";
import { checkPythonSyntax } from "../models/src/syntax.ts";
import type { TextTokenizer } from "../models/src/tokenizer.ts";

export interface MbppTask {
  text: string;
  code: string;
  test_list: string[];
}

/** The first `count` MBPP tasks (held out: the training corpus was decontaminated against MBPP). */
export function mbppTasks(count: number, offset = 0): MbppTask[] {
  return readFileSync(fileURLToPath(new URL("../../shared/eval/mbpp/mbpp.jsonl", import.meta.url)), "utf8")
    .trim()
    .split("\n")
    .slice(offset, offset + count)
    .map((line) => JSON.parse(line) as MbppTask);
}

/** evaluate.py's MBPP prompt: the task and its first assert as a docstring, then `def name(`. */
export const entryPoint = (task: MbppTask) => /def\s+(\w+)\s*\(/.exec(task.code)?.[1] ?? "solution";
export const mbppPrompt = (task: MbppTask) =>
  `"""${task.text.trim()}\n${task.test_list[0]?.trim()}\n"""\ndef ${entryPoint(task)}(`;
/**
 * The function the completion writes, ending before the first new top-level line (evaluate.py's
 * line rule); when it ran out of tokens, without its unfinished last line, so that "parses"
 * means "every complete line so far is valid Python".
 */
export function candidate(task: MbppTask, completion: string, cutOff: boolean): string {
  let lines = `def ${entryPoint(task)}(${completion}`.split("\n");
  const end = lines.findIndex((line, i) => i > 0 && /^[^\s#)\]}]/.test(line));
  if (end !== -1) lines = lines.slice(0, end);
  else if (cutOff && lines.length > 1) lines = lines.slice(0, -1);
  return `${lines.join("\n").trimEnd()}\n`;
}

/**
 * Quality as a stronger judge sees it: bits per token of the completion under the autoregressive
 * twin (generative perplexity, as diffusion LM papers report it), given the prompt.
 */
export async function twinBits(
  twin: Model,
  tokenizer: TextTokenizer,
  prompt: string,
  completion: string,
): Promise<{ bits: number; tokens: number }> {
  const before = tokenizer.encode(prompt).length - 1; // the prompt's last token may merge with the completion
  const ids = [twin.manifest.special_tokens.bos, ...tokenizer.encode(prompt + completion)];
  const { logits } = await twin.session.forward(ids, [], KvCache.empty(twin.manifest));
  const vocab = twin.manifest.architecture.vocab_size;
  let nats = 0;
  for (let position = before + 1; position < ids.length; position++) {
    const row = logits.subarray((position - 1) * vocab, position * vocab);
    let max = Number.NEGATIVE_INFINITY;
    for (const x of row) max = Math.max(max, x);
    let total = 0;
    for (const x of row) total += Math.exp(x - max);
    nats -= (row[ids[position] as number] as number) - max - Math.log(total);
  }
  return { bits: nats / Math.LN2, tokens: ids.length - before - 1 };
}

/**
 * Degeneration, a check on the two measures above (both can be fooled by repetition: a loop can
 * parse, and the twin finds it predictable): the share of a completion's token 4-grams that
 * repeat an earlier one.
 */
export function repeatedShare(ids: readonly number[]): number {
  const seen = new Set<string>();
  let repeats = 0;
  for (let i = 0; i + 4 <= ids.length; i++) {
    const gram = ids.slice(i, i + 4).join(",");
    if (seen.has(gram)) repeats++;
    seen.add(gram);
  }
  return ids.length >= 4 ? repeats / (ids.length - 3) : 0;
}

export interface DialContext {
  tasks: MbppTask[];
  twin: Model;
  tokenizer: TextTokenizer;
  maxTokens: number;
}

export async function dialRow(
  name: string,
  which: Model,
  settings: Partial<DecodeOptions>,
  context: DialContext,
) {
  const { tasks, twin, tokenizer, maxTokens } = context;
  let tokens = 0;
  let forwards = 0;
  let valid = 0;
  let wall = 0;
  let bits = 0;
  let judged = 0;
  let repeated = 0;
  for (const task of tasks) {
    const t0 = performance.now();
    let text = "";
    let done: Extract<DecodeEvent, { type: "done" }> | undefined;
    for await (const event of which.generate({
      prompt: mbppPrompt(task),
      maxTokens,
      ...settings,
    })) {
      if (event.type === "block") text += event.text;
      if (event.type === "done") done = event;
    }
    wall += performance.now() - t0;
    tokens += done?.usage.completion_tokens ?? 0;
    forwards += done?.usage.forward_passes ?? 0;
    if ((await checkPythonSyntax(candidate(task, text, done?.finish_reason === "length"))).ok) valid++;
    const judge = await twinBits(twin, tokenizer, mbppPrompt(task), text);
    bits += judge.bits;
    judged += judge.tokens;
    repeated += repeatedShare(tokenizer.encode(text));
  }
  return {
    name,
    settings,
    tokens_per_forward: tokens / forwards,
    tokens_per_s: tokens / (wall / 1000),
    syntax_valid: valid / tasks.length,
    twin_bits_per_token: bits / judged,
    repeated_4grams: repeated / tasks.length,
    mean_tokens: tokens / tasks.length,
  };
}
