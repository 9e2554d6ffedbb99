/**
 * Per-key limits through the whole edge, inside workerd: the real limiter Durable Object
 * (`KEY_LIMITER` from the test's bindings), keys in an in-memory KV, and a test double for the
 * backend (FakeBackend). Every route that uses the model books what it consumed against the key
 * (metered.ts), so a spent key gets 429 with Retry-After on each of them; a stream holds its
 * lease until it ends.
 */
/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env as bindings } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { FakeBackend } from "../../../test/support/fake-backend.ts";
import { memoryKv } from "../../../test/support/memory-kv.ts";
import { createEdgeApp } from "./app.ts";
import { sha256Hex } from "./auth.ts";
import type { Env } from "./env.ts";
import { KEY_PREFIX, type KeyRecord, keyIdFor, kvKeyFor } from "./keys.ts";
import type { LimiterNamespace } from "./limiter.ts";

const MODEL_ID = "sprout-tiny";
const KEY_LIMITER = (bindings as { KEY_LIMITER: LimiterNamespace }).KEY_LIMITER;

/** An edge over `backend` and a fresh key with these limits (its own limiter object). */
async function keyWith(limits: Partial<KeyRecord["limits"]>, backend = new FakeBackend()) {
  const key = `${KEY_PREFIX}${crypto.randomUUID()}`;
  const digest = await sha256Hex(key);
  const kv = memoryKv();
  const record: KeyRecord = {
    id: keyIdFor(digest),
    name: "limited",
    scopes: ["completions", "generate", "verify", "jobs"],
    created_at: 0,
    expires_at: null,
    revoked_at: null,
    limits: { requests_per_minute: null, tokens_per_minute: null, concurrency: null, ...limits },
  };
  await kv.put(kvKeyFor(digest), JSON.stringify(record));
  const env: Env = {
    DENOISER_URL: "",
    DENOISER_SECRET: "unused",
    API_KEY_HASHES: "",
    API_KEYS: kv,
    KEY_LIMITER,
  };
  const app = createEdgeApp({ backendFor: () => backend });
  const post = (path: string, body: object) =>
    app.request(
      path,
      {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL_ID, ...body }),
      },
      env,
    );
  return { post, backend };
}

async function expectLimited(response: Response, reason: RegExp) {
  expect(response.status).toBe(429);
  expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  const body = (await response.json()) as { error: { code: string; type: string; message: string } };
  expect(body.error).toMatchObject({ code: "rate_limited", type: "rate_limit_error" });
  expect(body.error.message).toMatch(reason);
}

describe("a key with a small tokens-per-minute limit", () => {
  // Each first call consumes more than 20 tokens (the fake counts one per character or token).
  const code = "def area(r):\n    return 3.14 * r * r\n";
  it.each([
    ["/v1/completions", { prompt: "def f(x):\n", max_tokens: 16 }],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "add two numbers" }], max_tokens: 16 }],
    ["/v1/generate", { prompt: "def f(x):\n", max_tokens: 16 }],
    ["/v1/edits", { code }],
    ["/v1/edits", { code, regions: [{ start: 4, end: 8 }] }],
    ["/v1/verify", { code }],
  ])("gets 429 with Retry-After on %s once the minute's tokens are spent (%j)", async (path, body) => {
    const { post } = await keyWith({ tokens_per_minute: 20 });
    const first = await post(path, body);
    expect(first.status).toBe(200);
    await first.text();
    if (path === "/v1/generate") {
      // A stream books its usage when it ends, after its answer began.
      await expect.poll(async () => (await post(path, body)).status).toBe(429);
    }
    await expectLimited(await post(path, body), /20 tokens per minute/);
  });

  it("is not charged for a verification the cache answers", async () => {
    const { post, backend } = await keyWith({ tokens_per_minute: 1_000 });
    const body = { code: `x = ${Date.now()}\n` };
    expect((await post("/v1/verify", body)).status).toBe(200);
    const again = await post("/v1/verify", body);
    expect(again.status).toBe(200);
    expect(again.headers.get("x-sprout-cache")).toMatch(/^hit-/);
    expect(backend.verifications).toHaveLength(1);
  });
});

describe("a key limited to one request at once", () => {
  it("holds its lease while a stream runs, and frees it when the stream ends", async () => {
    const { post } = await keyWith({ concurrency: 1 }, new FakeBackend({ gapMs: 100 }));
    const stream = await post("/v1/generate", { prompt: "x", max_tokens: 8, block_size: 2 });
    const reader = stream.body?.getReader();
    await reader?.read(); // streaming: it holds the key's one slot
    await expectLimited(await post("/v1/verify", { code: "x = 1\n" }), /1 requests at once/);
    while (!(await reader?.read())?.done) {} // to its end
    await expect.poll(async () => (await post("/v1/verify", { code: "x = 2\n" })).status).toBe(200);
  });

  it("frees it when the client leaves mid-way", async () => {
    const { post, backend } = await keyWith({ concurrency: 1 }, new FakeBackend({ gapMs: 100 }));
    const stream = await post("/v1/completions", {
      prompt: "x",
      max_tokens: 64,
      block_size: 2,
      stream: true,
    });
    const reader = stream.body?.getReader();
    await reader?.read();
    await reader?.cancel();
    await expect.poll(() => backend.cancelled).toBe(1);
    await expect.poll(async () => (await post("/v1/verify", { code: "x = 3\n" })).status).toBe(200);
  });

  it("frees it when the backend fails before the stream starts", async () => {
    const { post, backend } = await keyWith({ concurrency: 1 });
    backend.doStream = async () => {
      throw new Error("connection reset");
    };
    expect((await post("/v1/completions", { prompt: "x", max_tokens: 4 })).status).toBe(500);
    await expect.poll(async () => (await post("/v1/verify", { code: "x = 4\n" })).status).toBe(200);
  });
});
