/** OpenAI-compatible `GET /v1/models`. */
import { Hono } from "hono";
import type { EdgeEnv } from "../env.ts";

export const models = new Hono<EdgeEnv>().get("/", (c) =>
  c.json({ object: "list", data: [{ id: c.env.MODEL_ID, object: "model", created: 0, owned_by: "sprout" }] }),
);
