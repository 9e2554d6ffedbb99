/** Sprout's model runtime: load a shipped model directory, then decode it as a stream of events. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type DecodeOptions, type Decoder, decode } from "./decode.ts";
import type { DecodeEvent } from "./events.ts";
import { loadManifest, type Manifest, TOKENIZER_FILE } from "./manifest.ts";
import { DenoiserSession } from "./session.ts";
import { TextTokenizer } from "./tokenizer.ts";

export { DEFAULT_THRESHOLD, DecodeInputError, type DecodeOptions } from "./decode.ts";
export type { DecodeEvent, FinishReason, Usage } from "./events.ts";
export { type Manifest, ModelIntegrityError } from "./manifest.ts";

export interface Model {
  readonly manifest: Manifest;
  generate(options: DecodeOptions): AsyncGenerator<DecodeEvent>;
  close(): Promise<void>;
}

/** Loads `manifest.json`, verifies every file's sha256, and opens the graph and tokenizer. */
export async function loadModel(modelDir: string): Promise<Model> {
  const manifest = await loadManifest(modelDir);
  if (manifest.objective !== "diffusion") {
    throw new Error(
      `${manifest.name} is an autoregressive model; this runtime decodes block-diffusion models`,
    );
  }
  const tokenizer = await TextTokenizer.fromFile(join(modelDir, TOKENIZER_FILE));
  const session = await DenoiserSession.create(join(modelDir, manifest.graph.file), manifest);
  const decoder: Decoder = { manifest, session, tokenizer };
  return {
    manifest,
    generate: (options) => decode(decoder, options),
    close: () => decoder.session.release(),
  };
}

/** The model that ships in this repository. */
export const SHIPPED_MODEL_DIR = fileURLToPath(new URL("../sprout-tiny/", import.meta.url));
