/**
 * Per-key rate limits in a Durable Object (`KEY_LIMITER`, one object per key id, so every edge
 * isolate in the world sees the same counts): requests per minute, tokens per minute and
 * streams at once, from the key's record (keys.ts).
 *
 * `acquire` admits a request or says how long to wait (→ 429 with Retry-After); an admitted
 * request holds a lease until `release`, which also books its tokens (prompt + completion) in
 * the minute's window. Windows slide over the last 60 s. A lease not released within 10 minutes
 * (an isolate that died) expires. Counts live in the object's memory: if the object is evicted
 * after a quiet spell, its windows start empty, which errs towards admitting. The object speaks
 * JSON over its `fetch` (POST /acquire, POST /release); `limiterClient` wraps that.
 */
import type { KeyRecord } from "./keys.ts";

const WINDOW_MS = 60_000;
const LEASE_MS = 10 * 60_000;

export type Admission =
  | { ok: true; lease: string }
  | { ok: false; retryAfterSeconds: number; reason: string };

export class KeyLimiter {
  private requests: number[] = [];
  private tokens: { at: number; count: number }[] = [];
  private leases = new Map<string, number>();

  acquire(limits: KeyRecord["limits"]): Admission {
    const now = Date.now();
    this.requests = this.requests.filter((t) => t > now - WINDOW_MS);
    this.tokens = this.tokens.filter((t) => t.at > now - WINDOW_MS);
    for (const [lease, at] of this.leases) if (at <= now - LEASE_MS) this.leases.delete(lease);
    const waitFor = (oldest: number) => Math.max(1, Math.ceil((oldest + WINDOW_MS - now) / 1000));
    const { requests_per_minute: rpm, tokens_per_minute: tpm, concurrency } = limits;
    if (rpm !== null && this.requests.length >= rpm) {
      return {
        ok: false,
        retryAfterSeconds: waitFor(this.requests[0] as number),
        reason: `${rpm} requests per minute`,
      };
    }
    if (tpm !== null && this.tokens.reduce((n, t) => n + t.count, 0) >= tpm) {
      return {
        ok: false,
        retryAfterSeconds: waitFor((this.tokens[0] as { at: number }).at),
        reason: `${tpm} tokens per minute`,
      };
    }
    if (concurrency !== null && this.leases.size >= concurrency) {
      return { ok: false, retryAfterSeconds: 1, reason: `${concurrency} requests at once` };
    }
    const lease = crypto.randomUUID();
    this.requests.push(now);
    this.leases.set(lease, now);
    return { ok: true, lease };
  }

  release(lease: string, tokens: number): void {
    this.leases.delete(lease);
    if (tokens > 0) this.tokens.push({ at: Date.now(), count: tokens });
  }

  async fetch(request: Request): Promise<Response> {
    const body = (await request.json()) as { limits: KeyRecord["limits"]; lease: string; tokens: number };
    const path = new URL(request.url).pathname;
    if (path === "/acquire") return Response.json(this.acquire(body.limits));
    if (path === "/release") {
      this.release(body.lease, body.tokens);
      return Response.json({ ok: true });
    }
    return new Response("not found", { status: 404 });
  }
}

/** The narrow view of the binding the edge uses (a DurableObjectNamespace). */
export interface LimiterNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): { fetch(url: string, init: RequestInit): Promise<Response> };
}

/** A key's limiter as two calls. */
export function limiterClient(namespace: LimiterNamespace, keyId: string) {
  const stub = namespace.get(namespace.idFromName(keyId));
  const call = async (path: string, body: object) =>
    (await stub.fetch(`https://limiter${path}`, { method: "POST", body: JSON.stringify(body) })).json();
  return {
    acquire: (limits: KeyRecord["limits"]) => call("/acquire", { limits }) as Promise<Admission>,
    release: async (lease: string, tokens: number) => {
      await call("/release", { lease, tokens });
    },
  };
}
