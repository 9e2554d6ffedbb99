/**
 * A small typed client for Sprout's public API, for the browser and for Node (fetch and web
 * streams only): the playground and the CLI use it. `generate` yields the native event stream of
 * `POST /v1/generate`, parsed by eventsource-parser; `edit` and `verify` are plain JSON calls.
 * Any answer other than 2xx throws a `SproutApiError` with the API's status, code and message.
 * Its types are the protocol's (protocol/src/public.ts), so it knows every field the edge takes;
 * it imports types only (no zod in the playground's bundle).
 */
import { EventSourceParserStream } from "eventsource-parser/stream";
import type {
  EditsBody,
  EditsResponse,
  ErrorBody,
  GenerateBody,
  NativeEvent,
  VerifyBody,
  VerifyResponse,
} from "../../../protocol/src/index.ts";

export type { NativeEvent };

export interface Connection {
  /** The edge's origin, e.g. http://127.0.0.1:8787 ("" in the browser: the page's own). */
  url: string;
  key: string;
  model?: string;
}

/** The body of `POST /v1/generate`, `/v1/edits` or `/v1/verify`: the connection names the model. */
type WithoutModel<Body> = Body extends unknown ? Omit<Body, "model"> : never;

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
      const parsed = JSON.parse(text) as Partial<ErrorBody>;
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
  request: WithoutModel<GenerateBody>,
  signal?: AbortSignal,
): AsyncGenerator<NativeEvent> {
  const response = await post(connection, "/v1/generate", request, signal);
  if (!response.body) throw new SproutApiError(502, "empty_stream", "The edge answered without a body.");
  const messages = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream());
  for await (const message of messages as unknown as AsyncIterable<{ event?: string; data: string }>) {
    if (!message.event) continue; // keep-alive comments carry no event
    const event = JSON.parse(message.data) as NativeEvent;
    if (event.type === "error") throw new SproutApiError(502, event.error.code, event.error.message);
    yield event;
  }
}

/** Rewrites the `regions` (character ranges) of `code` by infilling; without regions, repairs it. */
export async function edit(
  connection: Connection,
  request: WithoutModel<EditsBody>,
  signal?: AbortSignal,
): Promise<EditsResponse> {
  const response = await post(connection, "/v1/edits", request, signal);
  return (await response.json()) as EditsResponse;
}

export async function verify(
  connection: Connection,
  request: WithoutModel<VerifyBody>,
  signal?: AbortSignal,
): Promise<VerifyResponse> {
  const response = await post(connection, "/v1/verify", request, signal);
  return (await response.json()) as VerifyResponse;
}
