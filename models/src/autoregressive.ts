/**
 * Autoregressive decoding, for the twin (sprout-tiny-ar: the same network trained with a causal
 * next-token loss) so that benchmarks compare both ways of decoding in one runtime, each with
 * its KV cache. Each forward takes the uncached committed tokens (the prompt, then the last
 * token), appends their keys/values and chooses the next token from the last row: one token
 * per forward. Tokens are reported in blocks of `blockSize` like diffusion's, so stop sequences,
 * usage and streaming behave the same.
 */
import type { DecodeEvent } from "./events.ts";
import { type DecodeOptions, type Decoder, Generation } from "./generation.ts";
import { DecodeInputError } from "./prompt.ts";
import type { ForwardInput, ForwardResult } from "./session.ts";

export class AutoregressiveGeneration extends Generation {
  private pending: number[] = [];
  private steps = 0;

  constructor(decoder: Decoder, options: DecodeOptions) {
    super(decoder, options);
    const diffusionOnly = ["threshold", "steps", "entropyBound", "editRounds"] as const;
    const asked = diffusionOnly.filter((key) => options[key] !== undefined);
    if (asked.length > 0) throw new DecodeInputError(`an autoregressive model has no ${asked.join(", ")}`);
  }

  protected input(): ForwardInput {
    return { context: this.uncached, block: [], cache: this.cache };
  }

  protected apply({ logits }: ForwardResult, contextLength: number): DecodeEvent[] {
    this.steps++;
    const vocab = this.manifest.architecture.vocab_size;
    const last = logits.subarray((contextLength - 1) * vocab, contextLength * vocab);
    const index = this.generated.length + this.pending.length;
    const { token } = this.picker()(last, this.banAt(index));
    const ended = token === this.manifest.special_tokens.eos;
    if (!ended) this.pending.push(token);
    const full = this.pending.length === this.blockSize || index + 1 >= this.options.maxTokens;
    if (!ended && !full && !this.stopsIn(this.pending)) {
      this.uncached = [token];
      return [];
    }
    const ids = this.pending;
    this.pending = [];
    const steps = this.steps;
    this.steps = 0;
    this.uncached = [token];
    return this.commitBlock(ids, ended, steps);
  }

  private stopsIn(pending: readonly number[]): boolean {
    if (this.stops.length === 0) return false;
    const text = this.textOf([...this.generated, ...pending]);
    return this.stops.some((stop) => text.includes(stop, Math.max(0, this.emittedText.length - stop.length)));
  }
}
