/**
 * Attacks on the edge's API keys, run inside workerd: no key, malformed headers, forged keys
 * (property-based: any key of the right shape that was never issued), revoked and expired keys,
 * a key in the query string, and a key with too few scopes. Each is refused with a JSON error
 * that never repeats the key; none reaches the backend (a test double, FakeBackend). (The node's refusal of anything without
 * the edge's secret is fuzzed in apps/denoiser/src/fuzz.test.ts; comparison timing is measured
 * by bench/reliability.ts, since a timing assertion in a unit test would be noise.)
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { BackendError } from "../../../adapters/src/index.ts";
import { FakeBackend } from "../../../test/support/fake-backend.ts";
import { memoryKv } from "../../../test/support/memory-kv.ts";
import { createEdgeApp } from "./app.ts";
import { constantTimeEqual, sha256Hex } from "./auth.ts";
import type { Env } from "./env.ts";
import { KEY_PREFIX, type KeyRecord, keyIdFor, kvKeyFor } from "./keys.ts";

// A backend that must never be reached: every request here is refused before it, but one.
const backend = new FakeBackend({
  failWith: new BackendError(
    "backend_unavailable",
    "The model backend is unavailable; try again shortly.",
    503,
  ),
});
const app = createEdgeApp({ backendFor: () => backend });
const BOOTSTRAP = "sk-attack-bootstrap";
const keys = {
  good: `${KEY_PREFIX}good`,
  revoked: `${KEY_PREFIX}revoked`,
  expired: `${KEY_PREFIX}expired`,
  verifyOnly: `${KEY_PREFIX}verify`,
};
let env: Env;

async function storeKey(kv: NonNullable<Env["API_KEYS"]>, key: string, fields: Partial<KeyRecord>) {
  const digest = await sha256Hex(key);
  const record: KeyRecord = {
    id: keyIdFor(digest),
    name: key,
    scopes: ["completions", "generate", "verify", "jobs"],
    created_at: 0,
    expires_at: null,
    revoked_at: null,
    limits: { requests_per_minute: null, tokens_per_minute: null, concurrency: null },
    ...fields,
  };
  await kv.put(kvKeyFor(digest), JSON.stringify(record));
}

beforeAll(async () => {
  const kv = memoryKv();
  const now = Math.floor(Date.now() / 1000);
  await storeKey(kv, keys.good, {});
  await storeKey(kv, keys.revoked, { revoked_at: now - 60 });
  await storeKey(kv, keys.expired, { expires_at: now - 1 });
  await storeKey(kv, keys.verifyOnly, { scopes: ["verify"] });
  env = {
    DENOISER_URL: "", // the backend is the fake above
    DENOISER_SECRET: "unused",
    API_KEY_HASHES: await sha256Hex(BOOTSTRAP),
    API_KEYS: kv,
  };
});

const completion = (headers: Record<string, string>, query = "") =>
  app.request(
    `/v1/completions${query}`,
    {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ model: "sprout-tiny", prompt: "x", max_tokens: 1 }),
    },
    env,
  );

async function expectRefused(response: Response, status: number, code: string, secret?: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const text = await response.text();
  expect(JSON.parse(text).error.code).toBe(code);
  if (secret) expect(text).not.toContain(secret);
}

describe("API key attacks", () => {
  it.each([
    ["no Authorization header", {}, "missing_api_key"],
    ["an empty header", { authorization: "" }, "missing_api_key"],
    ["'Bearer' alone", { authorization: "Bearer" }, "missing_api_key"],
    ["'Bearer ' and spaces", { authorization: "Bearer    " }, "missing_api_key"],
    ["a Basic credential", { authorization: `Basic ${btoa(`user:${keys.good}`)}` }, "missing_api_key"],
    ["two keys", { authorization: `Bearer ${keys.good} ${keys.good}` }, "missing_api_key"],
    ["the key without Bearer", { authorization: keys.good }, "missing_api_key"],
    ["a 64 KiB key", { authorization: `Bearer ${"k".repeat(65_536)}` }, "invalid_api_key"],
    ["the key's sha256 instead of the key", { authorization: "Bearer DIGEST" }, "invalid_api_key"],
  ])("refuses %s with a 401", async (_, headers, code) => {
    const authorization = (headers as { authorization?: string }).authorization?.replace(
      "DIGEST",
      await sha256Hex(BOOTSTRAP),
    );
    await expectRefused(await completion(authorization === undefined ? {} : { authorization }), 401, code);
  });

  it("refuses every forged key of the issued shape, and never repeats it", async () => {
    const forged = fc
      .stringMatching(/^[A-Za-z0-9_-]{43}$/)
      .map((tail) => `${KEY_PREFIX}${tail}`)
      .filter((key) => !Object.values(keys).includes(key));
    await fc.assert(
      fc.asyncProperty(forged, async (key) => {
        await expectRefused(
          await completion({ authorization: `Bearer ${key}` }),
          401,
          "invalid_api_key",
          key,
        );
      }),
      { numRuns: 50, seed: 8 },
    );
  });

  it("refuses a revoked and an expired key, and says which", async () => {
    await expectRefused(
      await completion({ authorization: `Bearer ${keys.revoked}` }),
      401,
      "revoked_api_key",
      keys.revoked,
    );
    await expectRefused(
      await completion({ authorization: `Bearer ${keys.expired}` }),
      401,
      "expired_api_key",
      keys.expired,
    );
  });

  it.each(["key", "api_key", "apikey", "access_token"])(
    "refuses a key in the query string (?%s=), even beside a valid header",
    async (name) => {
      const query = `?${name}=${encodeURIComponent(keys.good)}`;
      await expectRefused(
        await completion({ authorization: `Bearer ${keys.good}` }, query),
        400,
        "key_in_url",
        keys.good,
      );
      await expectRefused(await completion({}, query), 400, "key_in_url", keys.good);
    },
  );

  it("refuses a valid key the scopes it lacks", async () => {
    await expectRefused(
      await completion({ authorization: `Bearer ${keys.verifyOnly}` }),
      403,
      "insufficient_scope",
    );
  });

  it("lets a valid key through (to the node, which is down here: a clear 503)", async () => {
    expect(backend.generations).toEqual([]); // nothing before reached it
    const response = await completion({ authorization: `Bearer ${keys.good}` });
    expect(response.status).toBe(503);
    expect((await response.json()).error.code).toBe("backend_unavailable");
    expect(backend.generations).toHaveLength(1);
  });

  it("compares digests equal only when every character is", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(constantTimeEqual(a, b)).toBe(a === b);
        expect(constantTimeEqual(a, a)).toBe(true);
      }),
      { seed: 8 },
    );
  });
});
