/**
 * What only the node's HTTP face adds to the messages: its version, its error body, and its
 * readiness (`GET /readyz`), which says which models it serves (the edge's router learns the
 * models of its pool from it).
 *
 * The node answers every `/v1/*` request with the header `sprout-protocol: <PROTOCOL_VERSION>`;
 * an adapter refuses an answer without it or with another version, so no event needs to carry
 * one. Version 2: the version moved from the `start` event into this header, and `verify`
 * events carry the verification's fields beside `type` (as the public stream does).
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 2;
export const PROTOCOL_HEADER = "sprout-protocol";

/** Errors before a stream starts: JSON with an HTTP status. */
export const NodeErrorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
export type NodeErrorBody = z.infer<typeof NodeErrorBody>;

/** One model a ready node serves: its name, the sha256 of its graph, its context and load. */
export const NodeModel = z.object({
  name: z.string(),
  sha256: z.string().optional(),
  /** The context requests may fill: the manifest's, or less where the node caps it (SPROUT_MAX_CONTEXT). */
  context_length: z.number().int().positive().optional(),
  /** The manifest's own context_length. */
  manifest_context_length: z.number().int().positive().optional(),
  active: z.number().int().nonnegative().optional(),
  queued: z.number().int().nonnegative().optional(),
});
export type NodeModel = z.infer<typeof NodeModel>;

/** A ready node's `/readyz` (200); a node that is not ready answers 503 `{ready: false, reason}`. */
export const NodeReadiness = z.object({
  ready: z.literal(true),
  /** The model that serves requests naming none (the first of `models`). */
  model: z.string(),
  models: z.array(NodeModel).min(1),
});
export type NodeReadiness = z.infer<typeof NodeReadiness>;
