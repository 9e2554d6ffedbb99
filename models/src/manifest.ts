/**
 * The model manifest: the seam between Python export (models/python/export.py) and this runtime.
 * Everything the runtime needs to know about a shipped model comes from here; every file it
 * loads is checked against the sha256 recorded here before use.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

const TensorSpec = z.object({ type: z.string(), shape: z.array(z.string()) });

export const ManifestSchema = z.object({
  schema_version: z.literal(1),
  name: z.string().min(1),
  /** How the model decodes: "diffusion" (blocks of masks, denoised) or "ar" (the autoregressive twin). */
  objective: z.enum(["diffusion", "ar"]).default("diffusion"),
  architecture: z.object({
    vocab_size: z.number().int().positive(),
    d_model: z.number().int().positive(),
    n_layers: z.number().int().positive(),
    n_heads: z.number().int().positive(),
    ffn_hidden: z.number().int().positive(),
    head_dim: z.number().int().positive(),
    /** Positions the graph can encode (RoPE); context_length is what it was trained on. */
    max_positions: z.number().int().positive(),
    parameters: z.number().int().positive(),
  }),
  special_tokens: z
    .object({ pad: z.number().int(), bos: z.number().int(), eos: z.number().int(), mask: z.number().int() })
    .catchall(z.number().int()),
  context_length: z.number().int().positive(),
  block_sizes: z.array(z.number().int().positive()).min(1),
  graph: z.object({
    file: z.string(),
    inputs: z.record(z.string(), TensorSpec),
    outputs: z.record(z.string(), TensorSpec),
  }),
  files: z.record(z.string(), z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number() })),
});
export type Manifest = z.infer<typeof ManifestSchema>;

export const TOKENIZER_FILE = "tokenizer.json";

export class ModelIntegrityError extends Error {
  override name = "ModelIntegrityError";
}

/** Reads `manifest.json` from a model directory and checks every listed file's sha256. */
export async function loadManifest(modelDir: string): Promise<Manifest> {
  const manifest = ManifestSchema.parse(JSON.parse(await readFile(join(modelDir, "manifest.json"), "utf8")));
  for (const [file, { sha256 }] of Object.entries(manifest.files)) {
    const actual = createHash("sha256")
      .update(await readFile(join(modelDir, file)))
      .digest("hex");
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
