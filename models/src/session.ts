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
import * as ort from "onnxruntime-node";
import type { Manifest } from "./manifest.ts";

/** Keys and values of committed tokens, `[layers, 1, heads, length, head_dim]` each. */
export class KvCache {
  private constructor(
    readonly key: ort.Tensor,
    readonly value: ort.Tensor,
    readonly length: number,
  ) {}

  static empty(manifest: Manifest): KvCache {
    const { n_layers, n_heads, head_dim } = manifest.architecture;
    const dims = [n_layers, 1, n_heads, 0, head_dim];
    return new KvCache(
      new ort.Tensor("float32", new Float32Array(0), dims),
      new ort.Tensor("float32", new Float32Array(0), dims),
      0,
    );
  }

  /** A new cache: this one's tokens followed by the first `count` of `added` (length axis 3). */
  append(addedKey: ort.Tensor, addedValue: ort.Tensor, count = addedKey.dims[3] ?? 0): KvCache {
    if (count < 0 || count > (addedKey.dims[3] ?? 0)) {
      throw new RangeError(`cannot append ${count} positions from ${addedKey.dims[3]}`);
    }
    return new KvCache(
      concatOnLengthAxis(this.key, addedKey, count),
      concatOnLengthAxis(this.value, addedValue, count),
      this.length + count,
    );
  }
}

function concatOnLengthAxis(a: ort.Tensor, b: ort.Tensor, take: number): ort.Tensor {
  const [layers = 0, batch = 0, heads = 0, lengthA = 0, headDim = 0] = a.dims;
  const lengthB = b.dims[3] ?? 0;
  const rows = layers * batch * heads;
  const dataA = a.data as Float32Array;
  const dataB = b.data as Float32Array;
  const out = new Float32Array(rows * (lengthA + take) * headDim);
  const strideA = lengthA * headDim;
  const strideB = lengthB * headDim;
  for (let row = 0; row < rows; row++) {
    const base = row * (strideA + take * headDim);
    out.set(dataA.subarray(row * strideA, (row + 1) * strideA), base);
    out.set(dataB.subarray(row * strideB, row * strideB + take * headDim), base + strideA);
  }
  return new ort.Tensor("float32", out, [layers, batch, heads, lengthA + take, headDim]);
}

export interface ForwardResult {
  /** `[tokens, vocab]`, row-major. */
  logits: Float32Array;
  newKey: ort.Tensor;
  newValue: ort.Tensor;
}

export class DenoiserSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly manifest: Manifest,
  ) {}

  static async create(graphPath: string, manifest: Manifest): Promise<DenoiserSession> {
    const session = await ort.InferenceSession.create(graphPath, { executionProviders: ["cpu"] });
    return new DenoiserSession(session, manifest);
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
    const tokens = [...context, ...block];
    const time = tokens.length;
    const past = cache.length;
    const width = past + time;
    const ids = BigInt64Array.from(tokens, (t) => BigInt(t));
    const positions = BigInt64Array.from({ length: time }, (_, i) => BigInt(past + i));
    const mask = new Uint8Array(time * width).fill(1);
    // A context token does not see the tokens after it; block tokens see everything.
    for (let i = 0; i < context.length; i++) mask.fill(0, i * width + past + i + 1, (i + 1) * width);
    const out = await this.session.run({
      input_ids: new ort.Tensor("int64", ids, [1, time]),
      positions: new ort.Tensor("int64", positions, [1, time]),
      past_key: cache.key,
      past_value: cache.value,
      attention_mask: new ort.Tensor("bool", mask, [1, time, past + time]),
    });
    const { logits, new_key, new_value } = out;
    if (!logits || !new_key || !new_value) throw new Error("denoiser graph is missing an output");
    return { logits: logits.data as Float32Array, newKey: new_key, newValue: new_value };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
