/** Sprout's model runtime: load a shipped model directory, then decode it as a stream of events. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoregressiveGeneration } from "./autoregressive.ts";
import { DiffusionGeneration } from "./decode.ts";
import {
  type EditResult,
  type RegionOptions,
  type RepairOptions,
  repairCode,
  rewriteRegions,
} from "./edit.ts";
import type { DecodeEvent } from "./events.ts";
import { type DecodeOptions, type Decoder, type Generation, runAlone } from "./generation.ts";
import { loadManifest, type Manifest, TOKENIZER_FILE } from "./manifest.ts";
import { DenoiserSession, type SessionOptions } from "./session.ts";
import { TextTokenizer } from "./tokenizer.ts";
import { type Verification, type VerifyOptions, verifyCode } from "./verify.ts";

export type { CodeEdit, EditResult, RegionOptions, RepairOptions } from "./edit.ts";
export type { DecodeEvent, EditedToken, FinishReason, Usage } from "./events.ts";
export { DEFAULT_EDIT_THRESHOLD, DEFAULT_THRESHOLD, type DecodeOptions, Generation } from "./generation.ts";
export { type Manifest, ModelIntegrityError } from "./manifest.ts";
export { DecodeInputError } from "./prompt.ts";
export type { DenoiserSession, ForwardInput, ForwardResult, SessionOptions } from "./session.ts";
export type { SyntaxResult } from "./syntax.ts";
export { DEFAULT_VERIFY_THRESHOLD, type Verification, type VerifyOptions } from "./verify.ts";

export interface Model {
  readonly manifest: Manifest;
  readonly session: DenoiserSession;
  /** A generation to drive yourself (a scheduler batching many); throws DecodeInputError for a bad request. */
  start(options: DecodeOptions): Generation;
  /** Decodes one request by itself: its events in order. */
  generate(options: DecodeOptions): AsyncGenerator<DecodeEvent>;
  /** Self-verification of a piece of code: the model's score and a syntax check (verify.ts). */
  verify(options: VerifyOptions): Promise<Verification>;
  /** Rewrites marked character ranges by infilling (edit.ts). */
  rewrite(options: RegionOptions): Promise<EditResult>;
  /** Revises tokens of unmarked code the model confidently disagrees with (edit.ts). */
  repair(options: RepairOptions): Promise<EditResult>;
  close(): Promise<void>;
}

/**
 * Loads `manifest.json`, verifies every file's sha256, and opens the graph and tokenizer. A
 * block-diffusion model decodes block by block; an autoregressive one (the twin) token by token.
 */
export async function loadModel(modelDir: string, sessionOptions?: SessionOptions): Promise<Model> {
  const manifest = await loadManifest(modelDir);
  const tokenizer = await TextTokenizer.fromFile(join(modelDir, TOKENIZER_FILE));
  const session = await DenoiserSession.create(join(modelDir, manifest.graph.file), manifest, sessionOptions);
  const decoder: Decoder = { manifest, session, tokenizer };
  const start = (options: DecodeOptions): Generation =>
    manifest.objective === "ar"
      ? new AutoregressiveGeneration(decoder, options)
      : new DiffusionGeneration(decoder, options);
  return {
    manifest,
    session,
    start,
    async *generate(options) {
      yield* runAlone(start(options), session, options.signal);
    },
    verify: (options) => verifyCode(decoder, options),
    rewrite: (options) => rewriteRegions(decoder, options),
    repair: (options) => repairCode(decoder, options),
    close: () => session.release(),
  };
}

/** The model that ships in this repository, and its autoregressive twin. */
export const SHIPPED_MODEL_DIR = fileURLToPath(new URL("../sprout-tiny/", import.meta.url));
export const TWIN_MODEL_DIR = fileURLToPath(new URL("../sprout-tiny-ar/", import.meta.url));
