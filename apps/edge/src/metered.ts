/**
 * `metered(backend, meter)`: the backend a route is given (inject-backend.ts), booking what each
 * call consumed against the caller's key. A stream holds the key's lease from `doStream` until
 * its iterator ends, throws or is returned, and books its usage (`done.usage`; for a stream cut
 * short, the prompt and the blocks that got through); a verification books the tokens it scored,
 * an edit the tokens it read and wrote. Every route and the queue consumer go through this, so
 * none can forget to meter.
 */
import type { Backend, StreamOptions } from "../../../adapters/src/index.ts";
import type { GenerateEvent, GenerateRequest } from "../../../protocol/src/index.ts";
import type { Meter } from "./meter.ts";

export function metered(backend: Backend, meter: Meter): Backend {
  /** A call under a hold, booking what `tokensOf` says its answer consumed. */
  const booked = async <Answer>(call: () => Promise<Answer>, tokensOf: (answer: Answer) => number) => {
    const release = meter.hold();
    try {
      const answer = await call();
      meter.book(tokensOf(answer));
      return answer;
    } finally {
      release();
    }
  };
  const verify = backend.verify?.bind(backend);
  const edit = backend.edit?.bind(backend);
  return {
    id: backend.id,
    async doStream(request: GenerateRequest, options?: StreamOptions) {
      const release = meter.hold();
      try {
        return meteredEvents(await backend.doStream(request, options), meter, release);
      } catch (error) {
        release();
        throw error;
      }
    },
    verify:
      verify &&
      ((request, options) =>
        booked(
          () => verify(request, options),
          (v) => v.tokens,
        )),
    edit:
      edit &&
      ((request, options) =>
        booked(
          () => edit(request, options),
          (result) => result.tokens,
        )),
    health: backend.health?.bind(backend),
    models: backend.models?.bind(backend),
    model: backend.model?.bind(backend),
  };
}

/** The same events; when the iteration ends (done, thrown or returned), books its tokens and ends its hold. */
function meteredEvents(
  events: AsyncIterable<GenerateEvent>,
  meter: Meter,
  release: () => void,
): AsyncIterable<GenerateEvent> {
  const inner = events[Symbol.asyncIterator]();
  let promptTokens = 0;
  let completionTokens = 0;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    meter.book(promptTokens + completionTokens);
    release();
  };
  const count = (event: GenerateEvent) => {
    if (event.type === "start") promptTokens = event.prompt_tokens ?? 0;
    if (event.type === "block") completionTokens += event.tokens ?? 0;
    if (event.type === "done") {
      // The backend's own count is authoritative (a pool's covers every member it used).
      promptTokens = event.usage.prompt_tokens;
      completionTokens = event.usage.completion_tokens;
    }
  };
  const iterator: AsyncIterator<GenerateEvent> = {
    async next() {
      try {
        const result = await inner.next();
        if (result.done) end();
        else count(result.value);
        return result;
      } catch (error) {
        end();
        throw error;
      }
    },
    async return(value?: unknown) {
      end();
      await inner.return?.(value);
      return { done: true, value: undefined };
    },
  };
  return { [Symbol.asyncIterator]: () => iterator };
}
