/**
 * One forward pass of the exported denoiser graph, and the KV cache of committed context.
 *
 * The graph (see models/python/model.py) takes the new tokens, their absolute positions, the
 * cached keys/values of everything committed before them and an attention mask, and returns
 * logits for the new tokens plus their own keys/values. The caller decides whether those are
 * committed (appended to the cache) or thrown away (a denoising step whose tokens may change).
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

  /** A new cache holding this one's tokens followed by `added` (whose length axis is 3). */
  append(addedKey: ort.Tensor, addedValue: ort.Tensor): KvCache {
    const added = addedKey.dims[3] ?? 0;
    return new KvCache(
      concatOnLengthAxis(this.key, addedKey),
      concatOnLengthAxis(this.value, addedValue),
      this.length + added,
    );
  }
}

function concatOnLengthAxis(a: ort.Tensor, b: ort.Tensor): ort.Tensor {
  const [layers = 0, batch = 0, heads = 0, lengthA = 0, headDim = 0] = a.dims;
  const lengthB = b.dims[3] ?? 0;
  const rows = layers * batch * heads;
  const dataA = a.data as Float32Array;
  const dataB = b.data as Float32Array;
  const out = new Float32Array(rows * (lengthA + lengthB) * headDim);
  const strideA = lengthA * headDim;
  const strideB = lengthB * headDim;
  for (let row = 0; row < rows; row++) {
    const base = row * (strideA + strideB);
    out.set(dataA.subarray(row * strideA, (row + 1) * strideA), base);
    out.set(dataB.subarray(row * strideB, (row + 1) * strideB), base + strideA);
  }
  return new ort.Tensor("float32", out, [layers, batch, heads, lengthA + lengthB, headDim]);
}

export type Attention = "causal" | "bidirectional";

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
   * Runs `tokens` (at positions cache.length …) against the cache. `causal`: each new token
   * sees earlier new tokens only (prefill, committing a block); `bidirectional`: all new tokens
   * see each other (a denoising step inside a block).
   */
  async forward(tokens: readonly number[], cache: KvCache, attention: Attention): Promise<ForwardResult> {
    const time = tokens.length;
    const past = cache.length;
    const ids = BigInt64Array.from(tokens, (t) => BigInt(t));
    const positions = BigInt64Array.from({ length: time }, (_, i) => BigInt(past + i));
    const mask = new Uint8Array(time * (past + time)).fill(1);
    if (attention === "causal") {
      for (let i = 0; i < time; i++) mask.fill(0, i * (past + time) + past + i + 1, (i + 1) * (past + time));
    }
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
