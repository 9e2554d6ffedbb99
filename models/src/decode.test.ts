/** Block-wise decoding (decode.ts) of the shipped model: events, usage, the policies, resume, infilling. */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DecodeEvent } from "./events.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "./index.ts";
import { TextTokenizer } from "./tokenizer.ts";

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
