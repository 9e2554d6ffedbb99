/**
 * What only the node's HTTP face adds to the messages: its version, and its error body.
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
