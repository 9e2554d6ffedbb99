/**
 * OpenAI-compatible `GET /v1/models`: every model some backend serves (as the backends say:
 * adapters/src/router.ts), the default first (it serves requests that name none), each with
 * `context_length` where its backends say (Sprout's extension: the tokens a request may fill).
 */
import { Hono } from "hono";
import type { EdgeEnv } from "../env.ts";

export const models = new Hono<EdgeEnv>().get("/", async (c) => {
  const backend = c.var.backend;
  const served = backend.models ? await backend.models() : [];
  return c.json({
    object: "list",
    data: served.map((m) => ({
      id: m.id,
      object: "model",
      created: 0,
      owned_by: "sprout",
      ...(m.context_length === undefined ? {} : { context_length: m.context_length }),
    })),
  });
});
