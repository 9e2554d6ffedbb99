/**
 * One forward pass of the exported denoiser graph, and the KV cache of committed context.
 *
 * The graph (see models/python/model.py) takes the new tokens, their absolute positions, the
 * cached keys/values of everything committed before them and an attention mask, and returns
 * logits for the new tokens plus their own keys/values. One forward here carries two kinds of
 * new tokens: committed context that is not cached yet (causal: it sees only what precedes it,
 * so its keys/values are final and get appended to the cache), followed by the block being
 * denoised (it sees all context and the whole block; its keys/values are thrown away, since its
 * tokens may still change). Prefill and committing a block thus ride along with the next block's
 * first denoising step instead of costing forwards of their own.
 */
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import type { Manifest } from "./manifest.ts";
import { bannedTokenIds } from "./prompt.ts";

/** Per-row argmax, log-probability and entropy (written by models/python/pick_graph.py). */
const PICK_GRAPH = fileURLToPath(new URL("./pick.onnx", import.meta.url));

/** Keys and values of committed tokens, `[layers, 1, kv_heads, length, head_dim]` each. */
export class KvCache {
  private constructor(
    readonly key: ort.Tensor,
    readonly value: ort.Tensor,
    readonly length: number,
  ) {}

  static empty(manifest: Manifest): KvCache {
    const { n_layers, kv_heads, head_dim } = manifest.architecture;
    const dims = [n_layers, 1, kv_heads, 0, head_dim];
    return new KvCache(
      new ort.Tensor("float32", new Float32Array(0), dims),
      new ort.Tensor("float32", new Float32Array(0), dims),
      0,
    );
  }

  /**
   * A new cache: this one's tokens followed by the first `count` positions of row `batchRow` of
   * a forward's `[layers, batch, heads, time, head_dim]` keys/values.
   */
  append(addedKey: ort.Tensor, addedValue: ort.Tensor, count = addedKey.dims[3] ?? 0, batchRow = 0): KvCache {
    if (count < 0 || count > (addedKey.dims[3] ?? 0)) {
      throw new RangeError(`cannot append ${count} positions from ${addedKey.dims[3]}`);
    }
    return new KvCache(
      appendOnLengthAxis(this.key, addedKey, count, batchRow),
      appendOnLengthAxis(this.value, addedValue, count, batchRow),
      this.length + count,
    );
  }
}

/** The first `length` positions of a cache, as a cache of its own (a copy). */
export function cachePrefix(cache: KvCache, length: number, manifest: Manifest): KvCache {
  if (length === cache.length) return cache;
  return KvCache.empty(manifest).append(cache.key, cache.value, length);
}

/** `a` (batch 1) followed on the length axis by `take` positions of batch row `row` of `b`. */
function appendOnLengthAxis(a: ort.Tensor, b: ort.Tensor, take: number, row: number): ort.Tensor {
  const [layers = 0, , heads = 0, lengthA = 0, headDim = 0] = a.dims;
  const [, batchB = 1, , lengthB = 0] = b.dims;
  const dataA = a.data as Float32Array;
  const dataB = b.data as Float32Array;
  const out = new Float32Array(layers * heads * (lengthA + take) * headDim);
  const strideA = lengthA * headDim;
  const strideB = lengthB * headDim;
  for (let layer = 0; layer < layers; layer++) {
    for (let head = 0; head < heads; head++) {
      const r = layer * heads + head;
      const fromB = ((layer * batchB + row) * heads + head) * strideB;
      const base = r * (strideA + take * headDim);
      out.set(dataA.subarray(r * strideA, (r + 1) * strideA), base);
      out.set(dataB.subarray(fromB, fromB + take * headDim), base + strideA);
    }
  }
  return new ort.Tensor("float32", out, [layers, 1, heads, lengthA + take, headDim]);
}

/** What one sequence puts into a forward pass. */
export interface ForwardInput {
  /** Committed tokens not cached yet; their keys/values are appended to the cache. */
  context: readonly number[];
  /** Tokens being denoised: they see all context and each other. */
  block: readonly number[];
  cache: KvCache;
  /**
   * How context attends: causally (absent), or block-causally: a context token sees every
   * context token of its own block and earlier ones, blocks of `size` starting at absolute
   * positions ≡ `origin` (mod size). The cache always ends on a block boundary then.
   */
  contextBlocks?: { size: number; origin: number };
  /** Indices into context + block of the rows whose logits are wanted (absent: every row). */
  rows?: readonly number[];
}

/** Per row of logits, computed by onnxruntime (models/src/pick.onnx) over the allowed ids. */
export interface RowStats {
  topId: BigInt64Array;
  topLogprob: Float32Array;
  entropy: Float32Array;
}

export interface ForwardResult {
  /** `[rows, vocab]`, row-major: this sequence's asked-for rows (all of context + block if none were). */
  logits: Float32Array;
  /** The same rows' greedy statistics, when the forward was asked for them. */
  stats?: RowStats;
  /** `[layers, batch, kv_heads, time, head_dim]` for the whole batch; this sequence is `batchRow`. */
  newKey: ort.Tensor;
  newValue: ort.Tensor;
  batchRow: number;
}

/**
 * Milliseconds a batched forward spent in each of its parts, added up over the forwards it is
 * passed to (bench/step-profile.ts).
 */
export interface StepProfile {
  /** Token ids, positions, attention mask and logit rows. */
  inputs: number;
  /** The caches side by side as the graph's past keys/values. */
  past: number;
  /** The denoiser graph. */
  graph: number;
  /** The greedy statistics (pick.onnx). */
  pick: number;
  /** Each sequence's rows of logits and statistics. */
  results: number;
}

export interface SessionOptions {
  /** onnxruntime execution providers in order of preference, e.g. `["cuda", "cpu"]`. */
  executionProviders?: string[];
  intraOpNumThreads?: number;
}

export class DenoiserSession {
  /** 0 for ids the model may produce, -inf for banned ones (prompt.ts's bannedTokenIds). */
  private readonly bias: ort.Tensor;
  private lastPast: { caches: KvCache[]; key: ort.Tensor; value: ort.Tensor } | undefined;
  /** Whether the graph computes logits only for the rows it is given (`logit_rows`). */
  private readonly selectsRows: boolean;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly pick: ort.InferenceSession,
    readonly manifest: Manifest,
  ) {
    const bias = Float32Array.from(bannedTokenIds(manifest), (banned) =>
      banned ? Number.NEGATIVE_INFINITY : 0,
    );
    this.bias = new ort.Tensor("float32", bias, [bias.length]);
    this.selectsRows = session.inputNames.includes("logit_rows");
  }

  static async create(
    graphPath: string,
    manifest: Manifest,
    { executionProviders = ["cpu"], intraOpNumThreads }: SessionOptions = {},
  ): Promise<DenoiserSession> {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders,
      ...(intraOpNumThreads === undefined ? {} : { intraOpNumThreads }),
      // The graph and the pick graph run one after the other, each with its own thread pool: a
      // pool that spins after its run takes the cores from the other (measured: the pick graph
      // 5× slower right after a forward). So threads sleep when idle.
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    };
    const session = await ort.InferenceSession.create(graphPath, options);
    const pick = await ort.InferenceSession.create(PICK_GRAPH, options);
    return new DenoiserSession(session, pick, manifest);
  }

  /**
   * One forward of `context` (committed, not yet cached: causal) followed by `block` (being
   * denoised: bidirectional), at positions cache.length …. Logits and keys/values come back for
   * both, in that order; append the first `context.length` keys/values to the cache.
   */
  async forward(
    context: readonly number[],
    block: readonly number[],
    cache: KvCache,
  ): Promise<ForwardResult> {
    const [result] = await this.forwardBatch([{ context, block, cache }]);
    return result as ForwardResult;
  }

  /**
   * One forward pass for several sequences at once (batching). Rows are padded to the longest
   * input and the longest cache; the attention mask hides the padding, so each row computes
   * what it would alone. A padded query attends only to itself, which keeps its (discarded)
   * values finite. A batch of one with nothing to pad passes its cache through without a copy.
   * A graph with a `logit_rows` input computes the head only for the rows asked for (padded to
   * the most any sequence asks, with row 0); one without computes every row.
   */
  async forwardBatch(
    inputs: readonly ForwardInput[],
    { stats = false, profile }: { stats?: boolean; profile?: StepProfile } = {},
  ): Promise<ForwardResult[]> {
    let clock = performance.now();
    const lap = (part: keyof StepProfile) => {
      const now = performance.now();
      if (profile) profile[part] += now - clock;
      clock = now;
    };
    const { n_layers: layers, kv_heads: heads, head_dim: headDim } = this.manifest.architecture;
    const maxPosition = this.manifest.architecture.max_positions - 1;
    const batch = inputs.length;
    const time = Math.max(...inputs.map((i) => i.context.length + i.block.length));
    const past = Math.max(...inputs.map((i) => i.cache.length));
    const width = past + time;
    const pad = BigInt(this.manifest.special_tokens.pad ?? 0);
    const ids = new BigInt64Array(batch * time).fill(pad);
    const positions = new BigInt64Array(batch * time);
    const mask = new Uint8Array(batch * time * width);
    inputs.forEach(({ context, block, cache, contextBlocks }, row) => {
      const length = context.length + block.length;
      for (let i = 0; i < time; i++) {
        const at = row * time + i;
        if (i < context.length) ids[at] = BigInt(context[i] as number);
        else if (i < length) ids[at] = BigInt(block[i - context.length] as number);
        positions[at] = BigInt(Math.min(cache.length + i, maxPosition));
        const rowMask = at * width;
        if (i >= length) {
          mask[rowMask + past + i] = 1; // padding: itself only
          continue;
        }
        mask.fill(1, rowMask, rowMask + cache.length); // its own past, not the padding after it
        // Context sees what precedes it (and, block-causally, the rest of its own block); the
        // block sees all the new tokens.
        const sees =
          i < context.length ? contextReach(i, cache.length, context.length, contextBlocks) : length;
        mask.fill(1, rowMask + past, rowMask + past + sees);
      }
    });
    lap("inputs");
    const [pastKey, pastValue] = this.batchedPast(inputs, past, [layers, heads, headDim]);
    lap("past");
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [batch, time]),
      positions: new ort.Tensor("int64", positions, [batch, time]),
      past_key: pastKey,
      past_value: pastValue,
      attention_mask: new ort.Tensor("bool", mask, [batch, time, width]),
    };
    const asked = inputs.map((i) => i.rows ?? range(i.context.length + i.block.length));
    inputs.forEach((input, b) => {
      const length = input.context.length + input.block.length;
      if (asked[b]?.some((t) => !(Number.isInteger(t) && t >= 0 && t < length))) {
        throw new RangeError(`logit rows ${asked[b]} fall outside the ${length} new tokens`);
      }
    });
    const rowsPerSequence = this.selectsRows ? Math.max(1, ...asked.map((r) => r.length)) : time;
    if (this.selectsRows) {
      const rows = new BigInt64Array(batch * rowsPerSequence);
      asked.forEach((r, b) => {
        r.forEach((t, k) => {
          rows[b * rowsPerSequence + k] = BigInt(t);
        });
      });
      feeds.logit_rows = new ort.Tensor("int64", rows, [batch, rowsPerSequence]);
    }
    lap("inputs");
    const out = await this.session.run(feeds);
    lap("graph");
    const { logits, new_key, new_value } = out;
    if (!logits || !new_key || !new_value) throw new Error("denoiser graph is missing an output");
    const vocab = this.manifest.architecture.vocab_size;
    const all = logits.data as Float32Array;
    const rowStats = stats ? await this.rowStats(logits, batch * rowsPerSequence) : undefined;
    lap("pick");
    const results = inputs.map((_, b): ForwardResult => {
      // Where each asked-for row is in the graph's output for this sequence.
      const at = this.selectsRows ? asked[b]?.map((_, k) => k) : asked[b];
      const base = b * rowsPerSequence;
      return {
        logits: gatherRows(all, vocab, base, at ?? []),
        ...(rowStats && {
          stats: {
            topId: gatherRows(rowStats.topId, 1, base, at ?? []),
            topLogprob: gatherRows(rowStats.topLogprob, 1, base, at ?? []),
            entropy: gatherRows(rowStats.entropy, 1, base, at ?? []),
          },
        }),
        newKey: new_key,
        newValue: new_value,
        batchRow: b,
      };
    });
    lap("results");
    return results;
  }

  /**
   * The caches of a batch as `[layers, batch, heads, past, head_dim]`, each row padded with zeros.
   * A batch of one passes its cache through; a batch with the same caches as the last one (most
   * steps: caches change only when a block is committed) reuses the last copy.
   */
  private batchedPast(
    inputs: readonly ForwardInput[],
    past: number,
    shape: [number, number, number],
  ): [ort.Tensor, ort.Tensor] {
    const only = inputs[0]?.cache;
    if (inputs.length === 1 && only) return [only.key, only.value];
    const caches = inputs.map((i) => i.cache);
    const last = this.lastPast;
    if (last && last.caches.length === caches.length && last.caches.every((c, i) => c === caches[i])) {
      return [last.key, last.value];
    }
    const [key, value] = concatenateCaches(caches, past, shape);
    this.lastPast = { caches, key, value };
    return [key, value];
  }

  /** Greedy statistics of every row of `logits` in one onnxruntime call (pick.onnx). */
  private async rowStats(logits: ort.Tensor, rows: number): Promise<RowStats> {
    const vocab = this.manifest.architecture.vocab_size;
    const input = new ort.Tensor("float32", logits.data as Float32Array, [rows, vocab]);
    const { top_id, top_logprob, entropy } = await this.pick.run({ logits: input, bias: this.bias });
    if (!top_id || !top_logprob || !entropy) throw new Error("pick graph is missing an output");
    return {
      topId: top_id.data as BigInt64Array,
      topLogprob: top_logprob.data as Float32Array,
      entropy: entropy.data as Float32Array,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.pick.release();
  }
}

/** How far into the new tokens context token `i` sees (exclusive), causally or block-causally. */
function contextReach(
  i: number,
  cached: number,
  contextLength: number,
  blocks: ForwardInput["contextBlocks"],
): number {
  if (!blocks) return i + 1;
  const position = cached + i;
  const blockEnd =
    position + blocks.size - ((((position - blocks.origin) % blocks.size) + blocks.size) % blocks.size);
  return Math.min(contextLength, blockEnd - cached);
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Rows `at` (relative to `base`) of a row-major array of rows of `width`: a view when they are
 * consecutive (the usual case), else a copy.
 */
function gatherRows<T extends Float32Array | BigInt64Array>(
  data: T,
  width: number,
  base: number,
  at: readonly number[],
): T {
  const first = at[0] ?? 0;
  if (at.every((r, k) => r === first + k)) {
    return data.subarray((base + first) * width, (base + first + at.length) * width) as T;
  }
  const out = new (data.constructor as new (n: number) => T)(at.length * width);
  at.forEach((r, k) => {
    out.set(data.subarray((base + r) * width, (base + r + 1) * width) as never, k * width);
  });
  return out;
}

/** Caches side by side as `[layers, batch, heads, past, head_dim]`, each padded with zeros to `past`. */
function concatenateCaches(
  caches: readonly KvCache[],
  past: number,
  [layers, heads, headDim]: [number, number, number],
): [ort.Tensor, ort.Tensor] {
  const batch = caches.length;
  const dims = [layers, batch, heads, past, headDim];
  const key = new Float32Array(layers * batch * heads * past * headDim);
  const value = new Float32Array(key.length);
  caches.forEach((cache, row) => {
    const from = cache.length * headDim;
    const sourceKey = cache.key.data as Float32Array;
    const sourceValue = cache.value.data as Float32Array;
    for (let layer = 0; layer < layers; layer++) {
      for (let head = 0; head < heads; head++) {
        const source = (layer * heads + head) * from;
        const target = ((layer * batch + row) * heads + head) * past * headDim;
        key.set(sourceKey.subarray(source, source + from), target);
        value.set(sourceValue.subarray(source, source + from), target);
      }
    }
  });
  return [new ort.Tensor("float32", key, dims), new ort.Tensor("float32", value, dims)];
}
