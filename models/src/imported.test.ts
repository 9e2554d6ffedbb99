/**
 * Imported checkpoints (models/python/import_checkpoint.py) in the TypeScript runtime: the graph
 * against its golden file, batched decoding against alone, resume, and the work only Sprout's own
 * models can do. That the tokens equal each family's reference sampler is checked in Python
 * (models/python/tests/test_runtime_matches_reference.py, through models/scripts/decode-ids.ts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTinyImportedModels, TINY_IMPORTED } from "../../test/support/tiny-imported.ts";
import type { DecodeEvent } from "./events.ts";
import type { Generation } from "./generation.ts";
import { loadModel, type Model } from "./index.ts";
import { DecodeInputError } from "./prompt.ts";
import { DenoiserSession, type ForwardInput, KvCache, newStepProfile } from "./session.ts";

let dirs: Record<string, string>;
const models: Record<string, Model> = {};

beforeAll(async () => {
  dirs = buildTinyImportedModels();
  for (const name of TINY_IMPORTED)
    models[name] = await loadModel(dirs[name] as string, { intraOpNumThreads: 1 });
}, 180_000);

afterAll(async () => {
  for (const model of Object.values(models)) await model.close();
});

/** A generation's block ids, its finish reason and forwards, driven alone. */
async function alone(model: Model, prompt: string, maxTokens: number, extra = {}) {
  const events: DecodeEvent[] = [];
  for await (const event of model.generate({ prompt, maxTokens, ...extra })) events.push(event);
  return summary(events);
}

function summary(events: readonly DecodeEvent[]) {
  const ids = events.flatMap((e) => (e.type === "block" ? e.ids : []));
  const done = events.find((e) => e.type === "done");
  return { ids, finish: done?.type === "done" ? done.finish_reason : undefined };
}

/** Several generations driven in shared forwards, as the denoiser node's scheduler does. */
async function together(model: Model, generations: Generation[]) {
  const events = generations.map(() => [] as DecodeEvent[]);
  while (generations.some((g) => !g.done)) {
    const live = generations.filter((g) => !g.done);
    const rows = live.map((g) => g.next());
    const results = await model.session.forwardBatch(rows.flat(), { stats: true });
    let at = 0;
    live.forEach((g, i) => {
      const count = rows[i]?.length ?? 0;
      events[generations.indexOf(g)]?.push(...g.take(results.slice(at, at + count)));
      at += count;
    });
  }
  return events.map(summary);
}

const prompt = (ids: number[]) => ids.map((id) => `t${id}`).join(" ");
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function maxDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return a.reduce((worst, x, i) => Math.max(worst, Math.abs(x - (b[i] as number))), 0);
}

describe.each(TINY_IMPORTED)("the imported model %s", (name) => {
  it("computes its golden logits: whole blocks prefilled block-causally, then a block of masks", async () => {
    const model = models[name] as Model;
    const golden = JSON.parse(readFileSync(join(dirs[name] as string, "golden.json"), "utf8")) as {
      prompt_ids: number[];
      block_ids: number[];
      argmax: number[];
      logits_head: number[][];
    };
    const { manifest, session } = model;
    const block = manifest.block_sizes[0] as number;
    const prefill = await session.forwardBatch([
      {
        context: golden.prompt_ids,
        block: [],
        cache: KvCache.empty(manifest),
        contextBlocks: { size: block, origin: 0 },
      },
    ]);
    const first = prefill[0];
    if (!first) throw new Error("no result");
    const cache = KvCache.empty(manifest).append(first.newKey, first.newValue);
    const [step] = await session.forwardBatch([{ context: [], block: golden.block_ids, cache }]);
    const vocab = manifest.architecture.vocab_size;
    expect(step?.logits.length).toBe(golden.block_ids.length * vocab); // only the rows asked for
    golden.logits_head.forEach((expected, row) => {
      expected.forEach((value, i) => {
        expect(step?.logits[row * vocab + i]).toBeCloseTo(value, 4);
      });
      const logits = step?.logits.subarray(row * vocab, (row + 1) * vocab) ?? new Float32Array();
      expect(logits.indexOf(Math.max(...logits))).toBe(golden.argmax[row]);
    });
  });

  it("computes exactly the rows each sequence asks (flat logit_positions), batched as alone", async () => {
    const { manifest } = models[name] as Model;
    // One graph run whatever the shapes, so the batch below really shares its head.
    const session = await DenoiserSession.create(join(dirs[name] as string, manifest.graph.file), manifest, {
      intraOpNumThreads: 1,
      forwardCostTokens: Number.POSITIVE_INFINITY,
    });
    expect(session.rowContract).toBe("flat");
    const vocab = manifest.architecture.vocab_size;
    const { mask } = manifest.special_tokens;
    const cacheOf = async (ids: number[]) => {
      // A prefill asking no row: its head computes nothing.
      const profile = newStepProfile();
      const [prefill] = await session.forwardBatch(
        [{ context: ids, block: [], cache: KvCache.empty(manifest), rows: [] }],
        { stats: true, profile },
      );
      if (!prefill?.stats) throw new Error("no prefill came back");
      expect([prefill.logits.length, prefill.stats.topId.length, profile.headRows]).toEqual([0, 0, 0]);
      return KvCache.empty(manifest).append(prefill.newKey, prefill.newValue);
    };
    const block = (n: number) =>
      Array.from({ length: n }, (_, i) => (i % 3 === 0 ? (mask as number) : 30 + i));
    // Very different asks: every row of 16, one row past 3 tokens of context, none, out of order with a repeat.
    const inputs: ForwardInput[] = [
      { context: [], block: block(16), cache: await cacheOf([5, 9, 3, 7, 1, 2, 8]), rows: range(16) },
      { context: [11, 12, 13], block: block(4), cache: await cacheOf([40, 41]), rows: [5] },
      { context: [], block: block(4), cache: await cacheOf([21, 22, 23, 24]), rows: [] },
      { context: [], block: block(8), cache: KvCache.empty(manifest), rows: [7, 0, 7] },
    ];
    const alone = [];
    for (const input of inputs) {
      const profile = newStepProfile();
      const [result] = await session.forwardBatch([input], { stats: true, profile });
      expect(profile.headRows).toBe(input.rows?.length);
      alone.push(result);
    }
    const profile = newStepProfile();
    const batched = await session.forwardBatch(inputs, { stats: true, profile });
    expect(profile.runs).toBe(1);
    expect(profile.headRows).toBe(16 + 1 + 0 + 3); // per-sequence rows would pad to 4 × 16
    for (const [i, input] of inputs.entries()) {
      const [x, y] = [batched[i], alone[i]];
      if (!x?.stats || !y?.stats) throw new Error("no statistics came back");
      const rows = input.rows?.length ?? 0;
      expect([x.logits.length, x.stats.topId.length]).toEqual([rows * vocab, rows]);
      expect([...x.stats.topId]).toEqual([...y.stats.topId]);
      expect(maxDifference(x.stats.topLogprob, y.stats.topLogprob)).toBeLessThan(1e-4);
      expect(maxDifference(x.logits, y.logits)).toBeLessThan(1e-4);
    }
    // A run where no sequence asks a row (commit passes) still writes every token's keys/values.
    const none = await session.forwardBatch(
      inputs.map((input) => ({ ...input, rows: [] })),
      { stats: true },
    );
    expect(none.map((r) => [r.logits.length, r.stats?.topId.length])).toEqual(inputs.map(() => [0, 0]));
    expect(none[0]?.newKey.dims[3]).toBe(16);
    await session.release();
  });

  it("decodes the same batched as alone, prompts of different lengths in one forward", async () => {
    const model = models[name] as Model;
    const prompts = [prompt([5, 9, 3, 7, 1]), prompt([11, 12, 13, 14, 15, 16, 17, 18]), prompt([40, 41, 42])];
    const expected = [];
    for (const p of prompts) expected.push(await alone(model, p, 13));
    const batched = await together(
      model,
      prompts.map((p) => model.start({ prompt: p, maxTokens: 13 })),
    );
    expect(batched).toEqual(expected);
    expect(expected.every((e) => e.ids.length > 0)).toBe(true);
  });

  it("resumes after committed blocks with the rest of the uninterrupted run", async () => {
    const model = models[name] as Model;
    const p = prompt([21, 22, 23, 24, 25]);
    const whole = await alone(model, p, 16);
    const events: DecodeEvent[] = [];
    for await (const event of model.generate({ prompt: p, maxTokens: 16 })) {
      events.push(event);
      if (event.type === "block") break; // the node died after its first block
    }
    const committed = summary(events).ids;
    expect(committed.length).toBeGreaterThan(0);
    const rest = await alone(model, p, 16, { committed });
    expect([...committed, ...rest.ids]).toEqual(whole.ids);
    expect(rest.finish).toBe(whole.finish);
  });

  it("runs edit rounds under its conventions (under a logit shift, a block's first token stays)", async () => {
    const model = models[name] as Model;
    const edited = await alone(model, prompt([5, 9, 3, 7, 1]), 13, { editRounds: 2, editThreshold: 0.5 });
    expect(edited.finish).toMatch(/^(stop|length)$/);
    expect(edited.ids.length).toBeGreaterThan(0);
  });

  it("stops denoising a block once every position max_tokens keeps is committed", async () => {
    const model = models[name] as Model;
    const p = prompt([5, 9, 3, 7, 1, 2, 8]);
    const run = async (maxTokens: number) => {
      const events: DecodeEvent[] = [];
      for await (const event of model.generate({ prompt: p, maxTokens, threshold: 1 })) events.push(event);
      const done = events.find((e) => e.type === "done");
      return { ids: summary(events).ids, forwards: done?.type === "done" ? done.usage.forward_passes : 0 };
    };
    const [short, long] = [await run(2), await run(8)];
    if (model.manifest.decoding.last_block === "full") {
      expect(short.ids).toEqual(long.ids.slice(0, 2)); // the same block, cut
    }
    expect(short.ids.length).toBe(2);
    expect(short.forwards).toBeLessThan(long.forwards);
  });

  it("refuses verification and repair, which need Sprout's conventions, with a clear error", async () => {
    const model = models[name] as Model;
    await expect(model.verify({ code: "t1 t2" })).rejects.toThrow(DecodeInputError);
    await expect(model.repair({ code: "t1 t2" })).rejects.toThrow(/Sprout's decoding conventions/);
    expect(() => model.start({ prompt: "t1", suffix: "t2", maxTokens: 4 })).toThrow(/no infilling tokens/);
    if (model.manifest.decoding.logit_shift === 1) {
      expect(() => model.start({ prompt: "", maxTokens: 4 })).toThrow(/give a prompt/);
    }
  });
});
