/**
 * The edge's native API as clients see it: the bodies of `POST /v1/generate`, `/v1/verify` and
 * `/v1/edits` (the node's requests, `model` required), their answers, the native event stream, and
 * the error body every route answers with. (The OpenAI-compatible routes speak OpenAI's formats,
 * defined with them in apps/edge.) Request types are what a client sends (`z.input`: defaults
 * may be left out).
 */
import { z } from "zod";
import { BlockEvent, DoneEvent, EditEvent, StartEvent, StepEvent, VerifyEvent } from "./events.ts";
import {
  EditRequest,
  GenerateFields,
  ModelName,
  ONE_INPUT,
  ONE_UNMASKING,
  oneInput,
  oneUnmasking,
  VerifyRequest,
} from "./requests.ts";
import { CodeEdit, Verification } from "./results.ts";

const model = ModelName;

export const GenerateBody = GenerateFields.extend({
  model,
  max_tokens: z.number().int().min(1).max(4096).default(128),
})
  .refine(oneUnmasking, ONE_UNMASKING)
  .refine(oneInput, ONE_INPUT);
export type GenerateBody = z.input<typeof GenerateBody>;

export const VerifyBody = VerifyRequest.extend({ model });
export type VerifyBody = z.input<typeof VerifyBody>;

export const EditsBody = z.object({ model }).and(EditRequest);
export type EditsBody = z.input<typeof EditsBody>;

/** The answer of `/v1/verify`, and the data of a native `verify` event: whether it came from the edge's cache. */
export const VerifyResponse = Verification.extend({ cached: z.boolean() });
export type VerifyResponse = z.infer<typeof VerifyResponse>;

export const EditsResponse = z.object({
  object: z.literal("edit"),
  model: z.string(),
  code: z.string(),
  edits: z.array(CodeEdit),
  usage: z.object({ tokens: z.number().int().nonnegative(), forward_passes: z.number().int().nonnegative() }),
});
export type EditsResponse = z.infer<typeof EditsResponse>;

/** Every error the edge answers with, in OpenAI's shape, so that OpenAI clients surface it as their own. */
export const ErrorBody = z.object({
  error: z.object({ message: z.string(), type: z.string(), code: z.string(), param: z.string().nullable() }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/**
 * `POST /v1/generate`'s stream: named SSE events whose data is one of these (the event's name is
 * its `type`). The generation's own events (events.ts), with a verification saying whether it came
 * from the cache, and an error in the edge's error shape.
 */
export const NativeEvent = z.discriminatedUnion("type", [
  StartEvent,
  StepEvent,
  EditEvent,
  BlockEvent,
  VerifyEvent.extend({ cached: z.boolean() }),
  DoneEvent,
  ErrorBody.extend({ type: z.literal("error") }),
]);
export type NativeEvent = z.infer<typeof NativeEvent>;
