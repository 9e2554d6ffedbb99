/**
 * A pool of backends behind one `Backend`: it picks a member, retries elsewhere before the first
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
  failureThreshold?: number;
  cooldownMs?: number;
  firstEventMs?: number;
  idleMs?: number;
  /** Members tried for one request, failovers included (default: every member once, at most 4). */
  maxAttempts?: number;
  /** Injected for tests. */
  now?: () => number;
  /** Told about each failure (for logs): which member, what happened. */
  onFailure?: (memberId: string, detail: string) => void;
}

interface MemberState {
  backend: Backend;
  weight: number;
  inFlight: number;
  failures: number;
  openUntil: number;
}

type Block = Extract<GenerateEvent, { type: "block" }>;
type Done = Extract<GenerateEvent, { type: "done" }>;

export class BackendPool implements Backend {
  readonly id = "pool";
  private readonly members: MemberState[];
  private readonly now: () => number;
  private turn = 0;

  constructor(private readonly options: PoolOptions) {
    if (options.members.length === 0) throw new Error("a backend pool needs at least one member");
    this.members = options.members.map(({ backend, weight = 1 }) => ({
      backend,
      weight,
      inFlight: 0,
      failures: 0,
      openUntil: 0,
    }));
    this.now = options.now ?? Date.now;
  }

  /** Each member's state, for health endpoints and tests. */
  status(): { id: string; inFlight: number; failures: number; open: boolean }[] {
    const now = this.now();
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
    const attempts = this.options.maxAttempts ?? Math.min(this.members.length, 4);
    const tried = new Set<MemberState>();
    let last: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const member = await this.pick(tried);
      if (!member) break;
      tried.add(member);
      try {
        const first = await this.open(member, request, options.signal);
        return this.relay(request, first, tried, attempts, options.signal);
      } catch (error) {
        if (options.signal?.aborted || !this.retriable(error)) throw error;
        last = error;
      }
    }
    throw last instanceof BackendError
      ? last
      : new BackendError("backend_unavailable", "No model backend is available; try again shortly.", 503);
  }

  /** Verification on the least loaded member that can verify, retried on others like a stream's start. */
  verify(request: VerifyRequest, options: StreamOptions = {}): Promise<Verification> {
    return this.call((backend) => backend.verify?.bind(backend), request, options);
  }

  /** Edits on the least loaded member that can edit, retried on others like a stream's start. */
  edit(request: EditRequest, options: StreamOptions = {}): Promise<EditResult> {
    return this.call((backend) => backend.edit?.bind(backend), request, options);
  }

  /** One request–answer call on a member that offers it (`method`), retried on others. */
  private async call<Request, Answer>(
    method: (backend: Backend) => ((request: Request, options: StreamOptions) => Promise<Answer>) | undefined,
    request: Request,
    options: StreamOptions,
  ): Promise<Answer> {
    const tried = new Set<MemberState>(this.members.filter((m) => !method(m.backend)));
    let last: unknown;
    for (
      let attempt = 0;
      attempt < (this.options.maxAttempts ?? Math.min(this.members.length, 4));
      attempt++
    ) {
      const member = await this.pick(tried);
      const run = member && method(member.backend);
      if (!member || !run) break;
      tried.add(member);
      const state = new Attempt(member, options.signal, this.options.idleMs ?? 30_000);
      member.inFlight++;
      try {
        const answer = await withTimeout(
          run(request, { signal: state.signal }),
          this.options.idleMs ?? 30_000,
          () => state.abort(),
          `${member.backend.id} did not answer in time`,
        );
        this.release(state);
        return answer;
      } catch (error) {
        this.release(state, options.signal?.aborted ? undefined : error);
        if (options.signal?.aborted || !this.retriable(error)) throw error;
        last = error;
      }
    }
    throw last instanceof BackendError
      ? last
      : new BackendError("backend_unavailable", "No model backend can answer now; try again shortly.", 503);
  }

  /**
   * The member to try next. One whose circuit was open and whose cooldown has passed is first
   * asked for its health, where the backend can say (a Sprout node's /readyz): a member still
   * not ready stays open for another cooldown, and no request is spent finding that out.
   */
  private async pick(exclude: Set<MemberState>): Promise<MemberState | undefined> {
    const skipped = new Set(exclude);
    for (;;) {
      const member = this.choose(skipped);
      if (!member || member.openUntil === 0 || !member.backend.health) return member;
      if (await member.backend.health().catch(() => false)) return member;
      member.openUntil = this.now() + (this.options.cooldownMs ?? 10_000);
      skipped.add(member);
    }
  }

  /** The member to try next: closed or half-open circuits only, least loaded per weight, round robin on ties. */
  private choose(exclude: Set<MemberState>): MemberState | undefined {
    const now = this.now();
    const open = this.members.filter((m) => !exclude.has(m) && m.openUntil <= now);
    if (open.length === 0) return undefined;
    const load = (m: MemberState) => m.inFlight / m.weight;
    const least = Math.min(...open.map(load));
    const candidates = open.filter((m) => load(m) === least);
    return candidates[this.turn++ % candidates.length];
  }

  private retriable(error: unknown): boolean {
    return !(error instanceof BackendError && error.code === "invalid_request");
  }

  /** Starts a stream on `member` and waits for its first event (within `firstEventMs`). */
  private async open(member: MemberState, request: GenerateRequest, signal?: AbortSignal): Promise<Attempt> {
    const attempt = new Attempt(member, signal, this.options.idleMs ?? 30_000);
    member.inFlight++;
    try {
      const events = await withTimeout(
        member.backend.doStream(request, { signal: attempt.signal }),
        this.options.firstEventMs ?? 10_000,
        () => attempt.abort(),
        `${member.backend.id} did not answer in time`,
      );
      attempt.start(events);
      const first = await attempt.next(this.options.firstEventMs ?? 10_000);
      if (first === undefined || first.type === "error") {
        throw new BackendError(
          "backend_unavailable",
          UNAVAILABLE,
          503,
          `${member.backend.id} failed before starting`,
        );
      }
      attempt.pending = first;
      return attempt;
    } catch (error) {
      this.release(attempt, signal?.aborted ? undefined : error);
      throw error;
    }
  }

  /** Relays an attempt's events, failing over to other members (resuming) until `done`. */
  private async *relay(
    request: GenerateRequest,
    first: Attempt,
    tried: Set<MemberState>,
    attempts: number,
    signal?: AbortSignal,
  ): AsyncGenerator<GenerateEvent> {
    const committed: number[] = [...(request.committed ?? [])];
    let earlierForwards = 0; // forwards spent by members that failed, counted from their blocks
    let started = false;
    let current: Attempt | undefined = first;
    let used = 1;
    /** The last member's own `error` event: relayed as it is when no member can take over. */
    let nodeError: GenerateEvent | undefined;
    try {
      while (current) {
        const attempt: Attempt = current;
        let forwardsHere = 0;
        try {
          for (let event = attempt.take(); event !== undefined; event = await attempt.next()) {
            if (event.type === "error") {
              nodeError = event;
              throw new BackendError(
                "backend_unavailable",
                UNAVAILABLE,
                503,
                `${attempt.member.backend.id}: ${event.message}`,
              );
            }
            if (event.type === "start") {
              if (started) continue;
              started = true;
            }
            if (event.type === "block") {
              committed.push(...((event as Block).ids ?? []));
              forwardsHere += (event as Block).steps ?? 0;
            }
            if (event.type === "done") {
              const done = event as Done;
              this.release(attempt);
              current = undefined;
              yield {
                ...done,
                usage: {
                  ...done.usage,
                  completion_tokens: committed.length - (request.committed?.length ?? 0),
                  forward_passes: done.usage.forward_passes + earlierForwards,
                },
              };
              return;
            }
            yield event;
          }
          throw new BackendError(
            "bad_response",
            UNAVAILABLE,
            502,
            `${attempt.member.backend.id} ended without done`,
          );
        } catch (error) {
          if (signal?.aborted) throw error;
          this.release(attempt, error);
          current = undefined;
          earlierForwards += forwardsHere;
          const giveUp = (): GenerateEvent => {
            if (nodeError) return nodeError;
            throw error;
          };
          if (!this.retriable(error) || committed.length >= request.max_tokens) {
            yield giveUp();
            return;
          }
          // Fail over: resume on another member from what the client already has.
          const resumed = { ...request, committed: [...committed] };
          while (!current && used < attempts) {
            const member = await this.pick(tried);
            if (!member) break;
            tried.add(member);
            used++;
            // Any refusal here means this member cannot take over (an upstream that cannot
            // resume says the request is invalid): try the next one.
            current = await this.open(member, resumed, signal).catch((e: unknown) => {
              if (signal?.aborted) throw e;
              return undefined;
            });
          }
          if (!current) {
            yield giveUp();
            return;
          }
          nodeError = undefined;
        }
      }
    } finally {
      if (current) this.release(current); // the client stopped reading
    }
  }

  /** Ends an attempt: frees its slot and records how it went for the member's circuit. */
  private release(attempt: Attempt, error?: unknown): void {
    if (attempt.released) return;
    attempt.released = true;
    attempt.abort();
    const member = attempt.member;
    member.inFlight--;
    if (error === undefined) {
      member.failures = 0;
      member.openUntil = 0;
      return;
    }
    if (!this.retriable(error)) return;
    member.failures++;
    const detail = error instanceof BackendError ? error.detail : String(error);
    this.options.onFailure?.(member.backend.id, detail);
    if (member.failures >= (this.options.failureThreshold ?? 2)) {
      member.openUntil = this.now() + (this.options.cooldownMs ?? 10_000);
    }
  }
}

/** One stream from one member: its own abort signal (tied to the client's) and timed reads. */
class Attempt {
  readonly signal: AbortSignal;
  pending: GenerateEvent | undefined;
  released = false;
  private readonly controller = new AbortController();
  private iterator: AsyncIterator<GenerateEvent> | undefined;

  constructor(
    readonly member: MemberState,
    client: AbortSignal | undefined,
    private readonly idleMs: number,
  ) {
    this.signal = this.controller.signal;
    if (client?.aborted) this.controller.abort();
    client?.addEventListener("abort", () => this.controller.abort(), { once: true });
  }

  start(events: AsyncIterable<GenerateEvent>): void {
    this.iterator = events[Symbol.asyncIterator]();
  }

  /** The event read while opening, once. */
  take(): GenerateEvent | undefined {
    const event = this.pending;
    this.pending = undefined;
    return event;
  }

  async next(timeoutMs = this.idleMs): Promise<GenerateEvent | undefined> {
    const iterator = this.iterator;
    if (!iterator) return undefined;
    const id = this.member.backend.id;
    const result = await withTimeout(iterator.next(), timeoutMs, () => this.abort(), `${id} went silent`);
    return result.done ? undefined : result.value;
  }

  abort(): void {
    this.controller.abort();
    void this.iterator?.return?.().catch(() => {});
  }
}

/** `promise`, or a BackendError after `ms` (calling `onTimeout` first). */
async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => void,
  detail: string,
): Promise<T> {
  promise.catch(() => {}); // if the timeout wins, the abort it causes rejects this one: expected
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new BackendError("backend_unavailable", UNAVAILABLE, 503, detail));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
