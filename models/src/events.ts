/**
 * What decoding yields, in order: start, then per block (step…, edit…, block), then done. These
 * are the protocol's node events (protocol/src/events.ts), as the node streams them; a
 * decoder never yields `verify` (the node adds it when asked) or `error` (a decoder throws).
 */
import type { NodeEvent } from "../../protocol/src/index.ts";

export type { EditedToken, FinishReason, Usage } from "../../protocol/src/index.ts";

export type DecodeEvent = Exclude<NodeEvent, { type: "verify" | "error" }>;
