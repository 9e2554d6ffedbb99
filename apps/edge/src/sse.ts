/**
 * Writing an SSE stream with keep-alive: after `everyMs` of silence (15 s unless `SSE_KEEPALIVE_MS`
 * says otherwise) a `: ping` comment goes out, so proxies and clients do not drop a stream
 * whose model is still thinking. Comments are invisible to SSE parsers (and to OpenAI clients).
 */
import type { SSEMessage, SSEStreamingApi } from "hono/streaming";
import type { Env } from "./env.ts";

export function sseWriter(stream: SSEStreamingApi, env: Env) {
  const everyMs = Number(env.SSE_KEEPALIVE_MS ?? 15_000);
  let last = Date.now();
  const timer = setInterval(
    () => {
      if (Date.now() - last < everyMs || stream.closed || stream.aborted) return;
      last = Date.now();
      void stream.write(": ping\n\n").catch(() => {});
    },
    Math.max(10, Math.floor(everyMs / 4)),
  );
  return {
    send(message: SSEMessage) {
      last = Date.now();
      return stream.writeSSE(message);
    },
    stop() {
      clearInterval(timer);
    },
  };
}
