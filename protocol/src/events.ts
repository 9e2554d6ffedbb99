/**
 * The events of a generation, in order: `start`, then per block (`step`…, `edit`…, `block`),
 * `verify` if asked, then `done` — or `error`. The model runtime yields them, the node streams
 * them as SSE (`event: <type>`, `data: <event as JSON>`), every `Backend` yields them, and the
 * edge's native stream sends them on (public.ts). Two unions: `NodeEvent`, what a Sprout node
 * (and the runtime under it) sends, every field present; and `GenerateEvent`, what any backend
 * yields, where the fields only a diffusion node can know are optional (an OpenAI-compatible
 * upstream has no token ids or steps: it leaves them out rather than guess).
 */
import { z } from "zod";
import { Verification } from "./results.ts";

/** stop: an end token or a stop sequence; length: max_tokens; cancelled: the caller's signal. */
export const FinishReason = z.enum(["stop", "length", "cancelled"]);
export type FinishReason = z.infer<typeof FinishReason>;

export const Usage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  /** Forward passes of the graph this generation took part in (prefill and cache updates ride along with steps). */
  forward_passes: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof Usage>;

export const NodeStartEvent = z.object({
  type: z.literal("start"),
  model: z.string(),
  prompt_tokens: z.number().int().nonnegative(),
  block_size: z.number().int().positive(),
});

/** One denoising step: how many masked tokens it committed, how many are still masked, the block as it stands. */
export const StepEvent = z.object({
  type: z.literal("step"),
  block: z.number().int().nonnegative(),
  step: z.number().int().positive(),
  committed: z.number().int().nonnegative(),
  remaining: z.number().int().nonnegative(),
  /** Each position's token text, null while still masked. */
  state: z.array(z.string().nullable()),
});

/** One revised token: its position in the block, its text before and after. */
export const EditedToken = z.object({
  position: z.number().int().nonnegative(),
  from: z.string(),
  to: z.string(),
});
export type EditedToken = z.infer<typeof EditedToken>;

/** An edit round over a block with no masks left, before the block is final: what it revised. */
export const EditEvent = z.object({
  type: z.literal("edit"),
  block: z.number().int().nonnegative(),
  round: z.number().int().positive(),
  edits: z.array(EditedToken),
});

/**
 * A finished block: the text it makes visible. It can be "" or hold text kept back from an
 * earlier block (an unfinished multi-byte character, a possible start of a stop sequence).
 */
export const NodeBlockEvent = z.object({
  type: z.literal("block"),
  index: z.number().int().nonnegative(),
  text: z.string(),
  /** Tokens the block holds. */
  tokens: z.number().int().nonnegative(),
  /** Forwards it took, edit rounds included. */
  steps: z.number().int().nonnegative(),
  /** Its token ids: what a resume sends back as `committed`. */
  ids: z.array(z.number().int().nonnegative()),
});

export const VerifyEvent = Verification.extend({ type: z.literal("verify") });

export const DoneEvent = z.object({ type: z.literal("done"), finish_reason: FinishReason, usage: Usage });

/** The backend failed mid-stream (before the stream, a backend answers with an HTTP error instead). */
export const ErrorEvent = z.object({ type: z.literal("error"), code: z.string(), message: z.string() });

/** What a Sprout node streams (`POST {node}/v1/generate`). */
export const NodeEvent = z.discriminatedUnion("type", [
  NodeStartEvent,
  StepEvent,
  EditEvent,
  NodeBlockEvent,
  VerifyEvent,
  DoneEvent,
  ErrorEvent,
]);
export type NodeEvent = z.infer<typeof NodeEvent>;

/** A backend's `start`: a backend that cannot count the prompt's tokens or has no blocks leaves those out. */
export const StartEvent = NodeStartEvent.partial({ prompt_tokens: true, block_size: true });

/** A backend's `block`: without `ids` a stream cannot be resumed elsewhere. */
export const BlockEvent = NodeBlockEvent.partial({ tokens: true, steps: true, ids: true });

/** What any backend yields (a node's events are these with every field present). */
export const GenerateEvent = z.discriminatedUnion("type", [
  StartEvent,
  StepEvent,
  EditEvent,
  BlockEvent,
  VerifyEvent,
  DoneEvent,
  ErrorEvent,
]);
export type GenerateEvent = z.infer<typeof GenerateEvent>;

const isCount = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0;

/**
 * `NodeEvent.safeParse(value)`'s answer, cheaply for the events every stream is made of (`start`,
 * `block`, `done`, and `step` with `emit_steps`): hand-written checks of exactly the fields of
 * their schemas (a new object of those fields, unknown keys dropped, as zod does); the rarer
 * events (`edit`, `verify`, `error`) through the schema itself. The adapter reads every event of every stream with it
 * (adapters/src/denoiser-node.ts); protocol.test.ts holds it to the schema's verdict on
 * arbitrary values. Undefined: not an event of this protocol.
 */
export function parseNodeEvent(value: unknown): NodeEvent | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const event = value as Record<string, unknown>;
  if (event.type === "block") {
    const { index, text, tokens, steps, ids } = event;
    if (!isCount(index) || typeof text !== "string" || !isCount(tokens) || !isCount(steps)) return undefined;
    if (!Array.isArray(ids)) return undefined;
    for (const id of ids) if (!isCount(id)) return undefined;
    return { type: "block", index, text, tokens, steps, ids: ids as number[] };
  }
  if (event.type === "step") {
    const { block, step, committed, remaining, state } = event;
    if (!isCount(block) || !isCount(step) || step === 0 || !isCount(committed) || !isCount(remaining))
      return undefined;
    if (!Array.isArray(state)) return undefined;
    for (const token of state) if (token !== null && typeof token !== "string") return undefined;
    return { type: "step", block, step, committed, remaining, state: state as (string | null)[] };
  }
  if (event.type === "start") {
    const { model, prompt_tokens, block_size } = event;
    if (typeof model !== "string" || !isCount(prompt_tokens) || !isCount(block_size) || block_size === 0)
      return undefined;
    return { type: "start", model, prompt_tokens, block_size };
  }
  if (event.type === "done") {
    const { finish_reason, usage } = event;
    if (finish_reason !== "stop" && finish_reason !== "length" && finish_reason !== "cancelled")
      return undefined;
    if (typeof usage !== "object" || usage === null || Array.isArray(usage)) return undefined;
    const { prompt_tokens, completion_tokens, forward_passes } = usage as Record<string, unknown>;
    if (!isCount(prompt_tokens) || !isCount(completion_tokens) || !isCount(forward_passes)) return undefined;
    return { type: "done", finish_reason, usage: { prompt_tokens, completion_tokens, forward_passes } };
  }
  const parsed = NodeEvent.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}
