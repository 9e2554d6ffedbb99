/**
 * A pool of backends behind one `Backend`, all serving the same model (several models: a router
 * of pools, router.ts; a request's `model` is passed on as it is): it picks a member, retries elsewhere before the first
 * committed block, and after it fails over by resuming on another member from the token ids
 * already streamed, so the client sees neither lost nor repeated text.
 *
 * - Choice: among members whose circuit is closed (or half-open: its cooldown has passed), the one
 *   with the fewest streams in flight per unit of weight; ties go round robin.
 * - Circuit breaking: `failureThreshold` failures in a row open a member's circuit for
 *   `cooldownMs`; after that the member is tried again (half-open): one more failure reopens it,
 *   a success closes it.
 * - Timeouts: `firstEventMs` for a stream to start, `idleMs` between events; a member that
 *   exceeds either is treated as failed.
 * - What counts as a failure: unreachable, a refusal other than the request's own fault, a broken
 *   or truncated stream, an `error` event. A request the backend calls invalid (400) is the
 *   client's and is not retried. The client's own abort ends everything and is no failure.
 * - One request tries each member at most once, `maxAttempts` members in all, failovers included.
 * - After a failover the new member's `start` is swallowed (the client had one), its blocks keep
 *   their indices (resume continues the count), and `done.usage` covers every member's work.
 *
 * Its state (circuits, streams in flight) lives in the instance: in Workers, per isolate. Health
 * is learnt from traffic, and a member whose cooldown has passed is probed (`health()`) before a
 * request goes to it; there are no background probes, which an isolate cannot run between
 * requests.
 */
import type {
  EditRequest,
  EditResult,
  GenerateEvent,
  GenerateRequest,
  Verification,
  VerifyRequest,
} from "../../protocol/src/index.ts";
import { type Backend, BackendError, type StreamOptions, UNAVAILABLE } from "./backend.ts";

export interface PoolMember {
  backend: Backend;
  /** Relative capacity (default 1): a member of weight 2 gets twice the streams. */
  weight?: number;
}

export interface PoolOptions {
  members: PoolMember[];
  /** Failures in a row that open a member's circuit (default 2). */
  failureThreshold?: number;
  /** How long an open circuit stays open (default 10 s). */
  cooldownMs?: number;
  /** How long a stream may take to send its first event (default 10 s). */
  firstEventMs?: number;
  /** How long a stream may stay silent between events, and a verify or edit call take (default 30 s). */
  idleMs?: number;
  /** Members tried for one request, failovers included (default: every member once, at most 4). */
  maxAttempts?: number;
  /** Injected for tests. */
  now?: () => number;
  /** Told about each failure (for logs): which member, what happened. */
  onFailure?: (memberId: string, detail: string) => void;
}

/** `PoolOptions` with every default filled in. */
type Settings = Required<Omit<PoolOptions, "members">>;

function settle(options: PoolOptions): Settings {
  return {
    failureThreshold: options.failureThreshold ?? 2,
    cooldownMs: options.cooldownMs ?? 10_000,
    firstEventMs: options.firstEventMs ?? 10_000,
    idleMs: options.idleMs ?? 30_000,
    maxAttempts: options.maxAttempts ?? Math.min(options.members.length, 4),
    now: options.now ?? Date.now,
    onFailure: options.onFailure ?? (() => {}),
  };
}

interface MemberState {
  backend: Backend;
  weight: number;
  inFlight: number;
  failures: number;
  openUntil: number;
}

/** One request's share of the pool: the members it has tried and how many tries it has left. */
interface Tries {
  tried: Set<MemberState>;
  left: number;
}

/**
 * How a backend serves one request on an attempt, or undefined where it cannot (a member
 * without `verify`, say): such members are never picked for it.
 */
type Serve<T> = (backend: Backend) => ((attempt: Attempt) => Promise<T>) | undefined;

/** A stream that has sent its first event (read while opening, so that a dud fails early). */
interface Opened {
  attempt: Attempt;
  first: GenerateEvent;
}

type Block = Extract<GenerateEvent, { type: "block" }>;
type Done = Extract<GenerateEvent, { type: "done" }>;
type ErrorEvent = Extract<GenerateEvent, { type: "error" }>;

export class BackendPool implements Backend {
  readonly id = "pool";
  private readonly settings: Settings;
  private readonly members: MemberState[];
  private turn = 0;

  constructor(options: PoolOptions) {
    if (options.members.length === 0) throw new Error("a backend pool needs at least one member");
    this.settings = settle(options);
    this.members = options.members.map(({ backend, weight = 1 }) => ({
      backend,
      weight,
      inFlight: 0,
      failures: 0,
      openUntil: 0,
    }));
  }

  /** Each member's state, for health endpoints and tests. */
  status(): { id: string; inFlight: number; failures: number; open: boolean }[] {
    const now = this.settings.now();
    return this.members.map((m) => ({
      id: m.backend.id,
      inFlight: m.inFlight,
      failures: m.failures,
      open: m.openUntil > now,
    }));
  }

  async doStream(
    request: GenerateRequest,
    options: StreamOptions = {},
  ): Promise<AsyncIterable<GenerateEvent>> {
    const tries = this.tries();
    const opened = await this.onSomeMember(tries, options.signal, this.stream(request), {
      unavailable: "No model backend is available; try again shortly.",
    });
    return this.relay(request, opened, tries, options.signal);
  }

  /** Verification on the least loaded member that can verify, retried on others like a stream's start. */
  verify(request: VerifyRequest, options: StreamOptions = {}): Promise<Verification> {
    return this.call((backend) => backend.verify?.bind(backend), request, options);
  }

  /** Edits on the least loaded member that can edit, retried on others like a stream's start. */
  edit(request: EditRequest, options: StreamOptions = {}): Promise<EditResult> {
    return this.call((backend) => backend.edit?.bind(backend), request, options);
  }

  /** One request–answer call on a member that offers it (`method`), within `idleMs`. */
  private call<Request, Answer>(
    method: (backend: Backend) => ((request: Request, options: StreamOptions) => Promise<Answer>) | undefined,
    request: Request,
    options: StreamOptions,
  ): Promise<Answer> {
    const serve: Serve<Answer> = (backend) => {
      const run = method(backend);
      if (!run) return undefined;
      return async (attempt) => {
        const answer = await attempt.within(
          run(request, { signal: attempt.signal }),
          this.settings.idleMs,
          `${backend.id} did not answer in time`,
        );
        this.finish(attempt);
        return answer;
      };
    };
    return this.onSomeMember(this.tries(), options.signal, serve, {
      unavailable: "No model backend can answer now; try again shortly.",
    });
  }

  /** Opening `request`'s stream, which every backend can. */
  private stream(request: GenerateRequest): Serve<Opened> {
    return () => (attempt) => this.open(attempt, request);
  }

  private tries(): Tries {
    return { tried: new Set(), left: this.settings.maxAttempts };
  }

  /**
   * The one attempt loop, for a stream's start, a failover and a call alike: `serve` on the next
   * member picked, until it succeeds. A failure counts against its member and the next one is
   * tried, unless the client has left or `final(error)` (by default: the request is the client's
   * own fault). When no member is left, the last failure is thrown (or a 503 saying `unavailable`).
   */
  private async onSomeMember<T>(
    tries: Tries,
    signal: AbortSignal | undefined,
    serve: Serve<T>,
    { final = (error: unknown) => !retriable(error), unavailable = UNAVAILABLE } = {},
  ): Promise<T> {
    let last: unknown;
    while (tries.left > 0) {
      const member = await this.pick((m) => !tries.tried.has(m) && serve(m.backend) !== undefined);
      const run = member && serve(member.backend);
      if (!member || !run) break;
      tries.tried.add(member);
      tries.left--;
      const attempt = new Attempt(member, signal, this.settings.idleMs);
      try {
        return await run(attempt);
      } catch (error) {
        this.release(attempt, signal?.aborted ? undefined : error);
        if (signal?.aborted || final(error)) throw error;
        last = error;
      }
    }
    throw last instanceof BackendError ? last : new BackendError("backend_unavailable", unavailable, 503);
  }

  /**
   * The member to try next, of those `candidate` accepts. One whose circuit was open and whose
   * cooldown has passed is first asked for its health, where the backend can say (a Sprout node's
   * /readyz): one still not ready stays open for another cooldown, and no request is spent on it.
   */
  private async pick(candidate: (m: MemberState) => boolean): Promise<MemberState | undefined> {
    const notReady = new Set<MemberState>();
    for (;;) {
      const member = this.choose((m) => candidate(m) && !notReady.has(m));
      if (!member || member.openUntil === 0 || !member.backend.health) return member;
      if (await member.backend.health().catch(() => false)) return member;
      member.openUntil = this.settings.now() + this.settings.cooldownMs;
      notReady.add(member);
    }
  }

  /** Closed or half-open circuits only, least loaded per weight, round robin on ties. */
  private choose(candidate: (m: MemberState) => boolean): MemberState | undefined {
    const now = this.settings.now();
    const open = this.members.filter((m) => candidate(m) && m.openUntil <= now);
    if (open.length === 0) return undefined;
    const load = (m: MemberState) => m.inFlight / m.weight;
    const least = Math.min(...open.map(load));
    const candidates = open.filter((m) => load(m) === least);
    return candidates[this.turn++ % candidates.length];
  }

  /** Starts a stream on the attempt's member and waits for its first event (within `firstEventMs`). */
  private async open(attempt: Attempt, request: GenerateRequest): Promise<Opened> {
    const { backend } = attempt.member;
    const { firstEventMs } = this.settings;
    attempt.start(
      await attempt.within(
        backend.doStream(request, { signal: attempt.signal }),
        firstEventMs,
        `${backend.id} did not answer in time`,
      ),
    );
    const first = await attempt.next(firstEventMs);
    if (first === undefined || first.type === "error") {
      throw new BackendError("backend_unavailable", UNAVAILABLE, 503, `${backend.id} failed before starting`);
    }
    return { attempt, first };
  }

  /** Relays a stream's events, failing over to other members (resuming) until `done`. */
  private async *relay(
    request: GenerateRequest,
    opened: Opened,
    tries: Tries,
    signal?: AbortSignal,
  ): AsyncGenerator<GenerateEvent> {
    const sent = new Sent(request);
    let current = opened;
    try {
      for (;;) {
        try {
          yield* this.relayMember(current, sent);
          return;
        } catch (failure) {
          if (signal?.aborted) throw failure;
          this.release(current.attempt, failure);
          sent.memberFailed();
          const next = await this.takeOver(failure, sent, tries, signal);
          if (!next) {
            // No member can take over: a member's own `error` event is relayed as it is.
            if (!(failure instanceof MemberError)) throw failure;
            yield failure.event;
            return;
          }
          current = next;
        }
      }
    } finally {
      this.release(current.attempt); // the client stopped reading (a no-op once released)
    }
  }

  /** Relays one member's events until its `done`; throws when it fails or ends without one. */
  private async *relayMember({ attempt, first }: Opened, sent: Sent): AsyncGenerator<GenerateEvent> {
    for (let event: GenerateEvent | undefined = first; event !== undefined; event = await attempt.next()) {
      switch (event.type) {
        case "error":
          throw new MemberError(attempt.member.backend.id, event);
        case "start":
          if (sent.started) continue; // a member that took over: the client had its start
          sent.started = true;
          break;
        case "block":
          sent.block(event);
          break;
        case "done":
          this.finish(attempt);
          yield sent.done(event);
          return;
      }
      yield event;
    }
    const id = attempt.member.backend.id;
    throw new BackendError("bad_response", UNAVAILABLE, 502, `${id} ended without done`);
  }

  /**
   * A member to resume on after `failure`, from what the client already has; undefined when none
   * can: the failure was the request's own, nothing is left to generate, or no member takes it.
   */
  private async takeOver(
    failure: unknown,
    sent: Sent,
    tries: Tries,
    signal?: AbortSignal,
  ): Promise<Opened | undefined> {
    if (!retriable(failure) || sent.complete) return undefined;
    // Any refusal means this member cannot take over (an upstream that cannot resume says the
    // request is invalid): try the next one.
    return this.onSomeMember(tries, signal, this.stream(sent.resumed()), { final: () => false }).catch(
      (error: unknown) => {
        if (signal?.aborted) throw error;
        return undefined;
      },
    );
  }

  /**
   * A member answered in full (a stream's `done`, a call's answer): its slot is freed and its
   * circuit closed. Nothing is left to abort (in workerd aborting a finished fetch's signal
   * costs more than the rest of the request): its stream, if any, is only closed.
   */
  private finish(attempt: Attempt): void {
    if (attempt.end(false)) this.record(attempt.member);
  }

  /** Ends an attempt, aborting its work: frees its slot and records how it went for the member's circuit. */
  private release(attempt: Attempt, error?: unknown): void {
    if (attempt.end(true)) this.record(attempt.member, error);
  }

  private record(member: MemberState, error?: unknown): void {
    if (error === undefined) {
      member.failures = 0;
      member.openUntil = 0;
      return;
    }
    if (!retriable(error)) return;
    member.failures++;
    this.settings.onFailure(member.backend.id, error instanceof BackendError ? error.detail : String(error));
    if (member.failures >= this.settings.failureThreshold) {
      member.openUntil = this.settings.now() + this.settings.cooldownMs;
    }
  }
}

/** A request the backend called invalid is the client's fault: no other member would take it. */
function retriable(error: unknown): boolean {
  return !(error instanceof BackendError && error.code === "invalid_request");
}

/** A member's own `error` event, as a failure: relayed as it is when no member can take over. */
class MemberError extends BackendError {
  constructor(
    memberId: string,
    readonly event: ErrorEvent,
  ) {
    super("backend_unavailable", UNAVAILABLE, 503, `${memberId}: ${event.message}`);
  }
}

/** What the client has been sent of one generation, across members: where a member resumes, and the usage. */
class Sent {
  started = false;
  private readonly ids: number[];
  private forwardsOfFailed = 0; // spent by members that failed, counted from their blocks
  private forwardsOfCurrent = 0;

  constructor(private readonly request: GenerateRequest) {
    this.ids = [...(request.committed ?? [])];
  }

  block(event: Block): void {
    // A backend without token ids or steps (an OpenAI-compatible upstream) leaves them out.
    this.ids.push(...(event.ids ?? []));
    this.forwardsOfCurrent += event.steps ?? 0;
  }

  /** The current member failed: the next one counts its own forwards. */
  memberFailed(): void {
    this.forwardsOfFailed += this.forwardsOfCurrent;
    this.forwardsOfCurrent = 0;
  }

  get complete(): boolean {
    return this.ids.length >= this.request.max_tokens;
  }

  /** The request again, to resume after what was sent. */
  resumed(): GenerateRequest {
    return { ...this.request, committed: [...this.ids] };
  }

  /** The last member's `done`, its usage covering every member's work. */
  done(event: Done): Done {
    return {
      ...event,
      usage: {
        ...event.usage,
        completion_tokens: this.ids.length - (this.request.committed?.length ?? 0),
        forward_passes: event.usage.forward_passes + this.forwardsOfFailed,
      },
    };
  }
}

/** A wait of an attempt: when it times out, with what, and how to tell the waiter. */
interface Wait {
  deadline: number;
  detail: string;
  reject: (error: BackendError) => void;
}

/**
 * One try of one member: it holds a slot on the member (`inFlight`) until it ends, has its own
 * abort signal (tied to the client's), and times its reads.
 */
class Attempt {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private iterator: AsyncIterator<GenerateEvent> | undefined;
  private ended = false;
  /** What it waits for now (a stream's next event, a call's answer), and its timer. */
  private waiting: Wait | undefined;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private watchdogAt = 0;

  constructor(
    readonly member: MemberState,
    client: AbortSignal | undefined,
    private readonly idleMs: number,
  ) {
    member.inFlight++;
    this.signal = this.controller.signal;
    if (client?.aborted) this.controller.abort();
    client?.addEventListener("abort", () => this.controller.abort(), { once: true });
  }

  start(events: AsyncIterable<GenerateEvent>): void {
    this.iterator = events[Symbol.asyncIterator]();
  }

  async next(timeoutMs = this.idleMs): Promise<GenerateEvent | undefined> {
    const iterator = this.iterator;
    if (!iterator) return undefined;
    const result = await this.within(iterator.next(), timeoutMs, `${this.member.backend.id} went silent`);
    return result.done ? undefined : result.value;
  }

  /**
   * `promise`, or a 503 BackendError after `ms`, this attempt aborted first. One timer per
   * attempt (the watchdog), not one per wait: a stream waits once per event, and a wait whose
   * deadline is later than the watchdog's leaves it be; when it fires, it re-arms for the wait
   * then in progress, if that one still has time.
   */
  within<T>(promise: Promise<T>, ms: number, detail: string): Promise<T> {
    promise.catch(() => {}); // if the timeout wins, the abort it causes rejects this one: expected
    return new Promise<T>((resolve, reject) => {
      const wait: Wait = { deadline: Date.now() + ms, detail, reject };
      this.waiting = wait;
      this.arm(wait.deadline);
      promise.then(
        (value) => {
          if (this.waiting === wait) this.waiting = undefined;
          resolve(value);
        },
        (error: unknown) => {
          if (this.waiting === wait) this.waiting = undefined;
          reject(error);
        },
      );
    });
  }

  /** The watchdog fires by `deadline` at the latest. */
  private arm(deadline: number): void {
    if (this.watchdog !== undefined && this.watchdogAt <= deadline) return;
    clearTimeout(this.watchdog);
    this.watchdogAt = deadline;
    this.watchdog = setTimeout(() => this.bark(), Math.max(0, deadline - Date.now()));
  }

  private bark(): void {
    this.watchdog = undefined;
    const wait = this.waiting;
    if (!wait || this.ended) return;
    if (Date.now() < wait.deadline) {
      this.arm(wait.deadline);
      return;
    }
    this.waiting = undefined;
    this.abort();
    wait.reject(new BackendError("backend_unavailable", UNAVAILABLE, 503, wait.detail));
  }

  /** Frees its slot, aborting its work (or, where it finished, closing its stream); false when it had already ended. */
  end(abort: boolean): boolean {
    if (this.ended) return false;
    this.ended = true;
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    if (abort) this.abort();
    else void this.iterator?.return?.().catch(() => {});
    this.member.inFlight--;
    return true;
  }

  private abort(): void {
    this.controller.abort();
    void this.iterator?.return?.().catch(() => {});
  }
}
