/**
 * Per-key rate limits in a Durable Object (`KEY_LIMITER`, one object per key id, so every edge
 * isolate in the world sees the same counts): requests per minute, tokens per minute and
 * streams at once, from the key's record (keys.ts).
 *
 * `acquire` admits a request or says how long to wait (→ 429 with Retry-After); an admitted
 * request holds a lease until `release`, which also books its tokens (prompt + completion, or
 * what an edit or verification consumed) in the minute's window; `book` books tokens without a
 * lease (a queued job, admitted when it was posted). Windows slide over the last 60 s. A lease
 * not released within 10 minutes (an isolate that died) expires. The windows live in the
 * object's storage, written before each answer, so an object evicted after a quiet spell, or
 * restarted, still counts what its minute held. The object speaks JSON over its `fetch`
 * (POST /acquire, /release, /book); `limiterClient` wraps that.
 */
import type { DurableObjectState } from "@cloudflare/workers-types";
import type { KeyRecord } from "./keys.ts";

const WINDOW_MS = 60_000;
const LEASE_MS = 10 * 60_000;
const STORAGE_KEY = "windows";

export type Admission =
  | { ok: true; lease: string }
  | { ok: false; retryAfterSeconds: number; reason: string };

/** What the object remembers: when requests came, tokens booked, leases held (id → since). */
interface Windows {
  requests: number[];
  tokens: { at: number; count: number }[];
  leases: Record<string, number>;
}

export class KeyLimiter {
  /** The stored windows, read once per instance; every change is written back before answering. */
  private windows: Windows | undefined;

  constructor(private readonly state: DurableObjectState) {}

  async acquire(limits: KeyRecord["limits"]): Promise<Admission> {
    const now = Date.now();
    const windows = await this.load(now);
    const waitFor = (oldest: number) => Math.max(1, Math.ceil((oldest + WINDOW_MS - now) / 1000));
    const { requests_per_minute: rpm, tokens_per_minute: tpm, concurrency } = limits;
    const oldestRequest = windows.requests[0];
    if (rpm !== null && oldestRequest !== undefined && windows.requests.length >= rpm) {
      return { ok: false, retryAfterSeconds: waitFor(oldestRequest), reason: `${rpm} requests per minute` };
    }
    const oldestTokens = windows.tokens[0];
    if (tpm !== null && oldestTokens && windows.tokens.reduce((n, t) => n + t.count, 0) >= tpm) {
      return { ok: false, retryAfterSeconds: waitFor(oldestTokens.at), reason: `${tpm} tokens per minute` };
    }
    if (concurrency !== null && Object.keys(windows.leases).length >= concurrency) {
      return { ok: false, retryAfterSeconds: 1, reason: `${concurrency} requests at once` };
    }
    const lease = crypto.randomUUID();
    windows.requests.push(now);
    windows.leases[lease] = now;
    await this.save();
    return { ok: true, lease };
  }

  async release(lease: string, tokens: number): Promise<void> {
    const windows = await this.load(Date.now());
    delete windows.leases[lease];
    if (tokens > 0) windows.tokens.push({ at: Date.now(), count: tokens });
    await this.save();
  }

  async book(tokens: number): Promise<void> {
    if (!(tokens > 0)) return;
    const windows = await this.load(Date.now());
    windows.tokens.push({ at: Date.now(), count: tokens });
    await this.save();
  }

  async fetch(request: Request): Promise<Response> {
    const body = (await request.json()) as { limits: KeyRecord["limits"]; lease: string; tokens: number };
    const path = new URL(request.url).pathname;
    if (path === "/acquire") return Response.json(await this.acquire(body.limits));
    if (path === "/release") {
      await this.release(body.lease, body.tokens);
      return Response.json({ ok: true });
    }
    if (path === "/book") {
      await this.book(body.tokens);
      return Response.json({ ok: true });
    }
    return new Response("not found", { status: 404 });
  }

  /** The windows as of `now`: what slid out of the last minute and expired leases dropped. */
  private async load(now: number): Promise<Windows> {
    this.windows ??= (await this.state.storage.get<Windows>(STORAGE_KEY)) ?? {
      requests: [],
      tokens: [],
      leases: {},
    };
    const windows = this.windows;
    windows.requests = windows.requests.filter((t) => t > now - WINDOW_MS);
    windows.tokens = windows.tokens.filter((t) => t.at > now - WINDOW_MS);
    for (const [lease, at] of Object.entries(windows.leases)) {
      if (at <= now - LEASE_MS) delete windows.leases[lease];
    }
    return windows;
  }

  private async save(): Promise<void> {
    await this.state.storage.put(STORAGE_KEY, this.windows);
  }
}

/** The narrow view of the binding the edge uses (a DurableObjectNamespace). */
export interface LimiterNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
}

/** A key's limiter as three calls. */
export function limiterClient(namespace: LimiterNamespace, keyId: string) {
  const stub = namespace.get(namespace.idFromName(keyId));
  const call = async (path: string, body: object) =>
    (await stub.fetch(`https://limiter${path}`, { method: "POST", body: JSON.stringify(body) })).json();
  return {
    acquire: (limits: KeyRecord["limits"]) => call("/acquire", { limits }) as Promise<Admission>,
    release: async (lease: string, tokens: number) => {
      await call("/release", { lease, tokens });
    },
    book: async (tokens: number) => {
      await call("/book", { tokens });
    },
  };
}
