import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DecodeEvent } from "./events.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "./index.ts";
import type { Manifest } from "./manifest.ts";
import { type Pick, tokenPicker } from "./sampling.ts";
import { visibleText } from "./text.ts";
import { TextTokenizer } from "./tokenizer.ts";
import { commitTokens, logitsChooser, reviseTokens, type Unmasking } from "./unmask.ts";

const VOCAB = 16;
const MASK = 3;
const EOS = 2;
const manifest = {
  architecture: { vocab_size: VOCAB },
  special_tokens: { pad: 0, bos: 1, eos: EOS, mask: MASK },
} as unknown as Manifest;
const greedy = tokenPicker(new Uint8Array(VOCAB));
const commitConfidentTokens = (
  block: number[],
  logits: Float32Array,
  m: Manifest,
  pick: Pick,
  threshold: number,
  firstBan?: Uint8Array,
) => commitTokens(block, logitsChooser(logits, VOCAB, pick, firstBan), m, { kind: "threshold", threshold });
/** commitTokens over logits, greedily. */
const commit = (block: number[], logits: Float32Array, unmasking: Unmasking, stepsTaken: number) =>
  commitTokens(block, logitsChooser(logits, VOCAB, greedy), manifest, unmasking, stepsTaken);

/** Logits whose softmax puts `probability` on `token` at each row (rest spread evenly). */
function logitsFor(rows: { token: number; probability: number }[]): Float32Array {
  const out = new Float32Array(rows.length * VOCAB);
  rows.forEach(({ token, probability }, r) => {
    const rest = (1 - probability) / (VOCAB - 1);
    for (let id = 0; id < VOCAB; id++) out[r * VOCAB + id] = Math.log(id === token ? probability : rest);
  });
  return out;
}

describe("commitConfidentTokens", () => {
  it("commits every masked position at or above the threshold in one step", () => {
    const block = [MASK, MASK, MASK, 7];
    const logits = logitsFor([
      { token: 5, probability: 0.95 },
      { token: 6, probability: 0.5 },
      { token: 8, probability: 0.91 },
      { token: 9, probability: 0.99 },
    ]);
    expect(commitConfidentTokens(block, logits, manifest, greedy, 0.9)).toBe(2);
    expect(block).toEqual([5, MASK, 8, 7]); // an already committed token is never revised
  });

  it("commits exactly one position per step at threshold 1, however certain the model is", () => {
    const block = [MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 1 },
      { token: 6, probability: 1 },
    ]);
    expect(commitConfidentTokens(block, logits, manifest, greedy, 1)).toBe(1);
  });

  it("commits the single most confident position when none reaches the threshold", () => {
    const block = [MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 0.3 },
      { token: 6, probability: 0.6 },
    ]);
    expect(commitConfidentTokens(block, logits, manifest, greedy, 0.9)).toBe(1);
    expect(block).toEqual([MASK, 6]);
  });

  it("applies the first-token ban (token healing) at position 0 only", () => {
    const block = [MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 0.95 },
      { token: 5, probability: 0.95 },
    ]);
    const firstBan = new Uint8Array(VOCAB).fill(1);
    firstBan[6] = 0; // position 0 may only be token 6
    commitConfidentTokens(block, logits, manifest, greedy, 0.01, firstBan);
    expect(block).toEqual([6, 5]);
  });

  it("never commits a banned control token", () => {
    const banned = new Uint8Array(VOCAB);
    banned[MASK] = 1;
    const block = [MASK];
    commitConfidentTokens(
      block,
      logitsFor([{ token: MASK, probability: 0.99 }]),
      manifest,
      tokenPicker(banned),
      0.9,
    );
    expect(block[0]).not.toBe(MASK);
  });

  it("settles everything after a committed end token", () => {
    const block = [MASK, MASK, MASK, MASK];
    const logits = logitsFor([
      { token: 5, probability: 0.2 },
      { token: EOS, probability: 0.99 },
      { token: 6, probability: 0.2 },
      { token: 7, probability: 0.2 },
    ]);
    expect(commitConfidentTokens(block, logits, manifest, greedy, 0.9)).toBe(3);
    expect(block).toEqual([MASK, EOS, EOS, EOS]);
  });
});

describe("the other unmasking policies and edit rounds", () => {
  const rows = [
    { token: 5, probability: 0.3 },
    { token: 6, probability: 0.97 },
    { token: 7, probability: 0.6 },
    { token: 8, probability: 0.99 },
  ];

  it("spreads a block over a fixed number of steps, most confident first", () => {
    const block = [MASK, MASK, MASK, MASK];
    const steps = { kind: "steps", steps: 3 } as const;
    expect(commit(block, logitsFor(rows), steps, 0)).toBe(2); // ⌈4 / 3⌉
    expect(block).toEqual([MASK, 6, MASK, 8]);
    expect(commit(block, logitsFor(rows), steps, 1)).toBe(1); // ⌈2 / 2⌉
    expect(block).toEqual([MASK, 6, 7, 8]);
    expect(commit(block, logitsFor(rows), steps, 2)).toBe(1);
    expect(block).not.toContain(MASK);
  });

  it("commits the least uncertain positions while their summed entropy stays within the bound", () => {
    const entropyOf = (p: number) => -(p * Math.log(p)) - (1 - p) * Math.log((1 - p) / (VOCAB - 1));
    const bound = entropyOf(0.99) + entropyOf(0.97) + 1e-6;
    const block = [MASK, MASK, MASK, MASK];
    expect(commit(block, logitsFor(rows), { kind: "entropy", bound }, 0)).toBe(2);
    expect(block).toEqual([MASK, 6, MASK, 8]);
    const none = [MASK, MASK];
    expect(commit(none, logitsFor(rows.slice(0, 2)), { kind: "entropy", bound: 0 }, 0)).toBe(1);
  });

  it("revises only the visible tokens the model confidently disagrees with", () => {
    const block = [5, 9, 7, EOS];
    const logits = logitsFor([
      { token: 5, probability: 0.99 }, // agrees
      { token: 6, probability: 0.95 }, // disagrees, sure: revised
      { token: 8, probability: 0.5 }, // disagrees, unsure: kept
      { token: 9, probability: 0.99 }, // after the end token: left alone
    ]);
    expect(reviseTokens(block, logitsChooser(logits, VOCAB, greedy), manifest, 0.9)).toEqual([
      { position: 1, from: 9, to: 6 },
    ]);
    expect(block).toEqual([5, 6, 7, EOS]);
  });
});

describe("decoding the shipped model", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
  });
  afterAll(() => model.close());

  async function collect(options: Parameters<Model["generate"]>[0]): Promise<DecodeEvent[]> {
    const events: DecodeEvent[] = [];
    for await (const event of model.generate(options)) events.push(event);
    return events;
  }

  it("streams start, blocks in order, then done with honest usage", async () => {
    const events = await collect({ prompt: "def add(a, b):\n", maxTokens: 20, blockSize: 8 });
    expect(events[0]).toMatchObject({ type: "start", block_size: 8 });
    const blocks = events.filter((e) => e.type === "block");
    expect(blocks.map((b) => b.index)).toEqual(blocks.map((_, i) => i));
    const done = events.at(-1);
    if (done?.type !== "done") throw new Error("last event is not done");
    const tokens = blocks.reduce((n, b) => n + b.tokens, 0);
    expect(done.usage.completion_tokens).toBe(tokens);
    expect(tokens).toBeLessThanOrEqual(20);
    if (done.finish_reason === "length") expect(tokens).toBe(20);
    // Prefill and cache updates ride along with denoising steps: every forward is a step.
    const steps = blocks.reduce((n, b) => n + b.steps, 0);
    expect(done.usage.forward_passes).toBe(steps);
  });

  it("takes one step per token at threshold 1, and the same text as any run with the same settings", async () => {
    const options = { prompt: "import os\n", maxTokens: 12, blockSize: 4, threshold: 1, emitSteps: true };
    const first = await collect(options);
    const steps = first.filter((e) => e.type === "step");
    const done = first.at(-1);
    if (done?.type !== "done") throw new Error("last event is not done");
    // One token per step; only a step that commits an end token also settles what follows it.
    expect(steps.slice(0, -1).every((s) => s.committed === 1)).toBe(true);
    // Each step shows the block as it stands: one more position filled in than the step before.
    for (const step of steps) {
      if (step.type !== "step") continue;
      expect(step.state).toHaveLength(4);
      expect(step.state.filter((t) => t === null)).toHaveLength(step.remaining);
    }
    expect(steps.length).toBeGreaterThanOrEqual(done.usage.completion_tokens);
    const text = (events: DecodeEvent[]) => events.map((e) => (e.type === "block" ? e.text : "")).join("");
    expect(text(await collect(options))).toBe(text(first));
  });

  it("ends before the first stop sequence, also when it spans blocks", async () => {
    const text = (events: DecodeEvent[]) => events.map((e) => (e.type === "block" ? e.text : "")).join("");
    const options = { prompt: "def main():\n", maxTokens: 48, blockSize: 4 };
    const full = text(await collect(options));
    expect(full.length).toBeGreaterThan(12);
    const forwards = (events: DecodeEvent[]) =>
      (events.at(-1) as Extract<DecodeEvent, { type: "done" }>).usage;
    const unstopped = forwards(await collect(options));
    for (const at of [3, 9]) {
      const stop = full.slice(at, at + 4);
      const events = await collect({ ...options, stop: [stop, "\u0000never"] });
      expect(text(events)).toBe(full.slice(0, full.indexOf(stop)));
      expect(events.at(-1)).toMatchObject({ type: "done", finish_reason: "stop" });
      // Checked after every step: no work, and no usage, past the block where the stop appears.
      expect(forwards(events).forward_passes).toBeLessThanOrEqual(unstopped.forward_passes);
      expect(forwards(events).completion_tokens).toBeLessThan(unstopped.completion_tokens);
    }
  });

  it("stops between steps when cancelled", async () => {
    const cancel = new AbortController();
    const events: DecodeEvent[] = [];
    for await (const event of model.generate({
      prompt: "x = ",
      maxTokens: 64,
      threshold: 1,
      signal: cancel.signal,
    })) {
      events.push(event);
      if (event.type === "start") cancel.abort();
    }
    expect(events.at(-1)).toMatchObject({ type: "done", finish_reason: "cancelled" });
    expect(events.some((e) => e.type === "block")).toBe(false);
  });

  const blockEvents = (events: DecodeEvent[]) =>
    events.filter((e): e is Extract<DecodeEvent, { type: "block" }> => e.type === "block");
  const doneOf = (events: DecodeEvent[]) => events.at(-1) as Extract<DecodeEvent, { type: "done" }>;

  it.each([
    ["greedy", undefined],
    ["sampled", { temperature: 0.8, seed: 7 }],
  ])("resumes from a committed prefix exactly where an uninterrupted run goes (%s)", async (_, sampling) => {
    const options = { prompt: "def parse(line):\n", maxTokens: 40, blockSize: 8, sampling };
    const whole = blockEvents(await collect(options));
    expect(whole.length).toBeGreaterThan(3);
    const committed = whole.slice(0, 2).flatMap((b) => b.ids);
    const resumed = await collect({ ...options, committed });
    expect(blockEvents(resumed).map((b) => b.text)).toEqual(whole.slice(2).map((b) => b.text));
    expect(blockEvents(resumed)[0]?.index).toBe(2);
    expect(doneOf(resumed).usage.completion_tokens).toBe(whole.slice(2).reduce((n, b) => n + b.tokens, 0));
  });

  it("spends exactly the fixed number of steps on a block that does not end early", async () => {
    const events = await collect({ prompt: "import os\n", maxTokens: 24, blockSize: 8, steps: 2 });
    const blocks = blockEvents(events);
    expect(blocks[0]?.steps).toBe(2);
    expect(blocks.every((b) => b.steps <= 2)).toBe(true);
    expect(doneOf(events).usage.forward_passes).toBe(blocks.reduce((n, b) => n + b.steps, 0));
  });

  it("commits more per step as the entropy bound grows", async () => {
    const forwards = async (entropyBound: number) =>
      doneOf(await collect({ prompt: "x = [", maxTokens: 32, blockSize: 16, entropyBound })).usage
        .forward_passes;
    expect(await forwards(50)).toBeLessThan(await forwards(0));
  });

  it("runs edit rounds before a block is final, as edit events, each a forward", async () => {
    const options = { prompt: "def parse(line):\n", maxTokens: 16, blockSize: 16, threshold: 0.05 };
    const plain = await collect(options);
    const edited = await collect({ ...options, editRounds: 2, editThreshold: 0.1 });
    const edits = edited.filter((e) => e.type === "edit");
    expect(edits.length).toBeGreaterThan(0);
    for (const edit of edits) {
      expect(edit).toMatchObject({ block: 0 });
      for (const token of edit.type === "edit" ? edit.edits : []) expect(token.to).not.toBe(token.from);
    }
    // Rounds run until nothing changes or the budget is spent: one or two forwards more.
    const extra = doneOf(edited).usage.forward_passes - doneOf(plain).usage.forward_passes;
    expect(extra).toBeGreaterThanOrEqual(1);
    expect(extra).toBeLessThanOrEqual(2);
    expect(doneOf(edited).usage.forward_passes).toBe(blockEvents(edited).reduce((n, b) => n + b.steps, 0));
  });

  it("refuses a request that overflows the context", async () => {
    await expect(collect({ prompt: "x", maxTokens: 5000 })).rejects.toThrow(/exceeds the context/);
    const long = "y = 1\n".repeat(200); // past the 512-token context
    await expect(collect({ prompt: "x", suffix: long, maxTokens: 100 })).rejects.toThrow(/and suffix/);
  });

  it("infills: the suffix is context and counts as prompt tokens (the markers do not)", async () => {
    const prompt = "def area(r):\n";
    const suffix = "    return 3.14 * r * r\n";
    const tokenizer = await TextTokenizer.fromFile(join(SHIPPED_MODEL_DIR, "tokenizer.json"));
    const plain = await collect({ prompt, maxTokens: 16 });
    const infill = await collect({ prompt, suffix, maxTokens: 16 });
    const promptTokens = (events: DecodeEvent[]) =>
      (events[0] as Extract<DecodeEvent, { type: "start" }>).prompt_tokens;
    expect(promptTokens(infill) - promptTokens(plain)).toBe(tokenizer.encode(suffix).length);
    expect(infill.at(-1)).toMatchObject({ type: "done", usage: { prompt_tokens: promptTokens(infill) } });
  });
});

describe("sampling", () => {
  const row = new Float32Array([0, 1, 2, 3, 2.5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const none = new Uint8Array(VOCAB);

  it("is the argmax at temperature 0 and inside a tiny nucleus", () => {
    expect(tokenPicker(none)(row).token).toBe(3);
    const tiny = tokenPicker(none, { temperature: 1, topP: 1e-9, seed: 1 });
    for (let i = 0; i < 20; i++) expect(tiny(row).token).toBe(3);
  });

  it("repeats itself for a seed and explores across draws", () => {
    const draws = (seed: number) => {
      const pick = tokenPicker(none, { temperature: 2, seed });
      return Array.from({ length: 50 }, () => pick(row).token);
    };
    expect(draws(7)).toEqual(draws(7));
    expect(new Set(draws(7)).size).toBeGreaterThan(3);
  });

  it("draws only inside the nucleus, never a banned id", () => {
    const banned = new Uint8Array(VOCAB);
    banned[4] = 1; // the second most likely token
    const pick = tokenPicker(banned, { temperature: 1, topP: 0.5, seed: 5 });
    // Without id 4 the most likely are 3 (≈0.47) and 2 (≈0.17): the nucleus of 0.5 is {3, 2}.
    const drawn = new Set(Array.from({ length: 500 }, () => pick(row).token));
    expect([...drawn].sort()).toEqual([2, 3]);
  });

  it("reports the model's own probability as confidence, whatever the temperature", () => {
    const greedyChoice = tokenPicker(none)(row);
    for (const temperature of [0.05, 1, 1.9]) {
      const pick = tokenPicker(none, { temperature, topP: 1e-9, seed: 2 });
      expect(pick(row)).toMatchObject({ token: 3, confidence: expect.closeTo(greedyChoice.confidence, 9) });
    }
  });

  it("draws in proportion to the tempered probabilities", () => {
    const pick = tokenPicker(none, { temperature: 1, topP: 1, seed: 3 });
    const counts = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const { token } = pick(row);
      counts.set(token, (counts.get(token) ?? 0) + 1);
    }
    const weights = Array.from(row, Math.exp);
    const total = weights.reduce((a, b) => a + b, 0);
    for (const token of [1, 2, 3, 4]) {
      expect((counts.get(token) ?? 0) / 4000).toBeCloseTo((weights[token] as number) / total, 1);
    }
  });
});

describe("visibleText", () => {
  it("holds back a tail that may start a stop sequence, and releases it when it does not", () => {
    expect(visibleText("x = a", ["ab"], false, false)).toEqual({ text: "x = ", final: null });
    expect(visibleText("x = ac", ["ab"], false, false)).toEqual({ text: "x = ac", final: null });
    expect(visibleText("x = ab c", ["ab"], false, false)).toEqual({ text: "x = ", final: "stop" });
  });

  it("cuts at the earliest of several stops, even in the last block", () => {
    expect(visibleText("a;b\nc", ["\n", ";"], false, true)).toEqual({ text: "a", final: "stop" });
  });

  it("holds back an unfinished multi-byte character until its last byte", () => {
    expect(visibleText("s = '\uFFFD", [], false, false)).toEqual({ text: "s = '", final: null });
    expect(visibleText("s = '\uFFFD", [], true, false)).toEqual({ text: "s = '\uFFFD", final: "stop" });
  });

  it("ends with length at the token limit and with stop at an end token", () => {
    expect(visibleText("abc", [], false, true)).toEqual({ text: "abc", final: "length" });
    expect(visibleText("abc", [], true, false)).toEqual({ text: "abc", final: "stop" });
  });
});
