/** What decoding yields, in order: start, (step…, block)…, done. Plain data, no HTTP. */

export type FinishReason = "stop" | "length" | "cancelled";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  /** Forward passes of the graph, prefill and cache updates included. */
  forward_passes: number;
}

export type DecodeEvent =
  | { type: "start"; model: string; prompt_tokens: number; block_size: number }
  /** One denoising step: how many masked tokens it committed; `remaining` still masked. */
  | { type: "step"; block: number; step: number; committed: number; remaining: number }
  /** A finished block: its text (may be "" when the block only closed a multi-byte char). */
  | { type: "block"; index: number; text: string; tokens: number; steps: number }
  | { type: "done"; finish_reason: FinishReason; usage: Usage };
