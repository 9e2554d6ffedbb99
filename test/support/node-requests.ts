/** Requests to a denoiser node in tests: the edge's authorised JSON posts, and the node's SSE answer parsed. */
import { createParser } from "eventsource-parser";
import { NodeEvent } from "../../protocol/src/index.ts";

/** Headers of a request the edge sends a node: its shared secret and a JSON body. */
export const nodeHeaders = (secret: string) => ({
  authorization: `Bearer ${secret}`,
  "content-type": "application/json",
});

/** A POST of `body` with the node's secret. */
export const nodePost = (secret: string) => (body: object) => ({
  method: "POST",
  headers: nodeHeaders(secret),
  body: JSON.stringify(body),
});

/** The SSE messages of a stream's whole text. */
export function sseMessages(text: string): { event?: string; data: string }[] {
  const messages: { event?: string; data: string }[] = [];
  const parser = createParser({ onEvent: (m) => messages.push({ event: m.event, data: m.data }) });
  parser.feed(text);
  return messages;
}

/** A node's answer read to its end, as protocol events (each validated by the protocol's schema). */
export async function nodeEvents(answer: Response | Promise<Response>): Promise<NodeEvent[]> {
  return sseMessages(await (await answer).text()).map((m) => NodeEvent.parse(JSON.parse(m.data)));
}
