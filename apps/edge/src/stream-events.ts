/**
 * Streaming a generation to the client as SSE, for the OpenAI routes and the native one alike:
 * the backend's stream is opened first, so that a failure before the first byte (backend down,
 * request refused) still gets its HTTP status; a client that leaves aborts the backend's work;
 * silence gets keep-alive comments (sse.ts); an `error` event or a failure after the first byte
 * is written as the route's error message (the status is sent by then); the stream's metering
 * is the backend's (metered.ts). A route says only how each event is written.
 */
import type { Context } from "hono";
import { type SSEMessage, streamSSE } from "hono/streaming";
import type { GenerateEvent, GenerateRequest } from "../../../protocol/src/index.ts";
import type { EdgeEnv } from "./env.ts";
import { ApiError, toApiError } from "./errors.ts";
import { sseWriter } from "./sse.ts";

export type Send = (message: SSEMessage) => Promise<void>;

export interface EventWriter {
  /** Writes one backend event as SSE messages: none, one or several. */
  event(event: Exclude<GenerateEvent, { type: "error" }>, send: Send): Promise<void>;
  /** Writes the error that ends the stream after its first byte. */
  error(error: ApiError, send: Send): Promise<void>;
}

export async function streamEvents(
  c: Context<EdgeEnv>,
  request: GenerateRequest,
  writer: EventWriter,
): Promise<Response> {
  const cancel = new AbortController();
  const events = await c.var.backend.doStream(request, { signal: cancel.signal });
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => cancel.abort());
    const sse = sseWriter(stream, c.env);
    try {
      for await (const event of events) {
        if (event.type === "error") throw new ApiError(502, "backend_error", event.message);
        await writer.event(event, sse.send);
      }
    } catch (error) {
      if (cancel.signal.aborted) return; // the client left: nobody to tell
      await writer.error(toApiError(error), sse.send);
    } finally {
      sse.stop();
    }
  });
}
