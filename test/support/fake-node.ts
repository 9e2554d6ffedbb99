/**
 * `startFakeNode`: a test double of a Sprout denoiser node that does no work — it speaks the
 * node's HTTP protocol (protocol/src: `GET /readyz`, `POST /v1/generate` with the edge's secret,
 * `sprout-protocol` on every answer) and streams a generation's events, precomputed, as fast as
 * the socket takes them, each as the node writes it (`event: <type>\ndata: <JSON>\n\n`, one
 * write per event). A generation has `ceil(max_tokens / block_size)` blocks (block size 8 unless
 * asked), so a caller picks how many events a stream holds. For the edge's cost benchmark
 * (bench/edge-cost.ts): whatever time a stream takes through the edge beyond this node's own
 * is the edge's.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type NodeEvent, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../protocol/src/index.ts";

export interface FakeNode {
  url: string;
  secret: string;
  model: string;
  close(): Promise<void>;
}

/** The events of a generation of `blocks` blocks of `blockSize` tokens, as the node sends them. */
export function fakeNodeEvents(model: string, blocks: number, blockSize: number): NodeEvent[] {
  const events: NodeEvent[] = [{ type: "start", model, prompt_tokens: 7, block_size: blockSize }];
  for (let index = 0; index < blocks; index++) {
    const ids = Array.from({ length: blockSize }, (_, k) => 100 + ((index * blockSize + k) % 3000));
    const text = ids.map((id) => ` tok${id}`).join("");
    events.push({ type: "block", index, text, tokens: blockSize, steps: 2, ids });
  }
  events.push({
    type: "done",
    finish_reason: "length",
    usage: { prompt_tokens: 7, completion_tokens: blocks * blockSize, forward_passes: blocks * 2 + 1 },
  });
  return events;
}

/** The SSE text of each event, as Hono's `writeSSE` writes it on the node. */
const sse = (event: NodeEvent) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

async function json(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

export async function startFakeNode(secret: string, model = "sprout-tiny"): Promise<FakeNode> {
  const cache = new Map<string, string[]>();
  const server: Server = createServer(async (request, response) => {
    response.setHeader(PROTOCOL_HEADER, String(PROTOCOL_VERSION));
    if (request.method === "GET" && request.url === "/readyz") {
      response.setHeader("content-type", "application/json");
      response.end(
        JSON.stringify({
          ready: true,
          model,
          models: [{ name: model, sha256: "fake-node", context_length: 1 << 16, active: 0, queued: 0 }],
        }),
      );
      return;
    }
    if (request.method !== "POST" || request.url !== "/v1/generate") {
      response.writeHead(404, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: "not_found", message: "no such route" } }));
      return;
    }
    if (request.headers.authorization !== `Bearer ${secret}`) {
      response.writeHead(401, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: "unauthorized", message: "wrong secret" } }));
      return;
    }
    const body = await json(request);
    const blockSize = typeof body.block_size === "number" ? body.block_size : 8;
    const maxTokens = typeof body.max_tokens === "number" ? body.max_tokens : 128;
    const blocks = Math.ceil(maxTokens / blockSize);
    const key = `${blocks}/${blockSize}`;
    let messages = cache.get(key);
    if (!messages) {
      messages = fakeNodeEvents(model, blocks, blockSize).map(sse);
      cache.set(key, messages);
    }
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    for (const message of messages) response.write(message);
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    secret,
    model,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
