/**
 * What `/v1/completions` and `/v1/chat/completions` share: the request fields OpenAI defines
 * (mapped onto the node's), and answering with a backend's events in OpenAI's shapes — one
 * object, or an SSE stream of `data:` chunks (one per committed block), an optional usage chunk,
 * then `data: [DONE]`. Usage carries `forward_passes` beside the standard fields.
 */
import type { Context } from "hono";
import { z } from "zod";
import { modelNotFound, type ServedModel } from "../../../adapters/src/index.ts";
import type { FinishReason, GenerateRequest, Usage } from "../../../protocol/src/index.ts";
import { completeText } from "./complete-text.ts";
import type { EdgeEnv } from "./env.ts";
import { ApiError, errorBody } from "./errors.ts";
import { streamEvents } from "./stream-events.ts";

/** Sampling and streaming fields both endpoints take, as OpenAI defines them, plus Sprout's dial. */
export const OpenAiFields = {
  model: z.string().min(1),
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
  block_size: z.number().int().min(1).max(256).optional(),
  threshold: z.number().gt(0).max(1).optional(),
};

type OpenAiBody = {
  model: string;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop: string[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  block_size?: number;
  threshold?: number;
};

/** The node request for an OpenAI body, its prompt (and suffix) already worked out. */
export function nodeRequest(
  body: OpenAiBody,
  prompt: string,
  maxTokens: number,
  suffix?: string,
): GenerateRequest {
  return {
    model: body.model,
    prompt,
    suffix,
    max_tokens: maxTokens,
    block_size: body.block_size,
    threshold: body.threshold,
    temperature: body.temperature ?? undefined,
    // top_p 0 keeps only the most likely token (the nucleus always holds at least one).
    top_p: body.top_p === null || body.top_p === undefined ? undefined : Math.max(body.top_p, 1e-9),
    seed: body.seed === null || body.seed === undefined ? undefined : body.seed >>> 0,
    stop: body.stop.length > 0 ? body.stop : undefined,
  };
}

/**
 * The model a request names, as the backend serves it (absent: the default, the first listed);
 * a 404 `model_not_found` naming the available models when the backend serves no such model, a
 * 503 when it cannot say now. Every model route asks this before its work: the backend routes
 * each request to its model (adapters/src/router.ts), this is what the client is told.
 */
export async function checkModel(c: Context<EdgeEnv>, model: string | undefined): Promise<ServedModel> {
  const backend = c.var.backend;
  if (backend.model) return backend.model(model);
  const served = backend.models ? await backend.models() : [];
  const found = model === undefined ? served[0] : served.find((m) => m.id === model);
  if (!found) {
    throw modelNotFound(
      model ?? "",
      served.map((m) => m.id),
    );
  }
  return found;
}

/** How one endpoint spells its objects. */
export interface OpenAiShape {
  idPrefix: string;
  /** The object name of a whole answer, and of a stream chunk. */
  object: string;
  chunkObject: string;
  /** The choice of a whole answer. */
  choice(text: string, finish: string): Record<string, unknown>;
  /** The choice of a stream chunk: `text` so far committed (or "" for the finish chunk). */
  chunkChoice(text: string, finish: string | null, first: boolean): Record<string, unknown>;
}

const toOpenAiUsage = (usage: Usage) => ({
  prompt_tokens: usage.prompt_tokens,
  completion_tokens: usage.completion_tokens,
  total_tokens: usage.prompt_tokens + usage.completion_tokens,
  forward_passes: usage.forward_passes,
});

/** The node cancels only when asked to; a cancellation nobody asked for is a broken answer. */
function toOpenAiFinish(reason: FinishReason): "stop" | "length" {
  if (reason === "cancelled")
    throw new ApiError(502, "backend_cancelled", "The model backend stopped early.");
  return reason;
}

export async function respondOpenAi(
  c: Context<EdgeEnv>,
  body: OpenAiBody,
  request: GenerateRequest,
  shape: OpenAiShape,
) {
  const id = `${shape.idPrefix}-${crypto.randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = Boolean(body.stream && body.stream_options?.include_usage);
  const envelope = (object: string) => ({ id, object, created, model: body.model });

  if (!body.stream) {
    // A non-streamed request runs to its end: under wrangler dev, workerd does not tell the
    // worker that such a client left (not even with `enable_request_signal`); max_tokens bounds it.
    const { text, finish_reason, usage } = await completeText(c.var.backend, request);
    return c.json({
      ...envelope(shape.object),
      choices: [shape.choice(text, toOpenAiFinish(finish_reason))],
      usage: toOpenAiUsage(usage),
    });
  }

  // A chunk is `{...envelope, choices: [choice], usage: null}` (with include_usage, OpenAI sends
  // `usage: null` on every chunk but the last); the envelope's JSON is written once per stream.
  const head = JSON.stringify(envelope(shape.chunkObject)).slice(0, -1);
  const tail = includeUsage ? ',"usage":null}' : "}";
  const chunk = (text: string, finish: string | null, first = false) => ({
    data: `${head},"choices":[${JSON.stringify(shape.chunkChoice(text, finish, first))}]${tail}`,
  });
  const data = (value: unknown) => ({ data: JSON.stringify(value) });
  let first = true;
  return streamEvents(c, request, {
    async event(event, send) {
      if (event.type === "block" && event.text) {
        await send(chunk(event.text, null, first));
        first = false;
      }
      if (event.type === "done") {
        await send(chunk("", toOpenAiFinish(event.finish_reason), first));
        if (includeUsage)
          await send(
            data({ ...envelope(shape.chunkObject), choices: [], usage: toOpenAiUsage(event.usage) }),
          );
        await send({ data: "[DONE]" });
      }
    },
    // After the first byte the status is sent: the error travels as one data line (no [DONE]).
    error: (error, send) => send(data(errorBody(error))),
  });
}
