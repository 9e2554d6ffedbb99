/**
 * The one contract between the edge and anything that generates text (think of the AI SDK's
 * `doStream`): a request in, an async stream of the protocol's events out, an AbortSignal
 * honoured. Each implementation maps its own wire onto the protocol's messages
 * (protocol/src): `DenoiserNodeBackend` (a Sprout denoiser node over HTTP),
 * `OpenAiCompatibleBackend` (any OpenAI-compatible upstream), `BackendPool` (routing among
 * many that serve one model, with failover) and `ModelRouter` (one pool per model, each request
 * to its model's); the edge wraps whichever it is given in its metering (apps/edge/src/metered.ts).
 *
 * Every request names its model (`model`; absent: the backend's first). A backend says which
 * models it serves with `models()`, learnt from the backend itself (a node's /readyz, an
 * upstream's /v1/models), so that nothing is configured twice.
 */
import type {
  EditRequest,
  EditResult,
  GenerateEvent,
  GenerateRequest,
  Verification,
  VerifyRequest,
} from "../../protocol/src/index.ts";

export interface StreamOptions {
  signal?: AbortSignal;
}

/** A model a backend serves, as its backend says. */
export interface ServedModel {
  /** Its name: what requests name in `model` and `/v1/models` lists. */
  id: string;
  /** What identifies its weights (a Sprout node: its graph's sha256), where the backend says. */
  version?: string;
  /** The tokens of context a request may fill, where the backend says. */
  context_length?: number;
}

export interface Backend {
  readonly id: string;
  /** Starts generating; rejects with a `BackendError` when nothing could be started. */
  doStream(request: GenerateRequest, options?: StreamOptions): Promise<AsyncIterable<GenerateEvent>>;
  /** Self-verification of a piece of code, where the backend can (Sprout nodes can). */
  verify?(request: VerifyRequest, options?: StreamOptions): Promise<Verification>;
  /** Whether it is ready to serve (a Sprout node's /readyz), where the backend can say. */
  health?(): Promise<boolean>;
  /** Edits of given code (regions rewritten, or a repair), where the backend can. */
  edit?(request: EditRequest, options?: StreamOptions): Promise<EditResult>;
  /**
   * The models it serves, the one serving requests that name none first; rejects (a
   * `BackendError`) when it cannot say now. A backend without it serves no model by name.
   */
  models?(options?: StreamOptions): Promise<ServedModel[]>;
  /**
   * The model serving a request that names `requested` (absent: the default); rejects with
   * `modelNotFound` (404) when none does, asking its members again first where it learns its
   * models from them (router.ts), so that a model that just came up is found at once.
   */
  model?(requested: string | undefined): Promise<ServedModel>;
}

export type BackendErrorCode =
  | "backend_unavailable" // could not reach it, or it is not ready
  | "backend_auth" // it refused our credentials: a configuration error
  | "invalid_request" // it refused the request itself
  | "model_not_found" // the request names a model it does not serve
  | "bad_response"; // it answered something that breaks the protocol

/**
 * An error with the HTTP status the edge should answer with. `message` is safe to show a client
 * (it never names a backend's address); `detail` says which backend and what happened, for logs.
 */
export class BackendError extends Error {
  override name = "BackendError";
  constructor(
    readonly code: BackendErrorCode,
    message: string,
    readonly status: 400 | 404 | 502 | 503,
    readonly detail: string = message,
  ) {
    super(message);
  }
}

/** What clients are told when a backend cannot serve, and when it answers out of protocol. */
export const UNAVAILABLE = "The model backend is unavailable; try again shortly.";
export const BROKEN = "The model backend sent a broken response.";

/** A backend that could not be reached at all (`reason`: what fetch said, for logs only). */
export const unreachable = (id: string, reason: unknown) =>
  new BackendError(
    "backend_unavailable",
    UNAVAILABLE,
    503,
    `${id} unreachable: ${reason instanceof Error ? reason.message : String(reason)}`,
  );

/**
 * A backend's refusal by HTTP status: its reason for refusing a request (400, 422) is about the
 * request and the client may read it; refused credentials are the gateway's configuration error;
 * anything else means it cannot serve now. `said` is the backend's own message.
 */
export function refusal(status: number, said: string, id: string): BackendError {
  const detail = `${id} answered HTTP ${status}: ${said}`;
  if (status === 400 || status === 422) return new BackendError("invalid_request", said, 400);
  if (status === 401 || status === 403) {
    return new BackendError(
      "backend_auth",
      "The model backend refused the gateway's credentials.",
      502,
      detail,
    );
  }
  return new BackendError("backend_unavailable", UNAVAILABLE, 503, detail);
}

/** A request named `requested`, which is not among `available` (the models served, in order). */
export const modelNotFound = (requested: string, available: readonly string[]) =>
  new BackendError(
    "model_not_found",
    `The model '${requested}' does not exist. Available models: ${available.join(", ") || "none"}.`,
    404,
  );
