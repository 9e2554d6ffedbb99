/**
 * Streaming a generation to the client as SSE, for the OpenAI routes and the native one alike:
 * the backend's stream is opened first, so that a failure before the first byte (backend down,
 * request refused) still gets its HTTP status; a client that leaves aborts the backend's work;
 * silence gets keep-alive comments (sse.ts); an `error` event or a failure after the first byte
 * is written as the route's error message (the status is sent by then); the stream's metering
 * is the backend's (metered.ts). A route says only how each event is written.
 *
 * The body is a pull-based stream: each pull reads backend events until one writes something,
 * and what that event wrote (one SSE message or several) goes out as one chunk. The edge reads
 * at most one chunk ahead of the client, so a slow client slows the node, not the edge's memory;
 * per event there is one string and one chunk, no stream stages in between (Hono's streamSSE
 * had a TransformStream and a second stream per response, and wrote each message on its own).
 */
import type { Context } from "hono";
import type { GenerateEvent, GenerateRequest } from "../../../protocol/src/index.ts";
import type { EdgeEnv } from "./env.ts";
import { ApiError, toApiError } from "./errors.ts";
import { keepAliveMs, PING, type SseMessage, sseText } from "./sse.ts";

export type Send = (message: SseMessage) => Promise<void>;

export interface EventWriter {
  /** Writes one backend event as SSE messages: none, one or several. */
  event(event: Exclude<GenerateEvent, { type: "error" }>, send: Send): Promise<void>;
  /** Writes the error that ends the stream after its first byte. */
  error(error: ApiError, send: Send): Promise<void>;
}

const encoder = new TextEncoder();
const sent = Promise.resolve();

export async function streamEvents(
  c: Context<EdgeEnv>,
  request: GenerateRequest,
  writer: EventWriter,
): Promise<Response> {
  const cancel = new AbortController();
  const events = (await c.var.backend.doStream(request, { signal: cancel.signal }))[Symbol.asyncIterator]();
  let pending = "";
  const send: Send = (message) => {
    pending += sseText(message);
    return sent;
  };
  const everyMs = keepAliveMs(c.env);
  let last = Date.now();
  let ended = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  const end = () => {
    ended = true;
    clearInterval(timer);
  };

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(
        () => {
          if (ended || Date.now() - last < everyMs) return;
          last = Date.now();
          controller.enqueue(encoder.encode(PING));
        },
        Math.max(10, Math.floor(everyMs / 4)),
      );
    },
    async pull(controller) {
      try {
        while (pending === "" && !ended) {
          const next = await events.next();
          if (next.done) {
            end();
            break;
          }
          const event = next.value;
          if (event.type === "error") throw new ApiError(502, "backend_error", event.message);
          await writer.event(event, send);
        }
      } catch (error) {
        if (ended || cancel.signal.aborted) return; // the client left: nobody to tell
        end();
        // What the failing event wrote before it failed goes out first, as it would have.
        await writer.error(toApiError(error), send).catch(() => {});
      }
      if (pending !== "") {
        last = Date.now();
        controller.enqueue(encoder.encode(pending));
        pending = "";
      }
      if (ended) controller.close();
    },
    cancel() {
      // The client left: the backend's work stops, and its stream ends (metering settles).
      end();
      cancel.abort();
      void events.return?.().catch(() => {});
    },
  });
  c.header("Content-Type", "text/event-stream");
  c.header("Cache-Control", "no-cache");
  c.header("Connection", "keep-alive");
  return c.newResponse(body);
}
