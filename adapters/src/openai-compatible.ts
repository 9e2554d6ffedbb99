/**
 * Any OpenAI-compatible upstream (an SGLang dLLM server, Inception's API, a vLLM autoregressive
 * baseline, another Sprout edge) as a `Backend`: a generation request becomes a streamed
 * `POST {url}/completions` (prompt, suffix), or, when it carries `messages`, a streamed
 * `POST {url}/chat/completions` with those messages as they are (roles unchanged: the upstream
 * renders them with its own chat template, as its model expects); the upstream's wire is mapped
 * onto the protocol's events — `start` once the stream is open, one `block` per chunk with text
 * (`text`, or a chat chunk's `delta.content`; its text only: an upstream has no token ids or
 * steps to give), `done` with the usage of its final chunk (`forward_passes` when the upstream
 * reports it, else one per completion token, as an autoregressive server spends; zeros when it
 * reports no usage at all). Both send `max_tokens`, which chat servers of open models (vLLM,
 * SGLang) and Inception take.
 *
 * Models: the one it is configured with (`model`: an upstream that lists dozens, of which one is
 * wanted), or else every model its `GET {url}/models` lists. A request's `model` is sent as it is
 * (the configured one where the request names none).
 *
 * What it cannot do: resume (`committed` ids mean nothing to another tokenizer: such a request is
 * refused, so a pool must not mix these with Sprout nodes for failover), Sprout's dial beyond
 * temperature/top_p/seed/stop/suffix, `verify` and `edit`. Runs in workerd and Node: `fetch`,
 * web streams and eventsource-parser only.
 */
import { EventSourceParserStream } from "eventsource-parser/stream";
import { z } from "zod";
import type { FinishReason, GenerateEvent, GenerateRequest } from "../../protocol/src/index.ts";
import {
  type Backend,
  BackendError,
  BROKEN,
  refusal,
  type ServedModel,
  type StreamOptions,
  unreachable,
} from "./backend.ts";

export interface OpenAiCompatibleOptions {
  /** Base URL including the version, e.g. `https://api.example.com/v1`. */
  url: string;
  apiKey: string;
  /** The upstream's model to serve; absent: every model its /models lists. */
  model?: string;
  fetch?: typeof fetch;
}

/** What this adapter reads of an upstream's stream chunk (and of its error body); the rest is ignored. */
const Chunk = z.object({
  choices: z
    .array(
      z.object({
        text: z.string().nullish(),
        delta: z.object({ content: z.string().nullish() }).nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .nullish(),
  usage: z
    .object({
      prompt_tokens: z.number().int().nonnegative().nullish(),
      completion_tokens: z.number().int().nonnegative().nullish(),
      forward_passes: z.number().int().nonnegative().nullish(),
    })
    .nullish(),
  error: z.object({ message: z.string().nullish(), code: z.string().nullish() }).nullish(),
});

/** What this adapter reads of an upstream's `GET /models`. */
const ModelList = z.object({ data: z.array(z.object({ id: z.string().min(1) })) });

export class OpenAiCompatibleBackend implements Backend {
  readonly id: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: OpenAiCompatibleOptions) {
    this.id = `openai-compatible ${new URL(options.url).host}`;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  private get base(): string {
    return this.options.url.replace(/\/$/, "");
  }

  /** The configured model, or every one the upstream's /models lists (within 5 s). */
  async models({ signal }: StreamOptions = {}): Promise<ServedModel[]> {
    if (this.options.model) return [{ id: this.options.model }];
    const timeout = AbortSignal.timeout(5_000);
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.base}/models`, {
        headers: { authorization: `Bearer ${this.options.apiKey}` },
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw unreachable(this.id, error);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw refusal(
        response.status,
        Chunk.safeParse(body).data?.error?.message ?? "(no error body)",
        this.id,
      );
    }
    const parsed = ModelList.safeParse(body);
    if (!parsed.success)
      throw new BackendError("bad_response", BROKEN, 502, `${this.id} sent a broken model list`);
    return parsed.data.data.map(({ id }) => ({ id }));
  }

  async doStream(
    request: GenerateRequest,
    { signal }: StreamOptions = {},
  ): Promise<AsyncIterable<GenerateEvent>> {
    if (request.committed?.length) {
      throw new BackendError("invalid_request", "This backend cannot resume a generation.", 400);
    }
    const model = request.model ?? this.options.model;
    let response: Response;
    try {
      const chat = request.messages !== undefined;
      response = await this.fetchImpl(`${this.base}/${chat ? "chat/completions" : "completions"}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "text/event-stream",
          authorization: `Bearer ${this.options.apiKey}`,
        },
        body: JSON.stringify({
          model,
          ...(chat ? { messages: request.messages } : { prompt: request.prompt, suffix: request.suffix }),
          max_tokens: request.max_tokens,
          temperature: request.temperature,
          top_p: request.top_p,
          seed: request.seed,
          stop: request.stop,
          stream: true,
          stream_options: { include_usage: true },
        }),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw unreachable(this.id, error);
    }
    if (!response.ok || !response.body) {
      const said = Chunk.safeParse(await response.json().catch(() => null)).data?.error?.message;
      throw refusal(response.status, said ?? "(no error body)", this.id);
    }
    return this.events(response.body, model ?? "");
  }

  private async *events(body: ReadableStream<BufferSource>, model: string): AsyncGenerator<GenerateEvent> {
    const reader = body
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(new EventSourceParserStream())
      .getReader();
    const broken = (detail: string) => new BackendError("bad_response", BROKEN, 502, `${this.id} ${detail}`);
    yield { type: "start", model };
    let index = 0;
    let finish: FinishReason | undefined;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) throw broken("closed the stream before [DONE]");
        if (value.data === "[DONE]") break;
        let json: unknown;
        try {
          json = JSON.parse(value.data);
        } catch {
          throw broken("sent a chunk that is not JSON");
        }
        const parsed = Chunk.safeParse(json);
        if (!parsed.success) throw broken("sent a chunk that is not a completion (or chat completion) chunk");
        const chunk = parsed.data;
        if (chunk.error) {
          yield {
            type: "error",
            code: chunk.error.code ?? "upstream_error",
            message: chunk.error.message ?? "upstream error",
          };
          return;
        }
        const choice = chunk.choices?.[0];
        const text = choice?.text ?? choice?.delta?.content;
        if (text) yield { type: "block", index: index++, text };
        if (choice?.finish_reason) finish = choice.finish_reason === "length" ? "length" : "stop";
        if (chunk.usage) {
          const completion = chunk.usage.completion_tokens ?? 0;
          yield {
            type: "done",
            finish_reason: finish ?? "stop",
            usage: {
              prompt_tokens: chunk.usage.prompt_tokens ?? 0,
              completion_tokens: completion,
              forward_passes: chunk.usage.forward_passes ?? completion,
            },
          };
          return;
        }
      }
      // [DONE] without a usage chunk: the upstream ignores include_usage.
      yield {
        type: "done",
        finish_reason: finish ?? "stop",
        usage: { prompt_tokens: 0, completion_tokens: 0, forward_passes: 0 },
      };
    } finally {
      await reader.cancel().catch(() => {});
    }
  }
}
