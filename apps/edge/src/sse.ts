/**
 * Writing SSE by hand: the text of one message (`event:` and `data:` lines, as Hono's `writeSSE`
 * writes them), and the keep-alive period: after that long without a byte (15 s unless
 * `SSE_KEEPALIVE_MS` says otherwise) a `: ping` comment goes out, so proxies and clients do not
 * drop a stream whose model is still thinking. Comments are invisible to SSE parsers (and to
 * OpenAI clients). The stream itself is stream-events.ts's.
 */
import type { Env } from "./env.ts";

export interface SseMessage {
  /** The event's name (`event:`); absent: a plain `message`. */
  event?: string;
  data: string;
}

export const PING = ": ping\n\n";

const lineBreak = /\r\n|\r|\n/;

/** One message as SSE text; data with line breaks becomes several `data:` lines. */
export function sseText({ event, data }: SseMessage): string {
  const lines = lineBreak.test(data) ? data.split(lineBreak).join("\ndata: ") : data;
  if (event === undefined || event === "") return `data: ${lines}\n\n`;
  if (lineBreak.test(event)) throw new Error('event must not contain "\\r" or "\\n"');
  return `event: ${event}\ndata: ${lines}\n\n`;
}

/** Milliseconds of silence before a `: ping`. */
export const keepAliveMs = (env: Env): number => Number(env.SSE_KEEPALIVE_MS ?? 15_000);
