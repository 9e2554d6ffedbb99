/** Servers for tests: the real denoiser node in-process, and scripted fakes for failures. */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { createDenoiserApp } from "../../apps/denoiser/src/app.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "../../models/src/index.ts";

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** Serves a Hono app on a free loopback port. */
export async function listen(app: Hono): Promise<RunningServer> {
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) => {
      resolve({
        url: `http://127.0.0.1:${info.port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
  });
}

export interface RunningNode extends RunningServer {
  secret: string;
  model: Model;
}

/** The real denoiser node with the shipped model, as the edge would reach it. */
export async function startDenoiserNode(secret = "test-node-secret"): Promise<RunningNode> {
  const model = await loadModel(SHIPPED_MODEL_DIR);
  const server = await listen(createDenoiserApp({ model, secret, log: () => {} }));
  return {
    ...server,
    secret,
    model,
    close: async () => {
      await server.close();
      await model.close();
    },
  };
}

/** A fake denoiser node (test double) that answers every generation with these protocol events. */
export function fakeNode(events: readonly object[]): Promise<RunningServer> {
  const body = events
    .map((e) => `event: ${(e as { type: string }).type}\ndata: ${JSON.stringify(e)}\n\n`)
    .join("");
  return listen(
    new Hono().post("/v1/generate", (c) => c.body(body, 200, { "content-type": "text/event-stream" })),
  );
}

/** A fake denoiser node (test double) that sends these events with `gapMs` of silence between them. */
export function slowNode(events: readonly object[], gapMs: number): Promise<RunningServer> {
  return listen(
    new Hono().post("/v1/generate", (c) =>
      streamSSE(c, async (stream) => {
        for (const event of events) {
          await stream.writeSSE({ event: (event as { type: string }).type, data: JSON.stringify(event) });
          await stream.sleep(gapMs);
        }
      }),
    ),
  );
}

export const START_EVENT = { type: "start", v: 1, model: "m", prompt_tokens: 1, block_size: 4 } as const;
