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
import { KvCache, PAST_BUFFER_BYTES, type PastBuffer, PastBuffers } from "./kv.ts";
import type { Manifest } from "./manifest.ts";
import { bannedTokenIds } from "./prompt.ts";

export { KvCache };

/** Per-row argmax, log-probability and entropy (written by models/python/pick_graph.py). */
const PICK_GRAPH = fileURLToPath(new URL("./pick.onnx", import.meta.url));

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
 * Where batched forwards spent their time, added up over the forwards it is passed to
 * (bench/step-profile.ts). `newStepProfile()` gives an empty one.
 */
export interface StepProfile {
  /** Milliseconds in each part. */
  ms: {
    /** Token ids, positions, attention mask and logit rows. */
    inputs: number;
    /** The caches side by side as the graph's past keys/values (copying what is new). */
    past: number;
    /** The denoiser graph. */
    graph: number;
    /** The greedy statistics (pick.onnx), the asked-for rows gathered for it included. */
    pick: number;
    /** Each sequence's rows of logits. */
    results: number;
  };
  /**
   * Graph runs, the token slots they computed (padding included), the rows of logits the graph's
   * head computed (see `RowContract`: flat, the rows asked; per sequence, each sequence of a run as
   * many as the one asking most; neither, every slot) and the rows the pick graph read.
   */
  runs: number;
  slots: number;
  headRows: number;
  pickedRows: number;
}

export function newStepProfile(): StepProfile {
  return {
    ms: { inputs: 0, past: 0, graph: 0, pick: 0, results: 0 },
    runs: 0,
    slots: 0,
    headRows: 0,
    pickedRows: 0,
  };
}

export interface SessionOptions {
  /** onnxruntime execution providers in order of preference, e.g. `["cuda", "cpu"]`. */
  executionProviders?: string[];
  intraOpNumThreads?: number;
  /**
   * What one more forward costs, in token slots (one token through the graph, padding
   * included): forwardBatch splits a batch into graph runs of similar shapes when that saves
   * more padded slots than this per extra run. Default: `CPU_FORWARD_COST_TOKENS` when the
   * CPU provider is the first choice (a forward's cost there is mostly per token), else
   * Infinity (never split: on a GPU a forward's cost is mostly per call).
   */
  forwardCostTokens?: number;
  /**
   * What one new token attending one more past position costs, in token slots: the price of
   * padding a row's cache to the longest in its run. Default `CPU_PAST_POSITION_COST`.
   */
  pastPositionCost?: number;
  /**
   * Bytes of batched past tensors kept for reuse between steps (kv.ts's `PastBuffers`), key and
   * value together; default `PAST_BUFFER_BYTES` (256 MiB). A batch whose past is larger still
   * runs, copying its past afresh each step. 0 keeps none.
   */
  pastBufferBytes?: number;
}

/**
 * What one more graph run costs on this kind of CPU, in token slots. bench/step-profile.ts, 7
 * sequences taking a step of 32 beside one with context before its block, run apart: 149
 * slots with a committed block of 32, 242 with a 100-token prefill (sprout-tiny with
 * logit_rows, whose padded slots cost no head; 63–122 on its graph without), the extra run's
 * lower efficiency at batch 1 included. Splitting saved 15% and 43% of those forwards' time.
 */
export const CPU_FORWARD_COST_TOKENS = 128;

/**
 * What a new token attending one more cached position costs on this kind of CPU, in token
 * slots. bench/engine.ts's step latency (one block of 32, sprout-tiny, 2026-12-01): 3.85 ms
 * against 128 cached tokens, 6.73 ms against 992, so 1.04e-4 ms per (token, position) pair;
 * one token slot costs 0.095 ms (its cost model), hence 0.0011. Attention is the one part of a
 * forward whose cost grows with the past, and decomposed into small ops it runs far below the
 * GEMM rate: padding 8 rows of a block of 32 from 110 cached positions to 180 costs about 2 ms
 * of a 25 ms step.
 */
export const CPU_PAST_POSITION_COST = 0.0011;

export class DenoiserSession {
  /** 0 for ids the model may produce, -inf for banned ones (prompt.ts's bannedTokenIds). */
  private readonly bias: ort.Tensor;
  /**
   * Where the pick graph's rows are gathered, reused (a fresh array of that size costs more in
   * page faults than the copy); `undefined` while a pick run reads it.
   */
  private pickRows: Float32Array | undefined;
  /** How the graph is told the rows its head computes (`rowContract`). */
  readonly rowContract: RowContract;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly pick: ort.InferenceSession,
    readonly manifest: Manifest,
    private readonly costs: RunCosts,
    private readonly pasts: PastBuffers,
  ) {
    const bias = Float32Array.from(bannedTokenIds(manifest), (banned) =>
      banned ? Number.NEGATIVE_INFINITY : 0,
    );
    this.bias = new ort.Tensor("float32", bias, [bias.length]);
    this.rowContract = rowContract(session.inputNames);
  }

  static async create(
    graphPath: string,
    manifest: Manifest,
    {
      executionProviders = ["cpu"],
      intraOpNumThreads,
      forwardCostTokens,
      pastPositionCost = CPU_PAST_POSITION_COST,
      pastBufferBytes = PAST_BUFFER_BYTES,
    }: SessionOptions = {},
  ): Promise<DenoiserSession> {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders,
      ...(intraOpNumThreads === undefined ? {} : { intraOpNumThreads }),
      // The graph and the pick graph run one after the other, each with its own thread pool: a
      // pool that spins after its run takes the cores from the other (measured: the pick graph
      // 5× slower right after a forward). So threads sleep when idle.
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    };
    // Made first: a bad budget throws before any onnxruntime session is open.
    const { n_layers: layers, kv_heads: heads, head_dim: headDim } = manifest.architecture;
    const pasts = new PastBuffers({ layers, heads, headDim }, { budgetBytes: pastBufferBytes });
    const session = await ort.InferenceSession.create(graphPath, options);
    const pick = await ort.InferenceSession.create(PICK_GRAPH, options);
    const run =
      forwardCostTokens ??
      (executionProviders[0] === "cpu" ? CPU_FORWARD_COST_TOKENS : Number.POSITIVE_INFINITY);
    return new DenoiserSession(session, pick, manifest, { run, pastPosition: pastPositionCost }, pasts);
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
   * One forward pass for several sequences at once (batching). Sequences of similar length go
   * into one graph run: rows are padded to its longest input and longest cache, and the
   * attention mask hides the padding, so each row computes what it would alone (a padded query
   * attends only to itself, which keeps its discarded values finite). Sequences of quite
   * different shapes (one bringing a prefill or a committed block, the rest only their block;
   * caches of quite different lengths) run in separate graph runs when that saves more padding
   * than a run costs (`plan`). The graph's head computes the rows asked for as its row contract
   * allows (`RowContract`): exactly those, padded per sequence, or every row. The greedy
   * statistics, when asked for, are computed for the asked-for rows only, in one pick-graph run
   * for the whole batch.
   */
  async forwardBatch(
    inputs: readonly ForwardInput[],
    { stats = false, profile }: { stats?: boolean; profile?: StepProfile } = {},
  ): Promise<ForwardResult[]> {
    let clock = performance.now();
    const lap = (part: keyof StepProfile["ms"]) => {
      const now = performance.now();
      if (profile) profile.ms[part] += now - clock;
      clock = now;
    };
    if (inputs.length === 0) return [];
    const asked = inputs.map((input) => {
      const length = input.context.length + input.block.length;
      const rows = input.rows ?? range(length);
      if (rows.some((t) => !(Number.isInteger(t) && t >= 0 && t < length))) {
        throw new RangeError(`logit rows ${rows} fall outside the ${length} new tokens`);
      }
      return rows;
    });
    const results: ForwardResult[] = new Array(inputs.length);
    const sources: RowSource[] = new Array(inputs.length);
    for (const group of this.plan(inputs)) {
      const out = await this.run(
        group.map((b) => inputs[b] as ForwardInput),
        group.map((b) => asked[b] as readonly number[]),
        lap,
        profile,
      );
      group.forEach((b, k) => {
        results[b] = out.results[k] as ForwardResult;
        sources[b] = out.sources[k] as RowSource;
      });
    }
    if (stats) {
      const all = await this.rowStats(sources);
      if (profile) profile.pickedRows += all.topId.length;
      let at = 0;
      for (const [b, result] of results.entries()) {
        const rows = sources[b]?.rows.length ?? 0;
        result.stats = {
          topId: all.topId.subarray(at, at + rows),
          topLogprob: all.topLogprob.subarray(at, at + rows),
          entropy: all.entropy.subarray(at, at + rows),
        };
        at += rows;
      }
      lap("pick");
    }
    return results;
  }

  /** The graph runs forwardBatch would make of these inputs: indices into them, per run (planRuns). */
  plan(inputs: readonly ForwardInput[]): number[][] {
    return planRuns(inputs.map(shapeOf), this.costs);
  }

  /**
   * The token slots a forwardBatch of these inputs computes: each graph run's sequences × its
   * longest input, padding included (what a scheduler's per-forward budget counts).
   */
  slots(inputs: readonly ForwardInput[]): number {
    const shapes = inputs.map(shapeOf);
    let slots = 0;
    for (const group of planRuns(shapes, this.costs)) {
      slots += group.length * Math.max(0, ...group.map((b) => (shapes[b] as RunShape).time));
    }
    return slots;
  }

  /**
   * One graph run over sequences padded to the longest; each gets its asked-for rows of logits
   * (a view of the graph's output when they are consecutive there, else gathered when first
   * read), and where they are in that output.
   */
  private async run(
    inputs: readonly ForwardInput[],
    asked: readonly (readonly number[])[],
    lap: (part: keyof StepProfile["ms"]) => void,
    profile: StepProfile | undefined,
  ): Promise<{ results: ForwardResult[]; sources: RowSource[] }> {
    const maxPosition = this.manifest.architecture.max_positions - 1;
    const batch = inputs.length;
    const time = Math.max(...inputs.map((i) => i.context.length + i.block.length));
    const past = Math.max(...inputs.map((i) => i.cache.length));
    const width = past + time;
    if (profile) {
      profile.runs++;
      profile.slots += batch * time;
    }
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
    const head = headRows(this.rowContract, asked, time);
    if (profile) profile.headRows += head.computed;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [batch, time]),
      positions: new ort.Tensor("int64", positions, [batch, time]),
      attention_mask: new ort.Tensor("bool", mask, [batch, time, width]),
      ...head.feeds,
    };
    lap("inputs");
    // A batch of one takes its cache's own tensors; a larger one a kept buffer (kv.ts).
    let buffer: PastBuffer | undefined;
    const only = inputs[0] as ForwardInput;
    if (batch === 1) [feeds.past_key, feeds.past_value] = [only.cache.key, only.cache.value];
    else {
      buffer = this.pasts.acquire(
        inputs.map((i) => i.cache),
        past,
      );
      [feeds.past_key, feeds.past_value] = [buffer.key, buffer.value];
    }
    lap("past");
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(feeds);
    } finally {
      if (buffer) this.pasts.release(buffer);
    }
    lap("graph");
    const { logits, new_key, new_value } = out;
    if (!logits || !new_key || !new_value) throw new Error("denoiser graph is missing an output");
    const vocab = this.manifest.architecture.vocab_size;
    const all = logits.data as Float32Array;
    const sources = head.at.map((rows): RowSource => ({ data: all, rows }));
    const results = sources.map((source, b): ForwardResult => {
      let rows: Float32Array | undefined;
      return {
        get logits() {
          rows ??= gatherRows(source.data, vocab, source.rows);
          return rows;
        },
        newKey: new_key,
        newValue: new_value,
        batchRow: b,
      };
    });
    lap("results");
    return { results, sources };
  }

  /** Greedy statistics of the rows of each source, all in one onnxruntime call (pick.onnx), in order. */
  private async rowStats(sources: readonly RowSource[]): Promise<RowStats> {
    const vocab = this.manifest.architecture.vocab_size;
    const rows = sources.reduce((n, s) => n + s.rows.length, 0);
    // No row asked (a prefill or commit pass): onnxruntime would run the pick graph on [0, vocab]
    // and warn that its outputs' shapes differ from the graph's.
    if (rows === 0)
      return { topId: new BigInt64Array(0), topLogprob: new Float32Array(0), entropy: new Float32Array(0) };
    // The rows as they are when they are consecutive in one output, else copied together into a
    // reused array (a fresh one that size costs more in page faults than the copy itself).
    const only = sources.length === 1 ? sources[0] : undefined;
    let data = only && consecutive(only.rows) ? gatherRows(only.data, vocab, only.rows) : undefined;
    let scratch: Float32Array | undefined;
    if (!data) {
      scratch =
        this.pickRows && this.pickRows.length >= rows * vocab
          ? this.pickRows
          : new Float32Array(rows * vocab);
      this.pickRows = undefined; // while the pick graph reads it, a concurrent forward gathers elsewhere
      data = scratch.subarray(0, rows * vocab);
      let at = 0;
      for (const source of sources) {
        for (const r of source.rows) {
          data.set(source.data.subarray(r * vocab, (r + 1) * vocab), at);
          at += vocab;
        }
      }
    }
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.pick.run({ logits: new ort.Tensor("float32", data, [rows, vocab]), bias: this.bias });
    } finally {
      if (scratch && (this.pickRows?.length ?? -1) < scratch.length) this.pickRows = scratch;
    }
    const { top_id, top_logprob, entropy } = out;
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

/**
 * How a graph is told the rows its final norm and vocabulary head run on (models/python/graph_io.py
 * writes both inputs):
 * - `flat`: `logit_positions`, int64 [rows] of b·time + t → logits [rows, vocab]. Imported graphs:
 *   exactly the rows asked, each sequence's a consecutive slice of the output in batch order.
 * - `per-sequence`: `logit_rows`, int64 [batch, rows] of indices into time → logits [batch, rows,
 *   vocab]. sprout-tiny's graph: every sequence asks as many rows as the one asking most.
 * - `every`: neither input (sprout-tiny-ar) → logits [batch, time, vocab], every slot.
 */
export type RowContract = "flat" | "per-sequence" | "every";

function rowContract(inputNames: readonly string[]): RowContract {
  if (inputNames.includes("logit_positions")) return "flat";
  if (inputNames.includes("logit_rows")) return "per-sequence";
  return "every";
}

/**
 * One graph run's rows under a row contract: the input asking for them (none under `every`), how
 * many rows the head computes, and where each sequence's asked rows are among the rows of the
 * `logits` output (all three layouts are row-major rows of `vocab`).
 */
function headRows(
  contract: RowContract,
  asked: readonly (readonly number[])[],
  time: number,
): { feeds: Record<string, ort.Tensor>; computed: number; at: number[][] } {
  const batch = asked.length;
  if (contract === "flat") {
    // A run where no sequence asks a row feeds an empty input: onnxruntime gathers nothing and
    // the head's [0, vocab] product is empty (test_import_checkpoint.py checks that graph).
    const positions = new BigInt64Array(asked.reduce((n, rows) => n + rows.length, 0));
    let next = 0;
    const at = asked.map((rows, b) =>
      rows.map((t) => {
        positions[next] = BigInt(b * time + t);
        return next++;
      }),
    );
    const feeds = { logit_positions: new ort.Tensor("int64", positions, [positions.length]) };
    return { feeds, computed: positions.length, at };
  }
  if (contract === "per-sequence") {
    // At least one row each (a [batch, 0] input is untested on that graph); padding asks row 0.
    const perSequence = Math.max(1, ...asked.map((rows) => rows.length));
    const rows = new BigInt64Array(batch * perSequence);
    asked.forEach((r, b) => {
      r.forEach((t, k) => {
        rows[b * perSequence + k] = BigInt(t);
      });
    });
    const feeds = { logit_rows: new ort.Tensor("int64", rows, [batch, perSequence]) };
    return {
      feeds,
      computed: batch * perSequence,
      at: asked.map((r, b) => r.map((_, k) => b * perSequence + k)),
    };
  }
  return { feeds: {}, computed: batch * time, at: asked.map((r, b) => r.map((t) => b * time + t)) };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Rows of a row-major array of logits: a forward's output and which of its rows a sequence asked for. */
interface RowSource {
  data: Float32Array;
  rows: readonly number[];
}

function consecutive(rows: readonly number[]): boolean {
  return rows.every((r, k) => r === (rows[0] as number) + k);
}

/** Rows `at` of a row-major array of rows of `width`: a view when they are consecutive, else a copy. */
function gatherRows(data: Float32Array, width: number, at: readonly number[]): Float32Array {
  const first = at[0] ?? 0;
  if (consecutive(at)) return data.subarray(first * width, (first + at.length) * width);
  const out = new Float32Array(at.length * width);
  at.forEach((r, k) => {
    out.set(data.subarray(r * width, (r + 1) * width), k * width);
  });
  return out;
}

/** A sequence's shape in a graph run: its new tokens, and its cached positions. */
export interface RunShape {
  time: number;
  past: number;
}

/** What graph runs cost, in token slots (one new token through the graph): see SessionOptions. */
export interface RunCosts {
  /** One more graph run. */
  run: number;
  /** One new token attending one more cached position. */
  pastPosition: number;
}

function shapeOf(input: ForwardInput): RunShape {
  return { time: input.context.length + input.block.length, past: input.cache.length };
}

/**
 * Sequences in groups, each one graph run, that minimise the padded cost: per run `run`, per
 * sequence its run's longest input, plus `pastPosition` for each of those tokens times the
 * run's longest cache. Sorted by input length then cache length, a group is a run of neighbours
 * (dynamic programming over the split points). Each group lists its sequences in their
 * original order; an infinite run cost keeps them all in one run.
 */
export function planRuns(shapes: readonly RunShape[], costs: RunCosts): number[][] {
  const at = (i: number) => shapes[i] as RunShape;
  const order = shapes.map((_, i) => i).sort((a, b) => at(a).time - at(b).time || at(a).past - at(b).past);
  if (!Number.isFinite(costs.run) || order.length <= 1) return [shapes.map((_, i) => i)];
  // best[k]: the cheapest way to run the k first of `order`; cut[k]: where its last group starts.
  const best = [0];
  const cut = [0];
  for (let k = 1; k <= order.length; k++) {
    const time = at(order[k - 1] as number).time; // the longest input of any group ending at k
    best[k] = Number.POSITIVE_INFINITY;
    let past = 0;
    for (let j = k - 1; j >= 0; j--) {
      past = Math.max(past, at(order[j] as number).past);
      const cost = (best[j] as number) + costs.run + (k - j) * time * (1 + costs.pastPosition * past);
      if (cost < (best[k] as number)) {
        best[k] = cost;
        cut[k] = j;
      }
    }
  }
  const groups: number[][] = [];
  for (let k = order.length; k > 0; k = cut[k] as number) {
    groups.unshift(order.slice(cut[k], k).sort((a, b) => a - b));
  }
  return groups;
}
