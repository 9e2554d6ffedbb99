/**
 * `FakeBackend`: a test double of the edge's `Backend` (adapters/src/backend.ts), for the edge's
 * own tests: it answers from a script instead of a model, records every request it was given,
 * honours the abort signal, and fails on demand. The edge's behaviour (auth, limits, formats,
 * errors, the cache) is tested against it; the real denoiser node serves the fuzz and end-to-end
 * tests. It runs in workerd and Node (no Node APIs).
 *
 * Its default generation is plain arithmetic, so tests can predict it: token k (counted from the
 * start of the completion, `committed` included) has id k and text `"k "`; blocks hold
 * `block_size` (default 4) tokens, one step each (a `step` event first with `emit_steps`);
 * `max_tokens` tokens in all, then `done` with finish reason "length". A prompt "costs" one token
 * per character (prompt and suffix, or the messages' contents), a verification and an edit one per
 * character of code.
 *
 * It serves the models its script names (default: `sprout-tiny`), each at version `fake-<id>`;
 * several, each its own fake, behind a `ModelRouter` make an edge of several models.
 */
import type { Backend, BackendError, ServedModel, StreamOptions } from "../../adapters/src/index.ts";
import type {
  EditRequest,
  EditResult,
  GenerateEvent,
  GenerateRequest,
  Verification,
  VerifyRequest,
} from "../../protocol/src/index.ts";

export interface FakeScript {
  /** The events of each generation (default: `fakeGeneration`). */
  events?: (request: GenerateRequest) => GenerateEvent[];
  /** Milliseconds of silence before each event after the first. */
  gapMs?: number;
  /** Thrown by every call instead of answering (a backend down, a refused request). */
  failWith?: BackendError;
  /** The answer to every verification (default: parses, plausible). */
  verification?: (request: VerifyRequest) => Verification;
  /** The models it serves (default: `["sprout-tiny"]`). */
  models?: string[];
  /** Its id (default "fake backend"). */
  id?: string;
}

export class FakeBackend implements Backend {
  readonly id: string;
  /** What it was asked, in order. */
  readonly generations: GenerateRequest[] = [];
  readonly verifications: VerifyRequest[] = [];
  readonly edits: EditRequest[] = [];
  /** Generations whose signal fired before they ended. */
  cancelled = 0;

  constructor(private readonly script: FakeScript = {}) {
    this.id = script.id ?? "fake backend";
  }

  async models(): Promise<ServedModel[]> {
    return (this.script.models ?? ["sprout-tiny"]).map((id) => ({ id, version: `fake-${id}` }));
  }

  async doStream(
    request: GenerateRequest,
    { signal }: StreamOptions = {},
  ): Promise<AsyncIterable<GenerateEvent>> {
    this.generations.push(request);
    if (this.script.failWith) throw this.script.failWith;
    const events = (this.script.events ?? fakeGeneration)(request);
    const gapMs = this.script.gapMs ?? 0;
    const fake = this;
    return (async function* () {
      for (const [i, event] of events.entries()) {
        if (i > 0 && gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
        if (signal?.aborted) {
          fake.cancelled++;
          throw new DOMException("The client went away", "AbortError");
        }
        yield event;
      }
    })();
  }

  async verify(request: VerifyRequest): Promise<Verification> {
    this.verifications.push(request);
    if (this.script.failWith) throw this.script.failWith;
    return (
      this.script.verification?.(request) ?? {
        syntax: { ok: true },
        score: 0.5,
        bits_per_token: 1,
        tokens: request.code.length,
        verdict: "plausible",
        forward_passes: 2,
      }
    );
  }

  /** Each region rewritten as `<edit k>`; without regions, a repair that changes nothing. */
  async edit(request: EditRequest): Promise<EditResult> {
    this.edits.push(request);
    if (this.script.failWith) throw this.script.failWith;
    let code = request.code;
    const edits: EditResult["edits"] = [];
    const regions = (request.regions ?? []).toSorted((a, b) => b.start - a.start); // right to left
    for (const [k, { start, end }] of regions.entries()) {
      const after = `<edit ${regions.length - 1 - k}>`;
      code = code.slice(0, start) + after + code.slice(end);
      edits.unshift({ start, end, before: request.code.slice(start, end), after });
    }
    return { code, edits, tokens: request.code.length, forward_passes: Math.max(1, edits.length) };
  }
}

/** The default generation (see the module comment). */
export function fakeGeneration(request: GenerateRequest): GenerateEvent[] {
  const blockSize = request.block_size ?? 4;
  const first = request.committed?.length ?? 0;
  const events: GenerateEvent[] = [
    {
      type: "start",
      model: "fake",
      prompt_tokens: promptLength(request),
      block_size: blockSize,
    },
  ];
  let index = Math.floor(first / blockSize);
  for (let token = first; token < request.max_tokens; token += blockSize, index++) {
    const ids = Array.from({ length: Math.min(blockSize, request.max_tokens - token) }, (_, i) => token + i);
    const texts = ids.map((id) => `${id} `);
    if (request.emit_steps) {
      events.push({ type: "step", block: index, step: 1, committed: ids.length, remaining: 0, state: texts });
    }
    events.push({ type: "block", index, text: texts.join(""), tokens: ids.length, steps: 1, ids });
  }
  const completion = Math.max(0, request.max_tokens - first);
  events.push({
    type: "done",
    finish_reason: "length",
    usage: {
      prompt_tokens: promptLength(request),
      completion_tokens: completion,
      forward_passes: Math.ceil(completion / blockSize),
    },
  });
  return events;
}

const promptLength = (request: GenerateRequest) =>
  request.prompt.length +
  (request.suffix?.length ?? 0) +
  (request.messages ?? []).reduce((sum, m) => sum + m.content.length, 0);
