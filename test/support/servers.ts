/** Servers for tests: the real denoiser node in-process, and a webhook receiver that fails as real ones do. */

import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { createDenoiserApp } from "../../apps/denoiser/src/app.ts";
import { createEdgeApp } from "../../apps/edge/src/app.ts";
import { backendFor } from "../../apps/edge/src/backends.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR, TWIN_MODEL_DIR } from "../../models/src/index.ts";

/** The shipped model and its autoregressive twin: two real models, for tests of several. */
export const TWO_MODEL_DIRS = [SHIPPED_MODEL_DIR, TWIN_MODEL_DIR];

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/**
 * The edge's app and its backendFor, served by Node in front of these node URLs (what the worker
 * builds over them), taking `key`: for tests that stop and cut nodes under it.
 */
export async function edgeInNode(nodeUrls: string[], secret: string, key: string): Promise<RunningServer> {
  const env = {
    DENOISER_URL: nodeUrls.join(","),
    DENOISER_SECRET: secret,
    API_KEY_HASHES: createHash("sha256").update(key).digest("hex"),
  };
  const app = createEdgeApp({ backendFor });
  return listen(new Hono().all("*", (c) => app.fetch(c.req.raw, env)));
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
  /** Its first model (the one serving requests that name none). */
  model: Model;
  models: Model[];
}

/**
 * The real denoiser node as the edge would reach it, serving the shipped model or the model
 * directories given (`models`: already loaded ones, which the caller closes, or directories).
 */
export async function startDenoiserNode(
  secret = "test-node-secret",
  models: (string | Model)[] = [SHIPPED_MODEL_DIR],
): Promise<RunningNode> {
  const loaded = await Promise.all(models.map((m) => (typeof m === "string" ? loadModel(m) : m)));
  const server = await listen(createDenoiserApp({ models: loaded, secret, log: () => {} }));
  return {
    ...server,
    secret,
    model: loaded[0] as Model,
    models: loaded,
    close: async () => {
      await server.close();
      // Only what it loaded itself.
      await Promise.all(loaded.filter((_, i) => typeof models[i] === "string").map((m) => m.close()));
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
