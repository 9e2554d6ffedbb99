/**
 * Aggregate decoding speed with concurrent requests through the node's batching scheduler (the
 * same Scheduler the denoiser node runs), for bench/engine.ts and bench/gpu.ts.
 */
import { DEFAULT_MAX_BATCH, type ForwardStats, Scheduler } from "../apps/denoiser/src/scheduler.ts";
import type { DecodeOptions, Model } from "../models/src/index.ts";

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

export interface ConcurrencyResult {
  model: string;
  concurrency: number;
  max_batch: number;
  requests: number;
  completion_tokens: number;
  forward_passes: number;
  /** Completion tokens per forward pass, summed over the requests (each forward counted once per request in it). */
  tokens_per_forward: number;
  tokens_per_s: number;
  wall_s: number;
  mean_batch: number;
  /** Input tokens (context and block) through the graph per second, real ones only. */
  token_forwards_per_s: number;
  token_forwards: number;
  padded_share: number;
  forward_share: number;
  peak_rss_mb: number;
}

/**
 * Runs `requests`, `level` at a time, through one scheduler of at most `maxBatch` sequences per
 * forward (1: batching off) and otherwise the node's limits.
 */
export async function concurrency(
  which: Model,
  requests: DecodeOptions[],
  level: number,
  maxBatch = DEFAULT_MAX_BATCH,
): Promise<ConcurrencyResult> {
  const forwards: ForwardStats[] = [];
  const scheduler = new Scheduler({
    forward: (inputs, options) => which.session.forwardBatch(inputs, options),
    slots: (inputs) => which.session.slots(inputs),
    onForward: (stats) => forwards.push(stats),
    maxBatch,
    maxQueue: 64,
  });
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 10);
  let tokens = 0;
  let passes = 0;
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const request = requests[next++] as DecodeOptions;
      for await (const event of scheduler.submit(which.start(request))) {
        if (event.type === "done") {
          tokens += event.usage.completion_tokens;
          passes += event.usage.forward_passes;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: level }, worker));
  const wall = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const tokenForwards = sum(forwards.map((f) => f.tokens));
  return {
    model: which.manifest.name,
    concurrency: level,
    max_batch: maxBatch,
    requests: requests.length,
    completion_tokens: tokens,
    forward_passes: passes,
    tokens_per_forward: tokens / passes,
    tokens_per_s: tokens / wall,
    wall_s: wall,
    mean_batch: sum(forwards.map((f) => f.sequences)) / forwards.length,
    token_forwards_per_s: tokenForwards / wall,
    token_forwards: tokenForwards,
    padded_share: 1 - tokenForwards / sum(forwards.map((f) => f.paddedTokens)),
    forward_share: sum(forwards.map((f) => f.seconds)) / wall,
    peak_rss_mb: peakRss / 2 ** 20,
  };
}
