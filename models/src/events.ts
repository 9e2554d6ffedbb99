/** What decoding yields, in order: start, (step…, block)…, done. Plain data, no HTTP. */

/** stop: an end token or a stop sequence; length: max_tokens; cancelled: the caller's signal. */
export type FinishReason = "stop" | "length" | "cancelled";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  /** Forward passes of the graph; the prompt and cache updates ride along with steps, so = steps. */
  forward_passes: number;
}

export type DecodeEvent =
  | { type: "start"; model: string; prompt_tokens: number; block_size: number }
  /** One denoising step: how many masked tokens it committed; `remaining` still masked. */
  | { type: "step"; block: number; step: number; committed: number; remaining: number }
  /** A finished block: the text it makes visible. It can be "" or carry text held back from an
   * earlier block (an unfinished multi-byte character, a possible start of a stop sequence). */
  | { type: "block"; index: number; text: string; tokens: number; steps: number }
  | { type: "done"; finish_reason: FinishReason; usage: Usage };
