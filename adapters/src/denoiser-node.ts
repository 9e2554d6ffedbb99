/**
 * A Sprout denoiser node reached over HTTP. Its wire is the protocol itself (protocol/src): the
 * requests as JSON, the events as SSE, each validated here, and the version in the
 * `sprout-protocol` header of every answer. A request's `model` travels in its body (the node
 * answers 404 for one it does not serve); the models it serves are those its /readyz lists.
 * Runs in workerd and Node: only `fetch`, web streams and eventsource-parser.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";
import {
  type EditRequest,
  EditResult,
  type GenerateEvent,
  type GenerateRequest,
  NodeErrorBody,
  type NodeEvent,
  NodeReadiness,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  parseNodeEvent,
  Verification,
  type VerifyRequest,
} from "../../protocol/src/index.ts";
import {
  type Backend,
  BackendError,
  BROKEN,
  refusal,
  type ServedModel,
  type StreamOptions,
  UNAVAILABLE,
  unreachable,
} from "./backend.ts";

export interface DenoiserNodeOptions {
  /** Base URL of the node, e.g. `http://127.0.0.1:8788`. */
  url: string;
  /** The shared secret the node expects from the edge. */
  secret: string;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
}

export class DenoiserNodeBackend implements Backend {
  readonly id: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: DenoiserNodeOptions) {
    this.id = `denoiser node ${new URL(options.url).host}`;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  async doStream(
    request: GenerateRequest,
    options: StreamOptions = {},
  ): Promise<AsyncIterable<GenerateEvent>> {
    const response = await this.post("/v1/generate", request, "text/event-stream", options.signal);
    if (!response.body) throw await errorFromResponse(response, this.id);
    return parseEvents(response.body, this.id);
  }

  /** Ready: the node answers /readyz with 200 (model loaded and verified) within 2 s. */
  async health(): Promise<boolean> {
    try {
      const response = await this.fetchImpl(new URL("/readyz", this.options.url), {
        signal: AbortSignal.timeout(2_000),
      });
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false;
    }
  }

  /**
   * The models its /readyz lists (within 2 s): name, graph sha256 as the version, the context a
   * request may fill. A node that is not ready (loading, draining) cannot say: a 503 BackendError.
   */
  async models(options: StreamOptions = {}): Promise<ServedModel[]> {
    const timeout = AbortSignal.timeout(2_000);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await this.fetchImpl(new URL("/readyz", this.options.url), { signal });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      throw unreachable(this.id, error);
    }
    const body = await response.json().catch(() => null);
    if (response.status === 503) {
      throw new BackendError("backend_unavailable", UNAVAILABLE, 503, `${this.id} is not ready`);
    }
    const parsed = NodeReadiness.safeParse(body);
    if (!response.ok || !parsed.success) {
      throw new BackendError("bad_response", BROKEN, 502, `${this.id} sent a broken /readyz`);
    }
    return parsed.data.models.map((m) => ({
      id: m.name,
      version: m.sha256,
      context_length: m.context_length,
    }));
  }

  async verify(request: VerifyRequest, options: StreamOptions = {}): Promise<Verification> {
    const response = await this.post("/v1/verify", request, "application/json", options.signal);
    const parsed = Verification.safeParse(await response.json().catch(() => null));
    if (!parsed.success)
      throw new BackendError("bad_response", BROKEN, 502, `${this.id} sent a broken verification`);
    return parsed.data;
  }

  async edit(request: EditRequest, options: StreamOptions = {}): Promise<EditResult> {
    const response = await this.post("/v1/edit", request, "application/json", options.signal);
    const parsed = EditResult.safeParse(await response.json().catch(() => null));
    if (!parsed.success)
      throw new BackendError("bad_response", BROKEN, 502, `${this.id} sent a broken edit result`);
    return parsed.data;
  }

  /** POSTs JSON to the node; a failure to reach it or a refusal becomes a BackendError. */
  private async post(path: string, body: unknown, accept: string, signal?: AbortSignal): Promise<Response> {
    let response: Response;
    try {
      response = await this.fetchImpl(new URL(path, this.options.url), {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept,
          authorization: `Bearer ${this.options.secret}`,
        },
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw unreachable(this.id, error);
    }
    if (!response.ok) throw await errorFromResponse(response, this.id);
    const version = response.headers.get(PROTOCOL_HEADER);
    if (version !== String(PROTOCOL_VERSION)) {
      await response.body?.cancel();
      throw new BackendError(
        "bad_response",
        BROKEN,
        502,
        `${this.id} speaks protocol ${version ?? "(none)"}, not ${PROTOCOL_VERSION}`,
      );
    }
    return response;
  }
}

async function errorFromResponse(response: Response, id: string): Promise<BackendError> {
  const parsed = NodeErrorBody.safeParse(await response.json().catch(() => null));
  return refusal(response.status, parsed.success ? parsed.data.error.message : "(no error body)", id);
}

/**
 * The node's SSE stream as protocol events. The body is read chunk by chunk and fed to one SSE
 * parser (no stream stages per event); each event is checked with `parseNodeEvent`, the
 * protocol's schema (cheaply for the events of every stream): a node is trusted by its secret,
 * yet a broken or cut stream is still a `bad_response` that the pool fails over from.
 */
async function* parseEvents(body: ReadableStream<BufferSource>, id: string): AsyncGenerator<GenerateEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const messages: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => messages.push(message) });
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      // Taken out before yielding: the consumer may stop at any one of them.
      const ready = messages.splice(0);
      for (const message of ready) {
        const event = toEvent(message, id);
        if (event.type === "done" || event.type === "error") finished = true;
        yield event;
        if (finished) return;
      }
    }
    throw new BackendError("bad_response", BROKEN, 502, `${id} closed the stream before it was done`);
  } finally {
    if (finished) {
      // A node ends its stream after `done`: the end is read, not cancelled (cancelling a body
      // costs workerd more than the rest of a short request). Anything else there is cancelled.
      void reader
        .read()
        .then(({ done }) => (done ? reader.releaseLock() : reader.cancel()))
        .catch(() => {});
    } else {
      // Cancelling the body tells the node we are gone (it stops decoding).
      await reader.cancel().catch(() => {});
    }
  }
}

function toEvent(message: EventSourceMessage, id: string): NodeEvent {
  let json: unknown;
  try {
    json = JSON.parse(message.data);
  } catch {
    throw new BackendError("bad_response", BROKEN, 502, `${id} sent an event that is not JSON`);
  }
  const event = parseNodeEvent(json);
  if (event === undefined || event.type !== message.event) {
    throw new BackendError(
      "bad_response",
      BROKEN,
      502,
      `${id} sent an event outside protocol v${PROTOCOL_VERSION}`,
    );
  }
  return event;
}
