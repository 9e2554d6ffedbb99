/** What a verification and an edit answer with (JSON from the node; the public bodies add to them). */
import { z } from "zod";

/** tree-sitter's verdict on the code: where it first breaks, if it does (lines 1-based, columns in UTF-16 units). */
export const SyntaxResult = z.union([
  z.object({ ok: z.literal(true) }),
  z.object({
    ok: z.literal(false),
    error: z.object({ line: z.number().int(), column: z.number().int(), message: z.string() }),
  }),
]);
export type SyntaxResult = z.infer<typeof SyntaxResult>;

export const Verification = z.object({
  syntax: SyntaxResult,
  /** Geometric-mean probability of the code's tokens, each re-masked once (0…1]. */
  score: z.number().min(0).max(1),
  bits_per_token: z.number().nonnegative(),
  /** Tokens of the code scored: what the verification consumed. */
  tokens: z.number().int().nonnegative(),
  verdict: z.enum(["plausible", "doubtful", "syntax_error"]),
  forward_passes: z.number().int().nonnegative(),
});
export type Verification = z.infer<typeof Verification>;

/** One change, as a character range of the original code with its text before and after. */
export const CodeEdit = z.object({
  start: z.number().int(),
  end: z.number().int(),
  before: z.string(),
  after: z.string(),
});
export type CodeEdit = z.infer<typeof CodeEdit>;

export const EditResult = z.object({
  code: z.string(),
  edits: z.array(CodeEdit),
  /** Tokens the model read and wrote for it (the code, its context, what rewrites wrote): what the edit consumed. */
  tokens: z.number().int().nonnegative(),
  forward_passes: z.number().int().nonnegative(),
});
export type EditResult = z.infer<typeof EditResult>;
