/**
 * OpenAI-compatible `POST /v1/completions`, streamed (SSE: `data:` chunks, then `data: [DONE]`)
 * or not. Each committed block of the denoiser becomes one chunk. Usage carries
 * `forward_passes` beside the standard fields.
 *
 * Sprout extensions in the body: `block_size` and `threshold`, the speed/quality dial.
 * Decoding is greedy unless `temperature` is given (> 0); `top_p` and `seed` shape the sampling,
 * and the same seed gives the same completion.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import type { Usage } from "../../../../adapters/src/index.ts";
import { backendFor } from "../backends.ts";
import type { Env } from "../env.ts";
import { ApiError, errorBody, toApiError } from "../errors.ts";
import { sseWriter } from "../sse.ts";
import { jsonBody } from "../validate.ts";

export const CompletionRequest = z.object({
  model: z.string().min(1),
  prompt: z.union([
    z.string(),
    z
      .array(z.string())
      .length(1)
      .transform((p) => p[0] as string),
  ]),
  max_tokens: z.number().int().min(1).max(1024).default(16),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  /** Any integer, as OpenAI accepts; the generator is seeded with its low 32 bits. */
  seed: z.number().int().nullish(),
  stop: z
    .union([z.string().max(256), z.array(z.string().max(256)).max(4)])
    .nullish()
    .transform((stop) => (typeof stop === "string" ? [stop] : (stop ?? [])).filter((s) => s.length > 0)),
  n: z.literal(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  suffix: z.string().nullish(),
  block_size: z.number().int().min(1).max(256).optional(),
  threshold: z.number().gt(0).max(1).optional(),
});

const toOpenAiUsage = (usage: Usage) => ({
  prompt_tokens: usage.prompt_tokens,
  completion_tokens: usage.completion_tokens,
  total_tokens: usage.prompt_tokens + usage.completion_tokens,
  forward_passes: usage.forward_passes,
});

/** The node cancels only when asked to; a cancellation nobody asked for is a broken answer. */
function toOpenAiFinish(reason: "stop" | "length" | "cancelled"): "stop" | "length" {
  if (reason === "cancelled")
    throw new ApiError(502, "backend_cancelled", "The model backend stopped early.");
  return reason;
}

export const completions = new Hono<{ Bindings: Env }>().post("/", jsonBody(CompletionRequest), async (c) => {
  const body = c.req.valid("json");
  if (body.model !== c.env.MODEL_ID) {
    throw new ApiError(404, "model_not_found", `The model '${body.model}' does not exist.`, "model");
  }
  // A streaming client that leaves cancels the node's work (onAbort below). A non-streamed
  // request runs to its end: under wrangler dev, workerd does not tell the worker that such a
  // client left (not even with the `enable_request_signal` flag); max_tokens bounds the waste.
  const cancel = new AbortController();
  const request = {
    prompt: body.prompt,
    // OpenAI treats an empty suffix as none; so does Sprout (infilling needs text after the middle).
    suffix: body.suffix || undefined,
    max_tokens: body.max_tokens,
    block_size: body.block_size,
    threshold: body.threshold,
    temperature: body.temperature ?? undefined,
    // top_p 0 keeps only the most likely token (the nucleus always holds at least one).
    top_p: body.top_p === null || body.top_p === undefined ? undefined : Math.max(body.top_p, 1e-9),
    seed: body.seed === null || body.seed === undefined ? undefined : body.seed >>> 0,
    stop: body.stop.length > 0 ? body.stop : undefined,
  };
  const includeUsage = Boolean(body.stream && body.stream_options?.include_usage);
  const id = `cmpl-${crypto.randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (text: string, finish_reason: string | null) => ({
    id,
    object: "text_completion",
    created,
    model: body.model,
    choices: [{ text, index: 0, logprobs: null, finish_reason }],
    // With include_usage, OpenAI sends `usage: null` on every chunk but the last.
    ...(includeUsage ? { usage: null } : {}),
  });

  if (!body.stream) {
    let text = "";
    for await (const event of await backendFor(c.env).doStream(request)) {
      if (event.type === "block") text += event.text;
      if (event.type === "error") throw new ApiError(502, "backend_error", event.message);
      if (event.type === "done") {
        return c.json({
          ...chunk(text, toOpenAiFinish(event.finish_reason)),
          usage: toOpenAiUsage(event.usage),
        });
      }
    }
    throw new ApiError(502, "backend_error", "The model backend ended without finishing.");
  }

  // Failures before the first byte (backend down, request refused) still get their HTTP status.
  const events = await backendFor(c.env).doStream(request, { signal: cancel.signal });
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => cancel.abort());
    const writer = sseWriter(stream, c.env);
    const send = (data: unknown) => writer.send({ data: JSON.stringify(data) });
    try {
      for await (const event of events) {
        if (event.type === "block" && event.text) await send(chunk(event.text, null));
        if (event.type === "error") throw new ApiError(502, "backend_error", event.message);
        if (event.type === "done") {
          await send(chunk("", toOpenAiFinish(event.finish_reason)));
          if (body.stream_options?.include_usage) {
            await send({ ...chunk("", null), choices: [], usage: toOpenAiUsage(event.usage) });
          }
          await writer.send({ data: "[DONE]" });
        }
      }
    } catch (error) {
      if (cancel.signal.aborted) return; // the client left: nobody to tell
      // After the first byte the status is sent: the error travels as one data line (no [DONE]).
      await send(errorBody(toApiError(error)));
    } finally {
      writer.stop();
    }
  });
});
