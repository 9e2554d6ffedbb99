/**
 * The model manifest: the seam between Python export (models/python/export.py) and this runtime.
 * Everything the runtime needs to know about a shipped model comes from here; every file it
 * loads is checked against the sha256 recorded here before use.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

const TensorSpec = z.object({ type: z.string(), shape: z.array(z.string()) });
const Id = z.number().int().nonnegative();

/**
 * How a model family decodes: the conventions of the sampler it was trained for, as data the
 * runtime follows (never a branch on a model's name). models/python/import_checkpoint.py writes
 * them for imported checkpoints; a manifest without them (Sprout's own, written by export.py)
 * gets Sprout's: blocks right after the prompt, a causal prompt, the finished block's keys/values
 * written by the next block's first step, confidence-threshold unmasking, token healing.
 */
export const DecodingSchema = z
  .object({
    /** 0: the logit at i predicts the token at i; 1: the logit at i−1 does (as in an AR model). */
    logit_shift: z.union([z.literal(0), z.literal(1)]),
    /**
     * Where blocks fall: `after_prompt` (the first block starts right after the prompt),
     * `absolute` (blocks of block_size from position 0: the first block holds the prompt's tail)
     * or `left_padded` (the prompt left-padded with pad, which is neither attended nor given a
     * position, to whole blocks: the same as blocks ending where the prompt does).
     */
    block_alignment: z.enum(["after_prompt", "absolute", "left_padded"]),
    /** How committed tokens attend: causally, or block-causally (a whole block sees itself). */
    prompt_attention: z.enum(["causal", "block_causal"]),
    /**
     * How a finished block's keys/values are written: `fused` or `pass` (the block rides along,
     * committed, in the next block's first forward: under a block-causal mask that computes exactly
     * the keys/values a pass of its own would), or `pass_yields_next_first_token` (a pass of its
     * own whose last logit gives the next block's first token, which is never a mask).
     */
    commit: z.enum(["fused", "pass", "pass_yields_next_first_token"]),
    /** The family's unmasking rule (unmask.ts) and its threshold. */
    unmasking: z.enum([
      "threshold",
      "low_confidence_dynamic",
      "threshold_with_forced_argmax",
      "top_k_per_step",
    ]),
    confidence_threshold: z.number().min(0).max(1).nullable(),
    /** Denoising steps per block for the rules that split a block's masks over steps. */
    steps: z.number().int().positive().nullable(),
    /** Masks are unmasked one sub-block at a time, left to right. */
    sub_block_size: z.number().int().positive().nullable(),
    /** The first generated token must begin with the prompt's last token, which is given back. */
    token_healing: z.boolean(),
    /** A prompt starts with bos (Sprout's); Qwen's tokenizers add nothing, so imported ones do not. */
    add_bos: z.boolean(),
    /**
     * `block_with_eos`: generation ends with the block holding an end token, cut there;
     * `eos_unmasked_with_no_masks_before`: it ends the moment an end token is unmasked with no mask
     * before it, mid-block.
     */
    stop: z.enum(["block_with_eos", "eos_unmasked_with_no_masks_before"]),
    /** Once an end token is unmasked, the masks after it are settled as end tokens (Sprout's). */
    settle_after_eos: z.boolean(),
    /**
     * The last block under max_tokens: `partial` (only as many masks as tokens are left) or `full`
     * (a whole block denoised, then cut to max_tokens, as SDAR's and Fast-dLLM v2's samplers do).
     */
    last_block: z.enum(["partial", "full"]),
    /**
     * Control tokens are never chosen (Sprout's). Imported families choose from the whole
     * vocabulary, as their samplers do (their models never pick their mask token; sampling at a
     * temperature never draws it).
     */
    suppress_control_tokens: z.boolean(),
  })
  .refine((d) => d.commit !== "pass_yields_next_first_token" || d.logit_shift === 1, {
    message: "a commit pass yields the next block's first token only under logit_shift 1",
  });
export type Decoding = z.infer<typeof DecodingSchema>;

/** Sprout's own conventions (models trained here; their manifests carry no `decoding`). */
export const SPROUT_DECODING: Decoding = {
  logit_shift: 0,
  block_alignment: "after_prompt",
  prompt_attention: "causal",
  commit: "fused",
  unmasking: "threshold",
  confidence_threshold: 0.9,
  steps: null,
  sub_block_size: null,
  token_healing: true,
  add_bos: true,
  stop: "block_with_eos",
  settle_after_eos: true,
  last_block: "partial",
  suppress_control_tokens: true,
};

export const ManifestSchema = z.object({
  schema_version: z.literal(1),
  name: z.string().min(1),
  /** How the model decodes: "diffusion" (blocks of masks, denoised) or "ar" (the autoregressive twin). */
  objective: z.enum(["diffusion", "ar"]).default("diffusion"),
  architecture: z
    .object({
      vocab_size: z.number().int().positive(),
      d_model: z.number().int().positive(),
      n_layers: z.number().int().positive(),
      n_heads: z.number().int().positive(),
      /** Key/value heads (grouped-query attention); the cache is `[layers, batch, kv_heads, …]`. */
      kv_heads: z.number().int().positive().optional(),
      ffn_hidden: z.number().int().positive(),
      head_dim: z.number().int().positive(),
      /** Positions the graph can encode (RoPE); context_length is what it was trained on. */
      max_positions: z.number().int().positive(),
      parameters: z.number().int().positive(),
    })
    .passthrough()
    .transform((a) => ({ ...a, kv_heads: a.kv_heads ?? a.n_heads })),
  /**
   * Special ids. Sprout's own name one `eos`; imported checkpoints list every id their
   * generation config stops on (`eos_ids`) and may have no bos or pad. Both become `eos_ids`
   * (all end ids) and `eos` (the first: the one the runtime writes).
   */
  special_tokens: z
    .object({
      mask: Id,
      pad: Id.nullish(),
      bos: Id.nullish(),
      eos: Id.optional(),
      eos_ids: z.array(Id).min(1).optional(),
      fim_prefix: Id.optional(),
      fim_suffix: Id.optional(),
      fim_middle: Id.optional(),
    })
    .catchall(Id)
    .refine((s) => s.eos !== undefined || s.eos_ids !== undefined, "special_tokens needs eos or eos_ids")
    .transform(({ eos, eos_ids, ...rest }) => {
      const ids = eos_ids ?? [eos as number];
      return { ...rest, eos: eos ?? (ids[0] as number), eos_ids: ids };
    }),
  context_length: z.number().int().positive(),
  block_sizes: z.array(z.number().int().positive()).min(1),
  decoding: DecodingSchema.default(SPROUT_DECODING),
  /** The checkpoint's Jinja chat template (chat.ts renders it); none: Sprout's docstring prompt. */
  chat_template: z.string().nullish(),
  graph: z.object({
    file: z.string(),
    inputs: z.record(z.string(), TensorSpec),
    outputs: z.record(z.string(), TensorSpec),
  }),
  files: z.record(z.string(), z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number() })),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/** Every control id the manifest names (mask, end ids, pad, bos, infilling markers…). */
export function controlTokenIds(manifest: Manifest): number[] {
  const { eos_ids, ...named } = manifest.special_tokens;
  const ids = Object.values(named).filter((id): id is number => typeof id === "number");
  return [...new Set([...ids, ...eos_ids])];
}

export const TOKENIZER_FILE = "tokenizer.json";

export class ModelIntegrityError extends Error {
  override name = "ModelIntegrityError";
}

/** A file's sha256, streamed (an imported checkpoint's weights are gigabytes). */
async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 24 })) hash.update(chunk);
  return hash.digest("hex");
}

/** Reads `manifest.json` from a model directory and checks every listed file's sha256. */
export async function loadManifest(modelDir: string): Promise<Manifest> {
  const manifest = ManifestSchema.parse(JSON.parse(await readFile(join(modelDir, "manifest.json"), "utf8")));
  for (const [file, { sha256 }] of Object.entries(manifest.files)) {
    const actual = await sha256Of(join(modelDir, file));
    if (actual !== sha256) {
      throw new ModelIntegrityError(`${file} does not match its sha256 in the manifest (model corrupted?)`);
    }
  }
  for (const required of [manifest.graph.file, TOKENIZER_FILE]) {
    if (!(required in manifest.files))
      throw new ModelIntegrityError(`${required} is not listed with a sha256`);
  }
  return manifest;
}
