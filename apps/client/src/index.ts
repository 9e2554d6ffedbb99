/**
 * A small typed client for Sprout's public API, for the browser and for Node (fetch and web
 * streams only): the playground and the CLI use it. `generate` yields the native event stream of
 * `POST /v1/generate`, parsed by eventsource-parser; `edit` and `verify` are plain JSON calls.
 * Any answer other than 2xx throws a `SproutApiError` with the API's status, code and message.
 */
import { EventSourceParserStream } from "eventsource-parser/stream";
import type { EditResult, NodeEvent, Verification } from "../../../adapters/src/protocol.ts";

export interface Connection {
  /** The edge's origin, e.g. http://127.0.0.1:8787 ("" in the browser: the page's own). */
  url: string;
  key: string;
  model?: string;
}

/** The body of `POST /v1/generate`, without `model` (see adapters/src/protocol.ts). */
export interface GenerateRequest {
  prompt: string;
  suffix?: string;
  max_tokens?: number;
  block_size?: number;
  threshold?: number;
  steps?: number;
  entropy_bound?: number;
  edit_rounds?: number;
  emit_steps?: boolean;
  temperature?: number;
  seed?: number;
  verify?: boolean;
}

/**
 * The native stream's events as the edge sends them: the node's events (adapters/src/protocol.ts)
 * without the protocol version, and the verification flattened with whether it came from the cache.
 */
export type GenerateEvent =
  | Exclude<NodeEvent, { type: "start" | "verify" }>
  | Omit<Extract<NodeEvent, { type: "start" }>, "v">
  | ({ type: "verify"; cached: boolean } & Verification);

export class SproutApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "SproutApiError";
  }
}

const DEFAULT_MODEL = "sprout-tiny";

async function post(
  connection: Connection,
  path: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(`${connection.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${connection.key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: connection.model ?? DEFAULT_MODEL, ...(body as object) }),
      signal,
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new SproutApiError(
      0,
      "unreachable",
      `Could not reach ${connection.url || "the edge"}: ${(error as Error).message}`,
    );
  }
  if (!response.ok) {
    const text = await response.text();
    let code = "http_error";
    let message = `HTTP ${response.status}`;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      code = parsed.error?.code ?? code;
      message = parsed.error?.message ?? message;
    } catch {} // not JSON: keep the status line
    throw new SproutApiError(response.status, code, message);
  }
  return response;
}

/** Streams a generation. An `error` event mid-stream is thrown as a `SproutApiError` (status 502). */
export async function* generate(
  connection: Connection,
  request: GenerateRequest,
  signal?: AbortSignal,
): AsyncGenerator<GenerateEvent> {
  const response = await post(connection, "/v1/generate", request, signal);
  if (!response.body) throw new SproutApiError(502, "empty_stream", "The edge answered without a body.");
  const messages = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream());
  for await (const message of messages as unknown as AsyncIterable<{ event?: string; data: string }>) {
    if (!message.event) continue; // keep-alive comments carry no event
    const event = { type: message.event, ...JSON.parse(message.data) } as GenerateEvent;
    if (event.type === "error") throw new SproutApiError(502, event.code, event.message);
    yield event;
  }
}

export interface EditRequest {
  code: string;
  prompt?: string;
  /** Character ranges of `code` to rewrite; none: repair. */
  regions?: { start: number; end: number }[];
  threshold?: number;
  max_tokens?: number;
}

export async function edit(connection: Connection, request: EditRequest, signal?: AbortSignal) {
  const response = await post(connection, "/v1/edits", request, signal);
  return (await response.json()) as Omit<EditResult, "forward_passes"> & {
    usage: { forward_passes: number };
  };
}

export async function verify(
  connection: Connection,
  request: { code: string; prompt?: string },
  signal?: AbortSignal,
) {
  const response = await post(connection, "/v1/verify", request, signal);
  return (await response.json()) as Verification & { cached: boolean };
}
