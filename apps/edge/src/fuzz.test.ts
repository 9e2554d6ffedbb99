/**
 * Property-based tests (fast-check) of every public route's input handling, run inside workerd
 * against the real denoiser node with the shipped model. Whatever arrives — wrong types, huge
 * and negative numbers, deep or huge JSON, invalid UTF-8, wrong content types, text that spells
 * the model's control tokens — the answer is never a 5xx and never a hang, and every error is
 * JSON with a code and a message. Jobs and webhooks get in-memory test doubles of their KV and
 * queue (the real ones run in test/e2e.test.ts): what is fuzzed here is the edge's validation.
 */
import type { Queue } from "@cloudflare/workers-types";
import fc from "fast-check";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { readWithin } from "../../../test/support/deadline.ts";
import { memoryKv } from "../../../test/support/memory-kv.ts";
import { createEdgeApp, MAX_BODY_BYTES } from "./app.ts";
import { sha256Hex } from "./auth.ts";
import { backendFor } from "./backends.ts";
import type { Env } from "./env.ts";
import type { QueueMessage } from "./jobs.ts";

const KEY = "sk-fuzz-key";
const app = createEdgeApp({ backendFor });
let env: Env;
/** How long any one request may take before it counts as a hang. */
const HANG_MS = 30_000;
/** The model's control tokens as text (`<|mask|>`…), from its manifest (test/support/edge-setup.ts). */
const CONTROL_TOKENS = inject("controlTokens");

beforeAll(async () => {
  env = {
    DENOISER_URL: inject("nodeUrl"),
    DENOISER_SECRET: inject("nodeSecret"),
    API_KEY_HASHES: await sha256Hex(KEY),
    JOBS: memoryKv(),
    JOBS_QUEUE: { send: async () => {} } as unknown as Queue<QueueMessage>,
  };
});

const request = (method: string, path: string, body?: BodyInit, contentType = "application/json") =>
  app.request(
    path,
    {
      method,
      headers: {
        authorization: `Bearer ${KEY}`,
        ...(body === undefined ? {} : { "content-type": contentType }),
      },
      body,
    },
    env,
  );

/** The answer, read to its end within HANG_MS: never a 5xx; an error is JSON with a code and a message. */
async function expectClean(pending: Response | Promise<Response>): Promise<{ status: number; body: string }> {
  const { status, contentType, text } = await readWithin(pending, HANG_MS);
  expect(status, text.slice(0, 300)).toBeLessThan(500);
  if (status >= 400) {
    expect(contentType).toMatch(/^application\/json/);
    const { error } = JSON.parse(text) as { error: { code: unknown; message: unknown } };
    expect(typeof error.code).toBe("string");
    expect(typeof error.message === "string" && error.message.length > 0).toBe(true);
  }
  return { status, body: text };
}

/** Values that do not belong in a field: wrong types, extreme numbers, odd text. */
const hostile = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(-1, 0, -(2 ** 31), 2 ** 53, 1e308, -1e308, 1.5, 1e-320, Number.MAX_SAFE_INTEGER + 2),
  fc.string({ unit: "binary", maxLength: 200 }), // any code point, lone surrogates included
  fc.array(fc.constantFrom(...CONTROL_TOKENS, "def ", "\n", "    "), { maxLength: 8 }).map((a) => a.join("")),
  fc.constant("x".repeat(100_000)),
);

/** Each POST route with a small valid body (≤ 2 tokens to generate, so the real node answers fast). */
const VALID: Record<string, (model: string) => Record<string, unknown>> = {
  "/v1/completions": (model) => ({ model, prompt: "def f(x):\n", max_tokens: 2 }),
  "/v1/chat/completions": (model) => ({ model, messages: [{ role: "user", content: "add" }], max_tokens: 2 }),
  "/v1/generate": (model) => ({ model, prompt: "x = ", max_tokens: 2 }),
  "/v1/verify": (model) => ({ model, code: "x = 1\n" }),
  "/v1/edits": (model) => ({ model, code: "x = (1 + 2\n", rounds: 1 }),
  "/v1/jobs": () => ({ type: "completion", request: { prompt: "x", max_tokens: 2 } }),
  "/v1/webhooks": () => ({ url: "https://hooks.example.com/sprout" }),
};
const PATHS = Object.keys(VALID);
const validBody = (path: string) =>
  (VALID[path] as (model: string) => Record<string, unknown>)(inject("modelId"));

/** A valid body with one field replaced by a hostile value, or removed, or an extra field added. */
function mutated(valid: Record<string, unknown>) {
  const fields = Object.keys(valid);
  return fc.oneof(
    fc.record({ field: fc.constantFrom(...fields), value: hostile }).map(({ field, value }) => ({
      ...valid,
      // A valid larger max_tokens is not an attack, just a slower test: only invalid ones here.
      [field]:
        field === "max_tokens" && Number.isInteger(value) && (value as number) > 0 && (value as number) < 1e5
          ? -1
          : value,
    })),
    fc.constantFrom(...fields.filter((f) => f !== "max_tokens")).map((field) => {
      const { [field]: _, ...rest } = valid;
      return rest;
    }),
    fc
      .record({ field: fc.string({ maxLength: 20 }), value: hostile })
      .map(({ field, value }) => ({ ...valid, [field]: value })),
  );
}

describe("every public route, fuzzed", () => {
  it.each(PATHS)("POST %s: any body, never a 5xx or a hang", async (path) => {
    const valid = validBody(path);
    expect((await expectClean(request("POST", path, JSON.stringify(valid)))).status).toBeLessThan(300);
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutated(valid), fc.jsonValue({ maxDepth: 4 })), async (body) => {
        await expectClean(request("POST", path, JSON.stringify(body)));
      }),
      { numRuns: 40, seed: 8 },
    );
  });

  it("answers bytes that are not UTF-8, or not JSON, with a 400", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...PATHS),
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        async (path, bytes) => {
          const { status } = await expectClean(
            request("POST", path, Uint8Array.from([0xff, 0xfe, ...bytes])),
          );
          expect(status).toBe(400);
        },
      ),
      { numRuns: 60, seed: 8 },
    );
  });

  it("says what is wrong with a body of another content type", async () => {
    const contentTypes = fc.oneof(
      fc.constantFrom(
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "",
      ),
      fc.stringMatching(/^[a-z]{1,10}\/[a-z+.-]{1,20}$/).filter((t) => !/json/.test(t)),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...PATHS), contentTypes, async (path, type) => {
        const { status, body } = await expectClean(
          request("POST", path, JSON.stringify(validBody(path)), type),
        );
        expect(status).toBe(400);
        expect(body).toContain("invalid_content_type");
      }),
      { numRuns: 40, seed: 8 },
    );
  });

  it.each([
    ["arrays nested 100,000 deep", `${"[".repeat(100_000)}${"]".repeat(100_000)}`, 400],
    ["objects nested 50,000 deep", `${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}`, 400],
    [
      "a field nested 5,000 deep",
      `{"model":"m","prompt":${"[".repeat(5000)}${"]".repeat(5000)},"max_tokens":1}`,
      400,
    ],
    ["a body over 1 MiB", JSON.stringify({ prompt: "x".repeat(MAX_BODY_BYTES), max_tokens: 1 }), 413],
    ["NaN and Infinity (not JSON)", '{"model":"m","prompt":"x","max_tokens":NaN,"threshold":Infinity}', 400],
    ["an empty body", "", 400],
  ])("answers %s with a JSON error", async (_, body, expected) => {
    for (const path of PATHS) {
      expect((await expectClean(request("POST", path, body))).status).toBe(expected);
    }
  });

  it("answers any id or path under the GET and DELETE routes without a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET /v1/jobs/", "DELETE /v1/webhooks/", "GET /v1/models/", "GET /v1/"),
        fc.string({ unit: "binary", maxLength: 80 }),
        async (route, id) => {
          const [method, path] = route.split(" ") as [string, string];
          const { status } = await expectClean(request(method, `${path}${encodeURIComponent(id)}`));
          expect([200, 404, 405]).toContain(status);
        },
      ),
      { numRuns: 60, seed: 8 },
    );
  });
});

describe("text that spells a control token", () => {
  it("is plain text in a prompt: several tokens each, never the control token itself", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.constantFrom(...CONTROL_TOKENS), fc.constantFrom("x", " = ", "\n", "def f(")), {
          minLength: 1,
          maxLength: 6,
        }),
        async (parts) => {
          const prompt = parts.join("");
          const { status, body } = await expectClean(
            request(
              "POST",
              "/v1/completions",
              JSON.stringify({ model: inject("modelId"), prompt, max_tokens: 1 }),
            ),
          );
          expect(status).toBe(200);
          const spelled = parts.filter((p) => CONTROL_TOKENS.includes(p)).length;
          // As text, `<|mask|>` is at least `<`, `|`, `mask`, `|`, `>` merged into ≥ 3 tokens.
          expect(JSON.parse(body).usage.prompt_tokens).toBeGreaterThanOrEqual(3 * spelled);
        },
      ),
      { numRuns: 25, seed: 8 },
    );
  });
});
