/** Servers for tests: the real denoiser node in-process, and a webhook receiver that fails as real ones do. */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
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

export interface ReceivedDelivery {
  path: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * A webhook receiver for tests, with the failures a real one has: `/hook/<name>?down=N` answers
 * 503 (Retry-After: 7) to the first N attempts of each delivery (webhook-id), then 204; `/redirect/<name>` answers 302 to
 * `/hook/<name>-redirected`; `/slow/<name>` never answers. `GET /log` lists every request it got.
 */
export function webhookReceiver(): Promise<RunningServer> {
  const log: ReceivedDelivery[] = [];
  const seen = new Map<string, number>();
  const record = async (c: import("hono").Context, status: number) => {
    log.push({ path: c.req.path, status, headers: c.req.header(), body: await c.req.text() });
  };
  return listen(
    new Hono()
      .get("/log", (c) => c.json(log))
      .post("/hook/:name", async (c) => {
        const name = `${c.req.param("name")} ${c.req.header("webhook-id") ?? ""}`; // each delivery is down N times
        const count = (seen.get(name) ?? 0) + 1;
        seen.set(name, count);
        const down = count <= Number(c.req.query("down") ?? 0);
        await record(c, down ? 503 : 204);
        return down ? c.text("down", 503, { "retry-after": "7" }) : c.body(null, 204);
      })
      .post("/redirect/:name", async (c) => {
        await record(c, 302);
        return c.redirect(`/hook/${c.req.param("name")}-redirected`, 302);
      })
      .post("/slow/:name", async (c) => {
        await record(c, 0);
        return new Promise<Response>(() => {}); // never answers
      }),
  );
}
