/**
 * The wire protocol between the edge's adapters and denoiser nodes, version 1.
 *
 * Request: `POST {node}/v1/generate` with `Authorization: Bearer <node secret>` and a JSON
 * `NodeGenerateRequest`. Response: `text/event-stream`; each SSE message has `event: <type>` and
 * `data: <NodeEvent as JSON>`, in the order start, (step…, edit…, block)…, verify if asked, then done or error.
 * `POST {node}/v1/verify` answers a JSON `Verification`, `POST {node}/v1/edit` an `EditResult`.
 * Errors before the stream starts are JSON `{error: {code, message}}` with an HTTP status.
 *
 * One zod schema per message; TypeScript types are inferred from them. Both sides validate.
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 1;

/** The fields of a generation request (the edge's native endpoint extends them). */
export const GenerateFields = z.object({
  prompt: z.string(),
  /** Infilling: the text that follows the middle the model writes. */
  suffix: z.string().optional(),
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

export const NodeGenerateRequest = GenerateFields.refine(oneUnmasking, ONE_UNMASKING);
export type NodeGenerateRequest = z.infer<typeof NodeGenerateRequest>;

/** `POST {node}/v1/verify`: how plausible the model finds `code` (after `prompt`), and whether it parses. */
export const NodeVerifyRequest = z.object({
  code: z.string().max(200_000),
  prompt: z.string().max(200_000).optional(),
  language: z.literal("python").default("python"),
  threshold: z.number().min(0).max(1).optional(),
});
export type NodeVerifyRequest = z.infer<typeof NodeVerifyRequest>;

export const Verification = z.object({
  syntax: z.union([
    z.object({ ok: z.literal(true) }),
    z.object({
      ok: z.literal(false),
      error: z.object({ line: z.number().int(), column: z.number().int(), message: z.string() }),
    }),
  ]),
  /** Geometric-mean probability of the code's tokens, each re-masked once (0…1]. */
  score: z.number().min(0).max(1),
  bits_per_token: z.number().nonnegative(),
  tokens: z.number().int().nonnegative(),
  verdict: z.enum(["plausible", "doubtful", "syntax_error"]),
  forward_passes: z.number().int().nonnegative(),
});
export type Verification = z.infer<typeof Verification>;

/**
 * `POST {node}/v1/edit`: rewrite the marked character ranges of `code` by infilling, or, without
 * `regions`, repair it (revise tokens the model confidently disagrees with).
 */
export const NodeEditRequest = z
  .object({
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
  .refine(
    (r) =>
      (r.regions ?? [])
        .toSorted((a, b) => a.start - b.start)
        .every(
          (region, i, all) =>
            region.start <= region.end &&
            region.end <= r.code.length &&
            (i === 0 || (all[i - 1]?.end ?? 0) <= region.start),
        ),
    { message: "regions must lie within the code, start ≤ end, and not overlap", path: ["regions"] },
  );
export type NodeEditRequest = z.infer<typeof NodeEditRequest>;

export const EditResult = z.object({
  code: z.string(),
  edits: z.array(
    z.object({ start: z.number().int(), end: z.number().int(), before: z.string(), after: z.string() }),
  ),
  forward_passes: z.number().int().nonnegative(),
});
export type EditResult = z.infer<typeof EditResult>;

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
    /** The block as it stands: each position's token text, null while still masked. */
    state: z.array(z.string().nullable()),
  }),
  z.object({
    type: z.literal("edit"),
    block: z.number().int().nonnegative(),
    round: z.number().int().positive(),
    edits: z.array(z.object({ position: z.number().int().nonnegative(), from: z.string(), to: z.string() })),
  }),
  z.object({
    type: z.literal("block"),
    index: z.number().int().nonnegative(),
    text: z.string(),
    tokens: z.number().int().nonnegative(),
    steps: z.number().int().nonnegative(),
    ids: z.array(z.number().int().nonnegative()),
  }),
  z.object({ type: z.literal("verify"), verification: Verification }),
  z.object({
    type: z.literal("done"),
    finish_reason: z.enum(["stop", "length", "cancelled"]),
    usage: Usage,
  }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
]);
export type NodeEvent = z.infer<typeof NodeEvent>;

export const NodeErrorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
