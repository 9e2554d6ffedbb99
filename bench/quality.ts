/**
 * Quality of completions, for the benchmarks: MBPP prompts and the function a completion writes,
 * both from models/python/mbpp.py (the one owner of those rules: the test split, task ids 11-510,
 * read from SPROUT_EVAL_DIR or ../shared/eval), whether that function parses, and the
 * completion's bits per token under the autoregressive twin (generative perplexity, as diffusion
 * LM papers report it). One row of the speed/quality dial = one decoding setting run greedily
 * over the prompts.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { DecodeEvent, DecodeOptions, Model } from "../models/src/index.ts";
import { KvCache } from "../models/src/session.ts";
import { checkPythonSyntax } from "../models/src/syntax.ts";
import type { TextTokenizer } from "../models/src/tokenizer.ts";
import { venvPython } from "../test/support/python.ts";

const MBPP_PY = fileURLToPath(new URL("../models/python/mbpp.py", import.meta.url));

/** One MBPP task as mbpp.py prompts it. */
export interface MbppTask {
  task_id: number;
  entry_point: string;
  prompt: string;
}

/** A completion to judge: `cut_off` when the tokens ran out (its unfinished last line goes). */
export interface Completion {
  task_id: number;
  completion: string;
  cut_off: boolean;
}

function mbppPy(args: string[], input?: string): unknown {
  return JSON.parse(execFileSync(venvPython(), [MBPP_PY, ...args], { encoding: "utf8", input }));
}

/** The first `count` tasks of MBPP's test split (held out: the training corpus was decontaminated against MBPP). */
export function mbppTasks(count: number): MbppTask[] {
  return mbppPy(["prompts", "--limit", String(count)]) as MbppTask[];
}

/** The function each completion writes (mbpp.py's candidate rule), in order. */
export function candidates(completions: Completion[]): string[] {
  if (completions.length === 0) return [];
  const out = mbppPy(["candidates"], JSON.stringify(completions)) as { candidate: string }[];
  return out.map((row) => row.candidate);
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
  const ids = [twin.manifest.special_tokens.bos as number, ...tokenizer.encode(prompt + completion)];
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
  const completions: Completion[] = [];
  for (const task of tasks) {
    const t0 = performance.now();
    let text = "";
    let done: Extract<DecodeEvent, { type: "done" }> | undefined;
    for await (const event of which.generate({ prompt: task.prompt, maxTokens, ...settings })) {
      if (event.type === "block") text += event.text;
      if (event.type === "done") done = event;
    }
    wall += performance.now() - t0;
    tokens += done?.usage.completion_tokens ?? 0;
    forwards += done?.usage.forward_passes ?? 0;
    completions.push({ task_id: task.task_id, completion: text, cut_off: done?.finish_reason === "length" });
    const judge = await twinBits(twin, tokenizer, task.prompt, text);
    bits += judge.bits;
    judged += judge.tokens;
    repeated += repeatedShare(tokenizer.encode(text));
  }
  for (const source of candidates(completions)) if ((await checkPythonSyntax(source)).ok) valid++;
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
