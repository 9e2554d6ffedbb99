import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SHIPPED_MODEL_DIR } from "./index.ts";
import { loadManifest } from "./manifest.ts";
import { bannedTokenIds } from "./prompt.ts";
import { tokenPicker } from "./sampling.ts";
import { DenoiserSession, KvCache, newStepProfile } from "./session.ts";

/** Written by models/python/export.py from PyTorch: prefill a prompt, then one masked block step. */
const golden = JSON.parse(readFileSync(join(SHIPPED_MODEL_DIR, "golden.json"), "utf8")) as {
  prompt_ids: number[];
  block_ids: number[];
  argmax: number[];
  logits_head: number[][];
};

describe("the ONNX graph under onnxruntime-node", () => {
  async function open() {
    const manifest = await loadManifest(SHIPPED_MODEL_DIR);
    const session = await DenoiserSession.create(join(SHIPPED_MODEL_DIR, manifest.graph.file), manifest);
    return { manifest, session, vocab: manifest.architecture.vocab_size };
  }

  function expectGolden(logits: Float32Array, vocab: number) {
    for (const [row, expected] of golden.logits_head.entries()) {
      for (const [i, value] of expected.entries()) expect(logits[row * vocab + i]).toBeCloseTo(value, 3);
      const rowLogits = logits.subarray(row * vocab, (row + 1) * vocab);
      expect(rowLogits.indexOf(Math.max(...rowLogits))).toBe(golden.argmax[row]);
    }
  }

  it("computes what PyTorch computed: prefill into the cache, then a denoising step", async () => {
    const { manifest, session, vocab } = await open();
    const prefill = await session.forward(golden.prompt_ids, [], KvCache.empty(manifest));
    const cache = KvCache.empty(manifest).append(prefill.newKey, prefill.newValue);
    expect(cache.length).toBe(golden.prompt_ids.length);
    const { logits } = await session.forward([], golden.block_ids, cache);
    expectGolden(logits, vocab);
    await session.release();
  });

  it("gives the same logits and cache when uncached context rides along with a step", async () => {
    const { manifest, session, vocab } = await open();
    const close = (a: Float32Array, b: Float32Array) => {
      expect(a.length).toBe(b.length);
      for (let i = 0; i < a.length; i += 97) expect(a[i]).toBeCloseTo(b[i] as number, 4);
    };
    // A cache that already holds part of the prompt, the rest of it still uncached.
    const [head, tail] = [golden.prompt_ids.slice(0, 3), golden.prompt_ids.slice(3)];
    const first = await session.forward(head, [], KvCache.empty(manifest));
    const cache = KvCache.empty(manifest).append(first.newKey, first.newValue);

    const fused = await session.forward(tail, golden.block_ids, cache);
    expectGolden(fused.logits.subarray(tail.length * vocab), vocab);
    const fusedCache = cache.append(fused.newKey, fused.newValue, tail.length);

    const alone = await session.forward(tail, [], cache);
    const aloneCache = cache.append(alone.newKey, alone.newValue);
    close(fusedCache.key.data as Float32Array, aloneCache.key.data as Float32Array);
    close(fusedCache.value.data as Float32Array, aloneCache.value.data as Float32Array);
    expect(() =>
      cache.append(fused.newKey, fused.newValue, tail.length + golden.block_ids.length + 1),
    ).toThrow(RangeError);
    await session.release();
  });

  it("keeps the cache exact whether context arrives at once or in chunks", async () => {
    const { manifest, session, vocab } = await open();
    const tokens = [1, 400, 401, 402, 403, 404, 405, 406];
    const whole = await session.forward(tokens, [], KvCache.empty(manifest));
    const first = await session.forward(tokens.slice(0, 3), [], KvCache.empty(manifest));
    const cache = KvCache.empty(manifest).append(first.newKey, first.newValue);
    const rest = await session.forward(tokens.slice(3), [], cache);
    const tail = whole.logits.subarray(3 * vocab);
    for (let i = 0; i < tail.length; i += 997) expect(rest.logits[i]).toBeCloseTo(tail[i] as number, 3);
    await session.release();
  });

  it("gives each row what one padded graph run gives it when a batch is split by length", async () => {
    const manifest = await loadManifest(SHIPPED_MODEL_DIR);
    const graph = join(SHIPPED_MODEL_DIR, manifest.graph.file);
    const vocab = manifest.architecture.vocab_size;
    const split = await DenoiserSession.create(graph, manifest, { forwardCostTokens: 0 });
    const together = await DenoiserSession.create(graph, manifest, {
      forwardCostTokens: Number.POSITIVE_INFINITY,
    });
    const prefill = await together.forward(golden.prompt_ids, [], KvCache.empty(manifest));
    const cache = KvCache.empty(manifest).append(prefill.newKey, prefill.newValue);
    const inputs = [
      { context: [], block: golden.block_ids, cache, rows: [1, 2, 3] },
      { context: golden.prompt_ids, block: golden.block_ids, cache: KvCache.empty(manifest) },
      { context: [], block: golden.block_ids.slice(0, 4), cache: cache.prefix(3), rows: [0, 2] },
    ];
    const [a, b] = await Promise.all([
      split.forwardBatch(inputs, { stats: true }),
      together.forwardBatch(inputs, { stats: true }),
    ]);
    for (const [i, input] of inputs.entries()) {
      const rows = input.rows?.length ?? input.context.length + input.block.length;
      const [x, y] = [a[i], b[i]];
      if (!x?.stats || !y?.stats) throw new Error("no statistics came back");
      expect(x.logits.length).toBe(rows * vocab);
      expect(x.stats.topId.length).toBe(rows); // statistics only for the rows asked for
      expect([...x.stats.topId]).toEqual([...y.stats.topId]);
      for (let k = 0; k < x.logits.length; k += 101)
        expect(x.logits[k]).toBeCloseTo(y.logits[k] as number, 4);
    }
    await split.release();
    await together.release();
  });

  it("pads each sequence's head rows to the most any asks on sprout-tiny's per-sequence graph", async () => {
    const { manifest, session, vocab } = await open();
    expect(session.rowContract).toBe("per-sequence");
    const cache = KvCache.empty(manifest);
    const block = golden.block_ids;
    const profile = newStepProfile();
    const results = await session.forwardBatch(
      [
        { context: golden.prompt_ids, block, cache, rows: [0, 1, 2, 3, 4] },
        { context: [], block, cache, rows: [3] },
        { context: [], block, cache, rows: [] },
      ],
      { profile },
    );
    expect(profile.headRows).toBe(3 * 5); // what the flat contract of imported graphs saves
    expect(results.map((r) => r.logits.length)).toEqual([5 * vocab, vocab, 0]);
    await session.release();
  });

  it("gives a batch the same logits whether its past buffers are kept for reuse or dropped", async () => {
    const manifest = await loadManifest(SHIPPED_MODEL_DIR);
    const graph = join(SHIPPED_MODEL_DIR, manifest.graph.file);
    const kept = await DenoiserSession.create(graph, manifest);
    const dropped = await DenoiserSession.create(graph, manifest, { pastBufferBytes: 0 });
    const prefill = await kept.forward(golden.prompt_ids, [], KvCache.empty(manifest));
    const long = KvCache.empty(manifest).append(prefill.newKey, prefill.newValue);
    const short = long.prefix(3);
    // Steps whose rows change occupants: a kept buffer's rows still hold the earlier caches'
    // keys/values past each row's own, which the mask must make count for nothing.
    const steps = [
      [long, short],
      [short, long],
      [short, short.prefix(1)],
      [long, long.prefix(2)],
    ];
    for (const caches of steps) {
      const inputs = caches.map((cache) => ({ context: [], block: golden.block_ids, cache }));
      const [a, b] = [await kept.forwardBatch(inputs), await dropped.forwardBatch(inputs)];
      for (const [i, x] of a.entries()) expect(x.logits).toEqual(b[i]?.logits);
    }
    await kept.release();
    await dropped.release();
  });

  it("computes in onnxruntime the greedy choice, confidence and entropy JavaScript would", async () => {
    const { manifest, session, vocab } = await open();
    const [result] = await session.forwardBatch(
      [{ context: golden.prompt_ids, block: golden.block_ids, cache: KvCache.empty(manifest) }],
      {
        stats: true,
      },
    );
    const stats = result?.stats;
    if (!result || !stats) throw new Error("no statistics came back");
    const greedy = tokenPicker(bannedTokenIds(manifest));
    const rows = golden.prompt_ids.length + golden.block_ids.length;
    expect(stats.topId.length).toBe(rows);
    for (let row = 0; row < rows; row++) {
      const choice = greedy(result.logits.subarray(row * vocab, (row + 1) * vocab));
      expect(Number(stats.topId[row])).toBe(choice.token);
      expect(Math.exp(stats.topLogprob[row] as number)).toBeCloseTo(choice.confidence, 4); // float32 softmax in two orders
      expect(stats.entropy[row]).toBeCloseTo(choice.entropy, 3);
    }
    await session.release();
  });
});
