/**
 * What decoding yields, in order: start, then per block (step…, edit…, block), then done.
 * Plain data, no HTTP; the node's wire protocol (adapters/src/protocol.ts) carries these as they
 * are, and its zod schemas are checked against these types where the node converts them.
 */

/** stop: an end token or a stop sequence; length: max_tokens; cancelled: the caller's signal. */
export type FinishReason = "stop" | "length" | "cancelled";

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  /** Forward passes of the graph this generation took part in (prefill and cache updates ride along with steps). */
  forward_passes: number;
}

/** One revised token: its position in the block, its text before and after. */
export interface EditedToken {
  position: number;
  from: string;
  to: string;
}

export type DecodeEvent =
  | { type: "start"; model: string; prompt_tokens: number; block_size: number }
  /** One denoising step: how many masked tokens it committed, `remaining` still masked, and the
   * block as it stands (each position's token text, null while masked): the denoising as it happens. */
  | {
      type: "step";
      block: number;
      step: number;
      committed: number;
      remaining: number;
      state: (string | null)[];
    }
  /** An edit round over a block with no masks left, before the block is final: what it revised. */
  | { type: "edit"; block: number; round: number; edits: EditedToken[] }
  /** A finished block: the text it makes visible, and its token ids (to resume elsewhere). It can
   * show "" or text held back from an earlier block (an unfinished multi-byte character, a
   * possible start of a stop sequence). `steps` counts its forwards, edit rounds included. */
  | { type: "block"; index: number; text: string; tokens: number; steps: number; ids: number[] }
  | { type: "done"; finish_reason: FinishReason; usage: Usage };
