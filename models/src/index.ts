/** Sprout's model runtime: load a shipped model directory, then decode it as a stream of events. */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AutoregressiveGeneration } from "./autoregressive.ts";
import { DiffusionGeneration } from "./decode.ts";
import {
  CodeRepair,
  type EditResult,
  type RegionOptions,
  RegionRewrite,
  type RepairOptions,
} from "./edit.ts";
import type { DecodeEvent } from "./events.ts";
import type { DecodeOptions, Decoder, Generation } from "./generation.ts";
import { loadManifest, type Manifest, TOKENIZER_FILE } from "./manifest.ts";
import { DenoiserSession, type SessionOptions } from "./session.ts";
import { TextTokenizer } from "./tokenizer.ts";
import { startVerification, type Verification, type VerifyOptions } from "./verify.ts";
import { resultAlone, runAlone, type Work } from "./work.ts";

export { type ChatMessage, type ChatOptions, chatPrompt, chatPromptIds, hasChatTemplate } from "./chat.ts";
export type { CodeEdit, EditResult, RegionOptions, RepairOptions } from "./edit.ts";
export type { DecodeEvent, EditedToken, FinishReason, Usage } from "./events.ts";
export { DEFAULT_EDIT_THRESHOLD, DEFAULT_THRESHOLD, type DecodeOptions, Generation } from "./generation.ts";
export { type Manifest, ModelIntegrityError } from "./manifest.ts";
export { DecodeInputError } from "./prompt.ts";
export type { DenoiserSession, ForwardInput, ForwardResult, SessionOptions } from "./session.ts";
export type { SyntaxResult } from "./syntax.ts";
export { DEFAULT_VERIFY_THRESHOLD, type Verification, type VerifyOptions } from "./verify.ts";
export { onlyResult, type Work, WorkCancelledError } from "./work.ts";

export interface LoadOptions extends SessionOptions {
  /** Caps the context a request may fill below the manifest's context_length (a node's setting). */
  maxContext?: number;
}

export interface Model {
  readonly manifest: Manifest;
  /** Tokens of context a request may fill: the manifest's context_length, or `maxContext` below it. */
  readonly contextLength: number;
  readonly session: DenoiserSession;
  /**
   * A generation to drive yourself (work.ts: a scheduler batching many; its `start` event comes
   * before any forward); throws DecodeInputError for a bad request.
   */
  start(options: DecodeOptions): Generation;
  /** The same for the other work: a rewrite of marked character ranges by infilling (edit.ts)… */
  startRewrite(options: RegionOptions): Work<EditResult>;
  /** …a repair: revising tokens of unmarked code the model confidently disagrees with (edit.ts)… */
  startRepair(options: RepairOptions): Work<EditResult>;
  /** …and self-verification of a piece of code, once its syntax is checked (verify.ts). */
  startVerification(options: VerifyOptions): Promise<Work<Verification>>;
  /** Decodes one request by itself: its events in order. */
  generate(options: DecodeOptions): AsyncGenerator<DecodeEvent>;
  /** Each of the others, run by itself. */
  verify(options: VerifyOptions): Promise<Verification>;
  rewrite(options: RegionOptions): Promise<EditResult>;
  repair(options: RepairOptions): Promise<EditResult>;
  close(): Promise<void>;
}

/**
 * Loads `manifest.json`, verifies every file's sha256, and opens the graph and tokenizer. A
 * block-diffusion model decodes block by block; an autoregressive one (the twin) token by token.
 */
export async function loadModel(
  modelDir: string,
  { maxContext, ...sessionOptions }: LoadOptions = {},
): Promise<Model> {
  if (maxContext !== undefined && !(Number.isInteger(maxContext) && maxContext > 0)) {
    throw new Error(`maxContext must be a positive integer, not ${maxContext}`);
  }
  const manifest = await loadManifest(modelDir);
  const contextLength = Math.min(manifest.context_length, maxContext ?? Number.POSITIVE_INFINITY);
  const tokenizer = await TextTokenizer.fromFile(join(modelDir, TOKENIZER_FILE));
  const session = await DenoiserSession.create(join(modelDir, manifest.graph.file), manifest, sessionOptions);
  const decoder: Decoder = { manifest, session, tokenizer, contextLength };
  const start = (options: DecodeOptions): Generation =>
    manifest.objective === "ar"
      ? new AutoregressiveGeneration(decoder, options)
      : new DiffusionGeneration(decoder, options);
  return {
    manifest,
    contextLength,
    session,
    start,
    startRewrite: (options) => new RegionRewrite(decoder, options),
    startRepair: (options) => new CodeRepair(decoder, options),
    startVerification: (options) => startVerification(decoder, options),
    async *generate(options) {
      const generation = start(options);
      yield generation.start;
      yield* runAlone(generation, session, options.signal);
    },
    verify: async (options) => resultAlone(await startVerification(decoder, options), session),
    rewrite: async (options) => resultAlone(new RegionRewrite(decoder, options), session),
    repair: async (options) => resultAlone(new CodeRepair(decoder, options), session),
    close: () => session.release(),
  };
}

/** The model that ships in this repository, and its autoregressive twin. */
export const SHIPPED_MODEL_DIR = fileURLToPath(new URL("../sprout-tiny/", import.meta.url));
export const TWIN_MODEL_DIR = fileURLToPath(new URL("../sprout-tiny-ar/", import.meta.url));
