/**
 * Native `POST /v1/generate`: what only a diffusion model can do, as named SSE events (the
 * protocol's `NativeEvent`, each event named by its `type`) — `start`; per block `step` (with
 * `emit_steps`: the block as it stands), `edit` (with `edit_rounds`), `block` (its text, token
 * count, steps and token ids); `verify` (with `verify`, through the edge's verification cache);
 * then `done` with usage, or `error`. The body is the protocol's `GenerateBody`: the node's
 * generation fields plus `model`; `max_tokens` defaults to 128. A client may resume a stream it
 * lost by sending the ids of the blocks it has as `committed`.
 */
import { Hono } from "hono";
import { GenerateBody, type NativeEvent } from "../../../../protocol/src/index.ts";
import type { EdgeEnv } from "../env.ts";
import { errorBody } from "../errors.ts";
import { checkModel } from "../openai.ts";
import { type Send, streamEvents } from "../stream-events.ts";
import { jsonBody } from "../validate.ts";
import { verifyCached } from "./verify.ts";

const sendEvent = (send: Send, event: NativeEvent) =>
  send({ event: event.type, data: JSON.stringify(event) });

export const generate = new Hono<EdgeEnv>().post("/", jsonBody(GenerateBody), async (c) => {
  // The edge verifies through its cache, so the backend is never asked to.
  const { verify, ...request } = c.req.valid("json");
  const model = await checkModel(c, request.model);
  let text = "";
  return streamEvents(c, request, {
    async event(event, send) {
      if (event.type === "verify") return; // not asked for: the edge verifies (below)
      if (event.type === "block") text += event.text;
      if (event.type === "done" && verify && event.finish_reason !== "cancelled") {
        const { verification, outcome } = await verifyCached(c, model, {
          model: model.id,
          code: text,
          prompt: request.prompt,
          language: "python",
        });
        await sendEvent(send, { type: "verify", ...verification, cached: outcome !== "miss" });
      }
      await sendEvent(send, event);
    },
    error: (error, send) => sendEvent(send, { type: "error", ...errorBody(error) }),
  });
});
