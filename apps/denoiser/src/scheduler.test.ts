import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DecodeEvent,
  type DecodeOptions,
  type ForwardInput,
  loadModel,
  type Model,
  onlyResult,
  SHIPPED_MODEL_DIR,
  WorkCancelledError,
} from "../../../models/src/index.ts";
import { type ForwardStats, QueueFullError, Scheduler } from "./scheduler.ts";

const PROMPTS = ["def add(a, b):\n", "import os\n\n\nclass Config:\n    ", "x = [", "for i in range(10):\n"];

async function collect(events: AsyncIterable<DecodeEvent>): Promise<DecodeEvent[]> {
  const out: DecodeEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}
const textOf = (events: DecodeEvent[]) => events.map((e) => (e.type === "block" ? e.text : "")).join("");
const doneOf = (events: DecodeEvent[]) => events.at(-1) as Extract<DecodeEvent, { type: "done" }>;

describe("the batching scheduler", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
  });
  afterAll(() => model.close());

  function scheduler(options: Partial<ConstructorParameters<typeof Scheduler>[0]> = {}) {
    const forwards: ForwardStats[] = [];
    const s = new Scheduler({
      forward: (inputs, options) => model.session.forwardBatch(inputs, options),
      onForward: (stats) => forwards.push(stats),
      ...options,
    });
    return { s, forwards };
  }

  it("runs concurrent generations in shared forwards, each as it would run alone", async () => {
    const options = (prompt: string): DecodeOptions => ({
      prompt,
      maxTokens: 24,
      blockSize: 8,
      threshold: 0.7,
    });
    const alone = await Promise.all(PROMPTS.map(async (p) => collect(model.generate(options(p)))));
    const { s, forwards } = scheduler({ maxBatch: 4 });
    const together = await Promise.all(PROMPTS.map((p) => collect(s.submit(model.start(options(p))))));
    expect(together.map(textOf)).toEqual(alone.map(textOf));
    expect(together.map((e) => doneOf(e).usage)).toEqual(alone.map((e) => doneOf(e).usage));
    // Shared: fewer forward calls than the generations' forwards added up, several rows per call.
    const separate = alone.reduce((n, e) => n + doneOf(e).usage.forward_passes, 0);
    expect(forwards.length).toBeLessThan(separate);
    expect(Math.max(...forwards.map((f) => f.sequences))).toBe(4);
    expect(forwards.reduce((n, f) => n + f.sequences, 0)).toBe(separate);
  });

  it("keeps each forward within its padded-token budget", async () => {
    const { s, forwards } = scheduler({ maxBatch: 4, maxBatchTokens: 40 });
    const runs = PROMPTS.map((p) =>
      collect(s.submit(model.start({ prompt: p, maxTokens: 16, blockSize: 8 }))),
    );
    const results = await Promise.all(runs);
    expect(results.every((e) => doneOf(e).finish_reason !== "cancelled")).toBe(true);
    for (const f of forwards) if (f.sequences > 1) expect(f.paddedTokens).toBeLessThanOrEqual(40);
    expect(forwards.some((f) => f.sequences > 1)).toBe(true);
  });

  it("counts a forward's token slots as the session splits it, not as one padded run", async () => {
    // One generation brings a long prompt's prefill along with its first block; the others a
    // short prompt each. Padded as one run, a forward of all four is 4 × the long input; the
    // session runs the prefill apart (kv.test.ts: planRuns), so the four fit a budget that one
    // padded run would not.
    const long = "def add(a, b):\n    return a + b\n\n\n".repeat(12);
    const run = async (slots: boolean) => {
      const { s, forwards } = scheduler({
        maxBatch: 4,
        maxBatchTokens: 300,
        ...(slots ? { slots: (inputs: readonly ForwardInput[]) => model.session.slots(inputs) } : {}),
      });
      const options = { maxTokens: 8, blockSize: 8, threshold: 1 };
      const prompts = [...PROMPTS.slice(0, 3), long];
      await Promise.all(prompts.map((prompt) => collect(s.submit(model.start({ ...options, prompt })))));
      return forwards;
    };
    const counted = await run(true);
    const prefill = counted.find((f) => f.tokens > 150);
    expect(prefill?.sequences).toBe(4);
    expect(prefill?.paddedTokens).toBeLessThanOrEqual(300);
    // Counted as one padded run, even one sequence beside the prefill makes more than 300: it goes alone.
    const padded = await run(false);
    expect(padded.find((f) => f.tokens > 150)?.sequences).toBe(1);
  });

  it("lets no generation starve: with room for one row per forward, generations take turns", async () => {
    const { s, forwards } = scheduler({ maxBatch: 4, maxBatchTokens: 8 });
    const finishedAt: number[] = [];
    const run = async () => {
      for await (const event of s.submit(
        model.start({ prompt: "x = ", maxTokens: 8, blockSize: 8, threshold: 1 }),
      )) {
        if (event.type === "done") finishedAt.push(forwards.length);
      }
    };
    await Promise.all([run(), run()]);
    expect(forwards.every((f) => f.sequences === 1)).toBe(true);
    // Taking turns, both finish near the end (first come, first served would finish one at 8 of 16).
    expect(Math.min(...finishedAt)).toBeGreaterThanOrEqual(forwards.length - 2);
  });

  it("queues beyond its slots, refuses beyond its queue, and frees a slot at once on cancel", async () => {
    const { s } = scheduler({ maxBatch: 1, maxQueue: 1 });
    const cancel = new AbortController();
    const long = { prompt: "x", maxTokens: 200, blockSize: 4, threshold: 1 };
    const first = collect(s.submit(model.start(long), cancel.signal));
    const second = collect(s.submit(model.start({ ...long, maxTokens: 8 })));
    expect(s.load).toEqual({ active: 1, queued: 1 });
    expect(() => s.submit(model.start(long))).toThrow(QueueFullError);
    cancel.abort();
    const [cancelled, next] = await Promise.all([first, second]);
    expect(doneOf(cancelled).finish_reason).toBe("cancelled");
    expect(doneOf(cancelled).usage.completion_tokens).toBeLessThan(200);
    expect(doneOf(next).finish_reason).not.toBe("cancelled");
    expect(s.load).toEqual({ active: 0, queued: 0 });
  });

  it("fails only the generations of a forward that throws, and keeps serving", async () => {
    let failNext = false;
    const flaky = (inputs: readonly ForwardInput[], options: { stats: boolean }) => {
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error("test double: the device fell over"));
      }
      return model.session.forwardBatch(inputs, options);
    };
    const { s } = scheduler({ forward: flaky });
    failNext = true;
    await expect(collect(s.submit(model.start({ prompt: "x", maxTokens: 4 })))).rejects.toThrow(/fell over/);
    const after = await collect(s.submit(model.start({ prompt: "x", maxTokens: 4 })));
    expect(doneOf(after).type).toBe("done");
  });

  it("batches edits and verifications with generations, each giving what it gives alone", async () => {
    const code =
      "def area(r):\n    pi = 3.14159\n    return pi * r * r\n\n\ndef perimeter(r):\n    return 2 * pi * r\n";
    const region = { start: code.indexOf("3.14159"), end: code.indexOf("3.14159") + 7 };
    const rewrite = { code, regions: [region], maxTokens: 8, blockSize: 4 };
    const repair = {
      code: "for i in range(10):\n    print(i))\nfor j in range(3):\n    print(j * i]\n",
      threshold: 0.05,
      rounds: 2,
      blockSize: 4,
    };
    const generation = { prompt: PROMPTS[0] as string, maxTokens: 16, blockSize: 8 };
    const alone = {
      rewrite: await model.rewrite(rewrite),
      repair: await model.repair(repair),
      verify: await model.verify({ code }),
      generation: await collect(model.generate(generation)),
    };
    const { s, forwards } = scheduler({ maxBatch: 8 });
    const [rewritten, repaired, verified, generated] = await Promise.all([
      onlyResult(s.submit(model.startRewrite(rewrite))),
      onlyResult(s.submit(model.startRepair(repair))),
      onlyResult(s.submit(await model.startVerification({ code }))),
      collect(s.submit(model.start(generation))),
    ]);
    expect(rewritten).toEqual(alone.rewrite);
    expect(repaired).toEqual(alone.repair);
    expect(repaired.edits.length).toBeGreaterThan(0); // the repair did revise: its cache rows mattered
    expect(verified).toEqual({
      ...alone.verify,
      score: expect.any(Number),
      bits_per_token: expect.any(Number),
    });
    expect(verified.score).toBeCloseTo(alone.verify.score, 5);
    expect(textOf(generated)).toBe(textOf(alone.generation));
    // They shared forwards: fewer calls than their forwards added up, rows of several in one call.
    const separate =
      alone.rewrite.forward_passes +
      alone.repair.forward_passes +
      doneOf(alone.generation).usage.forward_passes;
    expect(forwards.length).toBeLessThan(separate + alone.verify.forward_passes);
    expect(Math.max(...forwards.map((f) => f.sequences))).toBeGreaterThan(3);
  });

  it("runs a step bigger than its limits in a forward of its own, and work that needs no forward at once", async () => {
    const code = "x = 1\n".repeat(40); // a verification scores it in more half-blocks than maxBatch
    const { s, forwards } = scheduler({ maxBatch: 2 });
    const [verified, generated] = await Promise.all([
      onlyResult(s.submit(await model.startVerification({ code }))),
      collect(s.submit(model.start({ prompt: "x = ", maxTokens: 8, blockSize: 4 }))),
    ]);
    expect(verified.score).toBeCloseTo((await model.verify({ code })).score, 5);
    expect(doneOf(generated).finish_reason).not.toBe("cancelled");
    const scoring = forwards.filter((f) => f.sequences > 2);
    expect(scoring).toHaveLength(1); // all half-blocks in one forward, alone
    const before = forwards.length;
    const empty = await onlyResult(s.submit(await model.startVerification({ code: "" })));
    expect(empty).toMatchObject({ tokens: 0, forward_passes: 0 });
    expect(await onlyResult(s.submit(model.startRepair({ code: "" })))).toMatchObject({
      code: "",
      edits: [],
      forward_passes: 0,
    });
    expect(forwards.length).toBe(before);
  });

  it("cancels an edit whose signal aborts: its forwards stop and its slot is free", async () => {
    const { s, forwards } = scheduler();
    const cancel = new AbortController();
    const code = "def area(r):\n    return 3.14159 * r * r\n\n\n".repeat(12);
    // Block size 1 and nothing revised: one forward per token of the code.
    const result = onlyResult(
      s.submit(model.startRepair({ code, threshold: 1, blockSize: 1 }), cancel.signal),
    );
    await expect.poll(() => forwards.length).toBeGreaterThan(5);
    cancel.abort();
    await expect(result).rejects.toThrow(WorkCancelledError);
    const stopped = forwards.length;
    expect(s.load).toEqual({ active: 0, queued: 0 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(forwards.length).toBe(stopped);
    expect(stopped).toBeLessThan((await model.verify({ code })).tokens);
  });
});
