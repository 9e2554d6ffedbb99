import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { KvCache, type PastBuffer, PastBuffers } from "./kv.ts";
import type { Manifest } from "./manifest.ts";
import { planRuns, type RunShape } from "./session.ts";

const [layers, heads, headDim] = [2, 3, 4];
const manifest = {
  architecture: { n_layers: layers, kv_heads: heads, head_dim: headDim, max_positions: 64 },
} as Manifest;

/** A forward's `[layers, batch, heads, time, head_dim]` keys (values: the keys negated), every float its own. */
function forwardKeys(batch: number, time: number, seed: number): [ort.Tensor, ort.Tensor] {
  const size = layers * batch * heads * time * headDim;
  const key = Float32Array.from({ length: size }, (_, i) => seed + i / size);
  const value = key.map((x) => -x);
  const dims = [layers, batch, heads, time, headDim];
  return [new ort.Tensor("float32", key, dims), new ort.Tensor("float32", value, dims)];
}

/** Position `t` of (layer, head) as the reference: the tokens appended, in order, read from the forwards. */
type Appended = { key: ort.Tensor; count: number; row: number }[];
function expected(appended: Appended, layer: number, head: number, t: number): Float32Array {
  let at = t;
  for (const { key, count, row } of appended) {
    if (at < count) {
      const [, batch = 1, , time = 0] = key.dims;
      const from = (((layer * batch + row) * heads + head) * time + at) * headDim;
      return (key.data as Float32Array).subarray(from, from + headDim);
    }
    at -= count;
  }
  throw new Error("past the end");
}

function expectHolds(cache: KvCache, appended: Appended) {
  const key = cache.key.data as Float32Array;
  const value = cache.value.data as Float32Array;
  expect(cache.key.dims).toEqual([layers, 1, heads, cache.length, headDim]);
  for (let layer = 0; layer < layers; layer++)
    for (let head = 0; head < heads; head++)
      for (let t = 0; t < cache.length; t++) {
        const at = ((layer * heads + head) * cache.length + t) * headDim;
        const want = expected(appended, layer, head, t);
        expect([...key.subarray(at, at + headDim)]).toEqual([...want]);
        expect([...value.subarray(at, at + headDim)]).toEqual([...want].map((x) => -x));
      }
}

/** A cache grown by `count` positions of a fresh forward. */
function grow(cache: KvCache, count: number, seed: number): KvCache {
  const [key, value] = forwardKeys(1, count, seed);
  return cache.append(key, value);
}

/** Each row of a batched past holds its cache's positions, as the cache alone holds them. */
function expectPast(buffer: PastBuffer, caches: readonly KvCache[], past: number) {
  const key = buffer.key.data as Float32Array;
  const value = buffer.value.data as Float32Array;
  expect(buffer.key.dims).toEqual([layers, caches.length, heads, past, headDim]);
  caches.forEach((cache, row) => {
    const alone = [cache.key.data as Float32Array, cache.value.data as Float32Array];
    for (let layer = 0; layer < layers; layer++)
      for (let head = 0; head < heads; head++) {
        const from = (layer * heads + head) * cache.length * headDim;
        const at = ((layer * caches.length + row) * heads + head) * past * headDim;
        for (const [batched, own] of [key, value].map((x, i) => [x, alone[i]] as const)) {
          expect([...batched.subarray(at, at + cache.length * headDim)]).toEqual([
            ...(own as Float32Array).subarray(from, from + cache.length * headDim),
          ]);
        }
      }
  });
}

describe("the KV cache", () => {
  it("appends block after block in place, each cache keeping its own length", () => {
    let cache = KvCache.empty(manifest);
    const appended: Appended = [];
    const caches: [KvCache, number][] = [];
    for (const [i, count] of [5, 3, 8, 1, 16, 2].entries()) {
      const [key, value] = forwardKeys(3, count + 2, i);
      cache = cache.append(key, value, count, i % 3);
      appended.push({ key, count, row: i % 3 });
      caches.push([cache, appended.length]);
    }
    expect(cache.length).toBe(35);
    for (const [c, n] of caches) expectHolds(c, appended.slice(0, n)); // older caches are intact
    expect(caches.every(([c]) => c.storage === cache.storage)).toBe(true); // one storage, grown in place
  });

  it("gives a cache appended to twice two independent continuations", () => {
    const [k0, v0] = forwardKeys(1, 6, 0);
    const base = KvCache.empty(manifest).append(k0, v0);
    const [k1, v1] = forwardKeys(1, 4, 1);
    const [k2, v2] = forwardKeys(2, 4, 2);
    const one = base.append(k1, v1, 4);
    const two = base.append(k2, v2, 3, 1); // branches: must not overwrite `one`
    expectHolds(one, [
      { key: k0, count: 6, row: 0 },
      { key: k1, count: 4, row: 0 },
    ]);
    expectHolds(two, [
      { key: k0, count: 6, row: 0 },
      { key: k2, count: 3, row: 1 },
    ]);
    const prefix = one.prefix(4);
    expect(prefix.storage).toBe(one.storage); // no copy
    expectHolds(prefix, [{ key: k0, count: 4, row: 0 }]);
    expectHolds(prefix.append(k1, v1, 2), [
      { key: k0, count: 4, row: 0 },
      { key: k1, count: 2, row: 0 },
    ]);
    expectHolds(one, [
      { key: k0, count: 6, row: 0 },
      { key: k1, count: 4, row: 0 },
    ]);
    expect(() => base.append(k1, v1, 5)).toThrow(RangeError);
    expect(() => base.prefix(7)).toThrow(RangeError);
  });

  it("builds a batched past that holds each row's cache, copying only what is new into a reused buffer", () => {
    const pasts = new PastBuffers({ layers, heads, headDim });
    let caches = [grow(KvCache.empty(manifest), 7, 0), grow(KvCache.empty(manifest), 3, 1)];
    const check = (past: number) => {
      const buffer = pasts.acquire(caches, past);
      expectPast(buffer, caches, past);
      pasts.release(buffer);
      return buffer;
    };
    const first = check(7);
    caches = [caches[0] as KvCache, grow(caches[1] as KvCache, 4, 2)]; // row 1 grows to 7
    expect(check(7)).toBe(first); // the same buffer, its row 1 topped up
    caches = [caches[1] as KvCache, caches[0] as KvCache]; // rows swap: both copied afresh
    expect(check(7)).toBe(first);
    caches = [(caches[0] as KvCache).prefix(2), caches[1] as KvCache];
    expect(check(7)).toBe(first);
    caches = [grow(caches[1] as KvCache, 2, 3), grow(KvCache.empty(manifest), 1, 4)];
    const nine = check(9); // the longest grew: a new shape
    caches = [caches[1] as KvCache];
    expect([first.memory, nine.memory]).toContain(check(1).memory); // laid out in memory it had
    const busy = pasts.acquire(caches, 7);
    expect(pasts.acquire(caches, 7)).not.toBe(busy); // in use by a forward: another buffer
  });

  it("keeps batched pasts only within its byte budget, a buffer over it used once and dropped", () => {
    // A past position of one row: key and value floats of every (layer, head).
    const perPosition = 2 * layers * heads * headDim * 4;
    const budgetBytes = 2 * 10 * perPosition; // room for a batch of 2 at a past of 10
    const pasts = new PastBuffers({ layers, heads, headDim }, { budgetBytes });
    let caches = [grow(KvCache.empty(manifest), 7, 0), grow(KvCache.empty(manifest), 5, 1)];
    const step = (past: number) => {
      const buffer = pasts.acquire(caches, past);
      expectPast(buffer, caches, past);
      pasts.release(buffer);
      expect(pasts.bytes).toBeLessThanOrEqual(budgetBytes);
      return buffer;
    };
    const seven = step(7);
    expect([pasts.kept, pasts.bytes]).toEqual([1, 2 * 7 * perPosition]);
    caches = [grow(caches[0] as KvCache, 2, 2), caches[1] as KvCache];
    const nine = step(9); // with the past of 7 it would be 32 positions' worth: the older goes
    expect([pasts.kept, pasts.bytes]).toEqual([1, 2 * 9 * perPosition]);
    caches = [grow(caches[0] as KvCache, 3, 3), grow(caches[1] as KvCache, 4, 4)];
    const twelve = step(12); // over the budget on its own: used, and the past of 9 still kept
    expect([pasts.kept, pasts.bytes]).toEqual([1, 2 * 9 * perPosition]);
    expect(step(12)).not.toBe(twelve); // not kept: a fresh one, whole and exact again
    expect([twelve.memory, nine.memory]).not.toContain(seven.memory);
    caches = [caches[1] as KvCache, (caches[0] as KvCache).prefix(9)];
    expect(step(9)).toBe(nine); // the kept one, its rows copied afresh

    const none = new PastBuffers({ layers, heads, headDim }, { budgetBytes: 0 });
    const once = none.acquire(caches, 12);
    none.release(once);
    const again = none.acquire(caches, 12);
    expectPast(again, caches, 12);
    expect(again).not.toBe(once);
    expect([none.kept, none.bytes]).toEqual([0, 0]);
    expect(() => new PastBuffers({ layers, heads, headDim }, { budgetBytes: -1 })).toThrow(RangeError);
  });
});

describe("planning a batch's graph runs", () => {
  const blocks = (times: number[], past = 0): RunShape[] => times.map((time) => ({ time, past }));
  const plan = (shapes: RunShape[], run: number, pastPosition = 0) => planRuns(shapes, { run, pastPosition });

  it("keeps one graph run unless splitting saves more padding than a run costs", () => {
    expect(plan(blocks([32, 32, 64, 32]), Number.POSITIVE_INFINITY)).toEqual([[0, 1, 2, 3]]);
    // Together: 4 × 64 = 256 slots; apart: 3 × 32 + 64 plus one run more.
    expect(plan(blocks([32, 32, 64, 32]), 32)).toEqual([[0, 1, 3], [2]]);
    expect(plan(blocks([32, 32, 64, 32]), 200)).toEqual([[0, 1, 2, 3]]);
    expect(plan(blocks([30, 32, 32, 130, 64]), 16)).toEqual([[0, 1, 2], [4], [3]]);
    expect(plan([], 32)).toEqual([[]]);
  });

  it("runs caches of very different lengths apart when padding the short ones costs more than a run", () => {
    // Six blocks of 32 against 40 cached positions, two against 900: padded together, the six
    // attend 860 positions more, 6 × 32 × 860 × 0.0011 = 182 slots, more than a run's 128.
    const shapes = [
      ...blocks([32, 32, 32], 40),
      ...blocks([32], 900),
      ...blocks([32, 32, 32], 40),
      ...blocks([32], 900),
    ];
    expect(plan(shapes, 128, 0.0011)).toEqual([
      [0, 1, 2, 4, 5, 6],
      [3, 7],
    ]);
    // At 300 cached positions padding the three costs 27 slots: one run.
    const near = [...blocks([32, 32, 32], 40), ...blocks([32], 300)];
    expect(plan(near, 128, 0.0011)).toEqual([[0, 1, 2, 3]]);
    // Cache lengths are not padding to pay for when they cost nothing.
    expect(plan(shapes, 128, 0)).toEqual([[0, 1, 2, 3, 4, 5, 6, 7]]);
  });
});
