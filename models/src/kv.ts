/**
 * The KV cache of committed tokens, and the batched past a forward feeds the graph.
 *
 * A sequence's keys/values live in a `KvStorage`: per (layer, kv head) a run of positions with
 * room to grow (doubling, up to the model's positions), so committing a block copies that
 * block only, not the whole cache. A `KvCache` is a length over a storage: caches are immutable
 * values, and appending returns a new one. Positions a storage holds are never rewritten:
 * appending to the newest cache of a storage writes after them in place; appending to an older
 * (shorter) one, whose later positions another cache owns, copies it into a storage of its own
 * first. A prefix of a cache is the same storage, shorter (no copy).
 *
 * The graph takes the past of a batch as `[layers, batch, kv_heads, past, head_dim]`. A
 * `PastBuffers` keeps the last few such tensors and what each row holds (which storage, how
 * many of its positions), so a step copies only the positions that are new since a buffer's
 * last use: nothing on most steps, the committed block after a commit. When the longest cache
 * grows (the tensor's shape changes), a buffer's memory is laid out afresh rather than
 * allocated anew. Positions after a row's cache are masked out in the forward, so whatever
 * they hold (zeros, or an earlier occupant's finite keys/values) contributes exact zeros: the
 * forward computes what it would on a fresh copy. A batch of one takes its cache's own tensors
 * (`KvCache.key`), copied once per cache, so single sequences that alternate in one session
 * (generations run alone side by side, a group of one split off a batch) copy nothing per step.
 *
 * Kept buffers are bounded in bytes as well as in number (`PAST_BUFFER_BYTES`): a buffer is
 * `layers × batch × kv_heads × past × head_dim` floats twice over, which for sprout-tiny is tens
 * of MB but for an imported 1.7B model (28 layers, 8 kv heads, head_dim 128) batched 8 at a 4k
 * context is 7.5 GB, on top of the same keys/values in the sequences' own storages. Buffers are
 * kept, most recently used first, only while their memory adds up to the budget; one over it
 * on its own is fed to its forward and then dropped, so such a step copies its whole past into
 * a fresh array, which is what a batch costs without reuse, and its result is the same.
 */
import * as ort from "onnxruntime-node";
import type { Manifest } from "./manifest.ts";

/** One sequence's keys and values: per (layer, kv head) `capacity` positions of `headDim` floats. */
class KvStorage {
  key: Float32Array;
  value: Float32Array;
  /** Positions written (by the newest cache over this storage); they never change. */
  written = 0;

  constructor(
    /** layers × kv heads */
    readonly runs: number,
    readonly headDim: number,
    /** The most positions a storage ever needs (the model's positions): growth stops there. */
    private readonly limit: number,
    public capacity: number,
  ) {
    this.key = new Float32Array(runs * capacity * headDim);
    this.value = new Float32Array(runs * capacity * headDim);
  }

  /** Room for `positions`: the capacity doubles (never beyond the limit unless asked for more). */
  reserve(positions: number): void {
    if (positions <= this.capacity) return;
    const capacity = Math.max(positions, Math.min(2 * this.capacity, this.limit));
    const key = new Float32Array(this.runs * capacity * this.headDim);
    const value = new Float32Array(key.length);
    for (let run = 0; run < this.runs; run++) {
      const from = run * this.capacity * this.headDim;
      const to = run * capacity * this.headDim;
      key.set(this.key.subarray(from, from + this.written * this.headDim), to);
      value.set(this.value.subarray(from, from + this.written * this.headDim), to);
    }
    this.key = key;
    this.value = value;
    this.capacity = capacity;
  }

  /** A storage of its own holding the first `length` positions of this one. */
  fork(length: number, room: number): KvStorage {
    const copy = new KvStorage(this.runs, this.headDim, this.limit, Math.max(length, room));
    copy.written = length;
    for (let run = 0; run < this.runs; run++) {
      const from = run * this.capacity * this.headDim;
      const to = run * copy.capacity * this.headDim;
      copy.key.set(this.key.subarray(from, from + length * this.headDim), to);
      copy.value.set(this.value.subarray(from, from + length * this.headDim), to);
    }
    return copy;
  }

  /**
   * Copies positions [from, to) into row `row` of `[layers, batch, heads, past, head_dim]` arrays
   * (runs = layers × heads, in that order, as here).
   */
  copyInto(
    key: Float32Array,
    value: Float32Array,
    heads: number,
    batch: number,
    row: number,
    past: number,
    from: number,
    to: number,
  ): void {
    if (to <= from) return;
    const d = this.headDim;
    for (let run = 0; run < this.runs; run++) {
      const layer = Math.floor(run / heads);
      const head = run % heads;
      const source = (run * this.capacity + from) * d;
      const target = (((layer * batch + row) * heads + head) * past + from) * d;
      key.set(this.key.subarray(source, source + (to - from) * d), target);
      value.set(this.value.subarray(source, source + (to - from) * d), target);
    }
  }
}

/** Keys and values of a sequence's committed tokens: the first `length` positions of a storage. */
export class KvCache {
  /** The cache as the past of a batch of one, once asked for. */
  private alone: { key: ort.Tensor; value: ort.Tensor } | undefined;

  private constructor(
    /** @internal read by PastBuffers */
    readonly storage: KvStorage,
    readonly length: number,
    private readonly heads: number,
  ) {}

  static empty(manifest: Manifest): KvCache {
    const { n_layers, kv_heads, head_dim, max_positions } = manifest.architecture;
    return new KvCache(new KvStorage(n_layers * kv_heads, head_dim, max_positions, 0), 0, kv_heads);
  }

  /**
   * A new cache: this one's tokens followed by the first `count` positions of row `batchRow` of
   * a forward's `[layers, batch, heads, time, head_dim]` keys/values.
   */
  append(addedKey: ort.Tensor, addedValue: ort.Tensor, count = addedKey.dims[3] ?? 0, batchRow = 0): KvCache {
    const [, batch = 1, heads = 0, time = 0, headDim = 0] = addedKey.dims;
    if (count < 0 || count > time) {
      throw new RangeError(`cannot append ${count} positions from ${time}`);
    }
    if (heads !== this.heads || headDim !== this.storage.headDim) {
      throw new RangeError(`keys of ${heads} heads × ${headDim} do not fit this cache`);
    }
    const length = this.length + count;
    // The newest cache of its storage writes on in place; an older one copies what it owns first.
    const storage =
      this.storage.written === this.length ? this.storage : this.storage.fork(this.length, length);
    storage.reserve(length);
    const keys = addedKey.data as Float32Array;
    const values = addedValue.data as Float32Array;
    for (let run = 0; run < storage.runs; run++) {
      const layer = Math.floor(run / heads);
      const head = run % heads;
      const source = ((layer * batch + batchRow) * heads + head) * time * headDim;
      const target = (run * storage.capacity + this.length) * headDim;
      storage.key.set(keys.subarray(source, source + count * headDim), target);
      storage.value.set(values.subarray(source, source + count * headDim), target);
    }
    storage.written = length;
    return new KvCache(storage, length, this.heads);
  }

  /** The first `length` positions, as a cache of their own (the same storage: no copy). */
  prefix(length: number): KvCache {
    if (!(Number.isInteger(length) && length >= 0 && length <= this.length)) {
      throw new RangeError(`no prefix of ${length} positions in a cache of ${this.length}`);
    }
    return length === this.length ? this : new KvCache(this.storage, length, this.heads);
  }

  /**
   * The keys as one tensor, `[layers, 1, kv_heads, length, head_dim]`: the past of a batch of
   * one. Copied out of the storage once per cache (a cache changes only when a block is
   * committed), then kept with it.
   */
  get key(): ort.Tensor {
    return this.tensors().key;
  }

  /** The values, as `key`. */
  get value(): ort.Tensor {
    return this.tensors().value;
  }

  private tensors(): { key: ort.Tensor; value: ort.Tensor } {
    if (this.alone) return this.alone;
    const { runs, headDim } = this.storage;
    const key = new Float32Array(runs * this.length * headDim);
    const value = new Float32Array(key.length);
    this.storage.copyInto(key, value, this.heads, 1, 0, this.length, 0, this.length);
    const dims = [runs / this.heads, 1, this.heads, this.length, headDim];
    this.alone = { key: new ort.Tensor("float32", key, dims), value: new ort.Tensor("float32", value, dims) };
    return this.alone;
  }
}

/** One batched past tensor pair and what each of its rows holds. */
export interface PastBuffer {
  batch: number;
  past: number;
  /** The tensors fed to the graph: views of the first `batch × past` positions' worth of `memory`. */
  key: ort.Tensor;
  value: ort.Tensor;
  memory: { key: Float32Array; value: Float32Array };
  /** Per row: the storage whose first `length` positions it holds. */
  held: { storage: KvStorage | undefined; length: number }[];
  /** Fed to a forward that has not finished: not to be written. */
  busy: boolean;
}

/**
 * The default budget of kept batched pasts, key and value memory together: 256 MiB. It keeps
 * sprout-tiny's reuse whole: at most 60 MiB a buffer (a batch of 8 at its 512-token context),
 * three of them fit. An imported 1.7B model goes over it beyond about 150 positions at batch 8
 * (1.75 MiB a position), where three kept pasts would grow to 22 GB at 4k. A step over the budget
 * pays for a fresh array and a whole copy: measured here, 0.2 s for 256 MiB (mostly page faults)
 * against 0.02 s copied into kept memory; small next to such a model's forward itself (8 blocks
 * of 32 through 1.7B parameters are about 0.9 TFLOP: seconds on a CPU).
 */
export const PAST_BUFFER_BYTES = 256 * 2 ** 20;

export interface PastBuffersOptions {
  /** Buffers kept: a batch split into graph runs of similar length uses one per run. */
  keep?: number;
  /** Bytes of kept buffers' memory (key and value arrays together): `PAST_BUFFER_BYTES` by default. */
  budgetBytes?: number;
}

/** Recent batched pasts, reused so that a step copies only what changed (see the top of this file). */
export class PastBuffers {
  /** Most recently used first; their memory adds up to `budgetBytes` at most. */
  private buffers: PastBuffer[] = [];
  private readonly keep: number;
  readonly budgetBytes: number;

  constructor(
    private readonly shape: { layers: number; heads: number; headDim: number },
    { keep = 3, budgetBytes = PAST_BUFFER_BYTES }: PastBuffersOptions = {},
  ) {
    if (!(Number.isInteger(keep) && keep >= 0)) throw new RangeError(`keep must be a count, not ${keep}`);
    if (!(budgetBytes >= 0)) throw new RangeError(`budgetBytes must be a size, not ${budgetBytes}`);
    this.keep = keep;
    this.budgetBytes = budgetBytes;
  }

  /** Buffers kept for reuse. */
  get kept(): number {
    return this.buffers.length;
  }

  /** Bytes of the kept buffers' memory (key and value): within `budgetBytes`. */
  get bytes(): number {
    return this.buffers.reduce((sum, b) => sum + memoryBytes(b), 0);
  }

  /**
   * The caches side by side as `[layers, batch, heads, past, head_dim]`; `past` is at least the
   * longest. Marked busy until `release` (a concurrent forward gets another buffer).
   */
  acquire(caches: readonly KvCache[], past: number): PastBuffer {
    const { layers, heads, headDim } = this.shape;
    const batch = caches.length;
    const size = layers * batch * heads * past * headDim;
    const free = this.buffers.filter((b) => !b.busy);
    // Of the buffers this shape, the one whose rows already hold most of these caches; else the
    // memory of the least recently used one that is big enough (a fresh array costs page
    // faults), laid out afresh; else a new one.
    const matching = (b: PastBuffer) => caches.filter((c, row) => b.held[row]?.storage === c.storage).length;
    let buffer = free
      .filter((b) => b.batch === batch && b.past === past)
      .sort((a, b) => matching(b) - matching(a))[0];
    if (!buffer) {
      const memory = free.findLast((b) => b.memory.key.length >= size)?.memory ?? {
        key: new Float32Array(size),
        value: new Float32Array(size),
      };
      const dims = [layers, batch, heads, past, headDim];
      buffer = {
        batch,
        past,
        key: new ort.Tensor("float32", memory.key.subarray(0, size), dims),
        value: new ort.Tensor("float32", memory.value.subarray(0, size), dims),
        memory,
        held: Array.from({ length: batch }, () => ({ storage: undefined, length: 0 })),
        busy: false,
      };
      // Whose memory it took is gone: a buffer's rows would no longer be what it says it holds.
      this.buffers = this.buffers.filter((b) => b.memory !== memory);
    }
    const key = buffer.key.data as Float32Array;
    const value = buffer.value.data as Float32Array;
    caches.forEach((cache, row) => {
      const held = buffer.held[row] as PastBuffer["held"][number];
      if (held.storage === cache.storage) {
        // Positions a storage holds never change: only those beyond what the row has are new.
        cache.storage.copyInto(key, value, heads, batch, row, past, held.length, cache.length);
        held.length = Math.max(held.length, cache.length);
      } else {
        cache.storage.copyInto(key, value, heads, batch, row, past, 0, cache.length);
        buffer.held[row] = { storage: cache.storage, length: cache.length };
      }
    });
    buffer.busy = true;
    this.buffers = this.withinBudget([buffer, ...this.buffers.filter((b) => b !== buffer)]);
    return buffer;
  }

  /**
   * The most recent buffers, in order, that fit in `keep` and `budgetBytes`: one that would go
   * over is dropped (the just acquired included, once its forward is done), and older, smaller
   * ones may still fit after it.
   */
  private withinBudget(recentFirst: readonly PastBuffer[]): PastBuffer[] {
    const kept: PastBuffer[] = [];
    let bytes = 0;
    for (const buffer of recentFirst) {
      if (kept.length === this.keep) break;
      if (bytes + memoryBytes(buffer) > this.budgetBytes) continue;
      kept.push(buffer);
      bytes += memoryBytes(buffer);
    }
    return kept;
  }

  release(buffer: PastBuffer): void {
    buffer.busy = false;
  }
}

/** What a buffer's memory holds: its key and value arrays (which may be longer than its tensors). */
function memoryBytes(buffer: PastBuffer): number {
  return buffer.memory.key.byteLength + buffer.memory.value.byteLength;
}
