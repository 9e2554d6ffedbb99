/**
 * The per-key limiter (limiter.ts) in its real Durable Object, inside workerd: its windows live in
 * the object's storage, so a fresh instance over the same storage (an object evicted and
 * recreated) still counts what the minute held.
 */
/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { KeyRecord } from "./keys.ts";
import { KeyLimiter, type LimiterNamespace } from "./limiter.ts";

const limits = (fields: Partial<KeyRecord["limits"]>): KeyRecord["limits"] => ({
  requests_per_minute: null,
  tokens_per_minute: null,
  concurrency: null,
  ...fields,
});
const namespace = (env as { KEY_LIMITER: LimiterNamespace }).KEY_LIMITER;
const objectFor = (keyId: string) => namespace.get(namespace.idFromName(keyId));

describe("the key limiter", () => {
  it("keeps its windows in storage: a fresh instance still refuses what the minute has spent", async () => {
    await runInDurableObject(objectFor("evicted-requests"), async (_, state) => {
      const perMinute = limits({ requests_per_minute: 1 });
      expect(await new KeyLimiter(state).acquire(perMinute)).toMatchObject({ ok: true });
      expect(await new KeyLimiter(state).acquire(perMinute)).toMatchObject({
        ok: false,
        retryAfterSeconds: expect.any(Number),
        reason: "1 requests per minute",
      });
    });
    await runInDurableObject(objectFor("evicted-tokens"), async (_, state) => {
      const tokens = limits({ tokens_per_minute: 10 });
      const admission = await new KeyLimiter(state).acquire(tokens);
      if (!admission.ok) throw new Error("the first request is admitted");
      await new KeyLimiter(state).release(admission.lease, 12);
      expect(await new KeyLimiter(state).acquire(tokens)).toMatchObject({ ok: false });
      await new KeyLimiter(state).book(0); // booking nothing changes nothing
    });
    await runInDurableObject(objectFor("evicted-leases"), async (_, state) => {
      const oneAtATime = limits({ concurrency: 1 });
      expect(await new KeyLimiter(state).acquire(oneAtATime)).toMatchObject({ ok: true });
      expect(await new KeyLimiter(state).acquire(oneAtATime)).toMatchObject({
        ok: false,
        retryAfterSeconds: 1,
      });
    });
  });

  it("books a queued job's tokens without a lease", async () => {
    await runInDurableObject(objectFor("booked"), async (_, state) => {
      await new KeyLimiter(state).book(50);
      expect(await new KeyLimiter(state).acquire(limits({ tokens_per_minute: 50 }))).toMatchObject({
        ok: false,
      });
      expect(await new KeyLimiter(state).acquire(limits({ tokens_per_minute: 51 }))).toMatchObject({
        ok: true,
      });
    });
  });
});
