/**
 * The wire protocol between the edge's adapters and denoiser nodes, version 1.
 *
 * Request: `POST {node}/v1/generate` with `Authorization: Bearer <node secret>` and a JSON
 * `NodeGenerateRequest`. Response: `text/event-stream`; each SSE message has `event: <type>` and
 * `data: <NodeEvent as JSON>`, in the order start, (step…, block)…, then done or error.
 * Errors before the stream starts are JSON `{error: {code, message}}` with an HTTP status.
 *
 * One zod schema per message; TypeScript types are inferred from them. Both sides validate.
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 1;

export const NodeGenerateRequest = z.object({
  prompt: z.string(),
  /** Infilling: the text that follows the middle the model writes. */
  suffix: z.string().optional(),
  max_tokens: z.number().int().min(1).max(4096),
  block_size: z.number().int().min(1).max(256).optional(),
  threshold: z.number().gt(0).max(1).optional(),
  emit_steps: z.boolean().optional(),
  /** 0 or absent: greedy. Otherwise sampled, reproducibly for a given seed. */
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  /** Generation ends before the first occurrence of any of these (not included). */
  stop: z.array(z.string().min(1).max(256)).max(4).optional(),
});
export type NodeGenerateRequest = z.infer<typeof NodeGenerateRequest>;

export const Usage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  forward_passes: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof Usage>;

export const NodeEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("start"),
    v: z.literal(PROTOCOL_VERSION),
    model: z.string(),
    prompt_tokens: z.number().int().nonnegative(),
    block_size: z.number().int().positive(),
  }),
  z.object({
    type: z.literal("step"),
    block: z.number().int().nonnegative(),
    step: z.number().int().positive(),
    committed: z.number().int().nonnegative(),
    remaining: z.number().int().nonnegative(),
  }),
  z.object({
    type: z.literal("block"),
    index: z.number().int().nonnegative(),
    text: z.string(),
    tokens: z.number().int().nonnegative(),
    steps: z.number().int().nonnegative(),
  }),
  z.object({
    type: z.literal("done"),
    finish_reason: z.enum(["stop", "length", "cancelled"]),
    usage: Usage,
  }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
]);
export type NodeEvent = z.infer<typeof NodeEvent>;

export const NodeErrorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
