/**
 * Native `POST /v1/generate`: what only a diffusion model can do, as named SSE events —
 * `start`; per block `step` (with `emit_steps`: the block as it stands), `edit` (with
 * `edit_rounds`), `block` (its text, token count, steps and token ids); `verify` (with `verify`,
 * through the edge's verification cache); then `done` with usage, or `error`. The body takes
 * the node's generation fields (adapters/src/protocol.ts) plus `model`; `max_tokens` defaults
 * to 128. A client may resume a stream it lost by sending the ids of the blocks it has as
 * `committed`.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { GenerateFields, ONE_UNMASKING, oneUnmasking } from "../../../../adapters/src/index.ts";
import { backendFor } from "../backends.ts";
import type { EdgeEnv } from "../env.ts";
import { ApiError, errorBody, toApiError } from "../errors.ts";
import { checkModel } from "../openai.ts";
import { sseWriter } from "../sse.ts";
import { jsonBody } from "../validate.ts";
import { verifyCached } from "./verify.ts";

export const GenerateBody = GenerateFields.extend({
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).max(4096).default(128),
}).refine(oneUnmasking, ONE_UNMASKING);

export const generate = new Hono<EdgeEnv>().post("/", jsonBody(GenerateBody), async (c) => {
  const { model, verify, ...request } = c.req.valid("json");
  checkModel(c, model);
  const cancel = new AbortController();
  // Failures before the first byte (backend down, request refused) still get their HTTP status.
  const events = await backendFor(c.env).doStream(request, { signal: cancel.signal });
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => cancel.abort());
    const writer = sseWriter(stream, c.env);
    const send = (type: string, data: unknown) => writer.send({ event: type, data: JSON.stringify(data) });
    let text = "";
    try {
      for await (const event of events) {
        if (event.type === "error") throw new ApiError(502, "backend_error", event.message);
        if (event.type === "block") text += event.text;
        if (event.type === "done")
          c.var.reportTokens?.(event.usage.prompt_tokens + event.usage.completion_tokens);
        if (event.type === "done" && verify && event.finish_reason !== "cancelled") {
          const { verification, outcome } = await verifyCached(c, {
            code: text,
            prompt: request.prompt,
            language: "python",
          });
          await send("verify", { ...verification, cached: outcome !== "miss" });
        }
        const { v: _version, ...rest } = event as typeof event & { v?: number };
        await send(event.type, rest);
      }
    } catch (error) {
      if (cancel.signal.aborted) return; // the client left: nobody to tell
      await send("error", errorBody(toApiError(error)));
    } finally {
      writer.stop();
      await c.var.endOfStream?.();
    }
  });
});
