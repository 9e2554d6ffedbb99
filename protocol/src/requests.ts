/**
 * What a denoiser node is asked to do: a generation, a verification, an edit. The edge's adapters
 * send these (JSON bodies of `POST {node}/v1/generate`, `/v1/verify`, `/v1/edit`) and every
 * `Backend` takes them; the public native bodies (public.ts) are these with `model` required.
 *
 * Each names the model that serves it (`model`): a node may serve several model directories, an
 * edge several models (one pool of backends per model, adapters/src/router.ts). Absent: the first
 * model (the node's first; behind an edge, the first model its backends list).
 */
import { z } from "zod";

/** A model's name, as a node's manifest spells it and `/v1/models` lists it. */
export const ModelName = z.string().min(1).max(256);

/** One message of a conversation (`/v1/chat/completions`' messages, their text parts joined). */
export const ChatMessage = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content: z.string(),
});
export type ChatMessage = z.infer<typeof ChatMessage>;

/** The fields of a generation request (the edge's native endpoint extends them). */
export const GenerateFields = z.object({
  model: ModelName.optional(),
  /** The text the model continues (absent: ""). */
  prompt: z.string().default(""),
  /** Infilling: the text that follows the middle the model writes. */
  suffix: z.string().optional(),
  /**
   * A conversation instead of a prompt (and suffix): the node renders it as the model reads one
   * (models/src/chat.ts: the checkpoint's chat template, message text kept as text; Sprout's
   * docstring prompt for a model without one) and the model writes the assistant's answer, or
   * continues a last assistant message. Resuming (`committed`) works as with a prompt.
   */
  messages: z.array(ChatMessage).min(1).optional(),
  max_tokens: z.number().int().min(1).max(4096),
  block_size: z.number().int().min(1).max(256).optional(),
  /** Unmasking, at most one of: commit tokens at least this probable (default 0.9)… */
  threshold: z.number().gt(0).max(1).optional(),
  /** …a fixed number of denoising steps per block… */
  steps: z.number().int().min(1).max(256).optional(),
  /** …or as many tokens per step as keep their summed entropy (nats) within this. */
  entropy_bound: z.number().min(0).max(100).optional(),
  /** Edit rounds per finished block: revise visible tokens the model confidently disagrees with. */
  edit_rounds: z.number().int().min(0).max(8).optional(),
  edit_threshold: z.number().gt(0).max(1).optional(),
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
  /**
   * Resume: the token ids already streamed (the `ids` of the earlier `block` events, in order),
   * e.g. from a node that died mid-stream. With the same request otherwise (seed included), the
   * rest of the stream equals what the uninterrupted generation would have sent.
   */
  committed: z.array(z.number().int().nonnegative()).max(4096).optional(),
  /** Self-verify the finished text (a `verify` event before `done`). */
  verify: z.boolean().optional(),
});

/** At most one unmasking policy per request. */
export const oneUnmasking = (r: { threshold?: number; steps?: number; entropy_bound?: number }) =>
  [r.threshold, r.steps, r.entropy_bound].filter((v) => v !== undefined).length <= 1;
export const ONE_UNMASKING = {
  message: "give at most one of threshold, steps and entropy_bound",
  path: ["threshold"],
};

/** A conversation or a prompt (and suffix), not both. */
export const oneInput = (r: { prompt?: string; suffix?: string; messages?: unknown[] }) =>
  r.messages === undefined || (!r.prompt && !r.suffix);
export const ONE_INPUT = {
  message: "give either messages or a prompt (and suffix), not both",
  path: ["messages"],
};

export const GenerateRequest = GenerateFields.refine(oneUnmasking, ONE_UNMASKING).refine(oneInput, ONE_INPUT);
export type GenerateRequest = z.infer<typeof GenerateRequest>;

/** How plausible the model finds `code` (after `prompt`), and whether it parses. */
export const VerifyRequest = z.object({
  model: ModelName.optional(),
  code: z.string().max(200_000),
  prompt: z.string().max(200_000).optional(),
  language: z.literal("python").default("python"),
  threshold: z.number().min(0).max(1).optional(),
});
export type VerifyRequest = z.infer<typeof VerifyRequest>;

const regionsInOrder = (r: { code: string; regions?: { start: number; end: number }[] }) =>
  (r.regions ?? [])
    .toSorted((a, b) => a.start - b.start)
    .every(
      (region, i, all) =>
        region.start <= region.end &&
        region.end <= r.code.length &&
        (i === 0 || (all[i - 1]?.end ?? 0) <= region.start),
    );

/**
 * Rewrite the marked character ranges of `code` by infilling, or, without `regions`, repair it
 * (revise tokens the model confidently disagrees with).
 */
export const EditRequest = z
  .object({
    model: ModelName.optional(),
    code: z.string().max(100_000),
    /** Text the code follows (repair's context; never edited). */
    prompt: z.string().max(100_000).optional(),
    regions: z
      .array(z.object({ start: z.number().int().nonnegative(), end: z.number().int().nonnegative() }))
      .min(1)
      .max(16)
      .optional(),
    /** Repair: revise a token when the model prefers another with at least this probability (default 0.9). */
    threshold: z.number().gt(0).max(1).optional(),
    rounds: z.number().int().min(1).max(8).optional(),
    /** Regions: tokens each rewrite may take at most (default 64). */
    max_tokens: z.number().int().min(1).max(256).optional(),
    block_size: z.number().int().min(1).max(256).optional(),
  })
  .refine(regionsInOrder, {
    message: "regions must lie within the code, start ≤ end, and not overlap",
    path: ["regions"],
  });
export type EditRequest = z.infer<typeof EditRequest>;
