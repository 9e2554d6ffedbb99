/**
 * The edge's behaviour, run inside workerd (the Workers Vitest integration, vitest.config.ts)
 * through `app.request`, with a test double for its backend (`FakeBackend`,
 * test/support/fake-backend.ts): auth, formats, validation, errors, streaming, what reaches the
 * backend. No model runs here: the real denoiser node serves the fuzz tests (fuzz.test.ts), and
 * the whole system, bindings included, runs in test/e2e.test.ts. Limits: limits.test.ts.
 */
import { createParser } from "eventsource-parser";
import { beforeAll, describe, expect, it } from "vitest";
import { BackendError } from "../../../adapters/src/index.ts";
import type { GenerateEvent } from "../../../protocol/src/index.ts";
import { FakeBackend, fakeGeneration } from "../../../test/support/fake-backend.ts";
import { createEdgeApp } from "./app.ts";
import { sha256Hex } from "./auth.ts";
import type { Env } from "./env.ts";

const KEY = "sk-test-key";
const MODEL_ID = "sprout-tiny";
const env: Env = {
  DENOISER_URL: "", // the backend is the fake, injected
  DENOISER_SECRET: "unused",
  API_KEY_HASHES: "",
};

beforeAll(async () => {
  env.API_KEY_HASHES = `${"0".repeat(64)}, ${await sha256Hex(KEY)}`;
});

/** An edge whose every request is served by `backend`. */
function edge(backend = new FakeBackend()) {
  const app = createEdgeApp({ backendFor: () => backend });
  const post = (path: string, body: unknown, overrides: Partial<Env> = {}) =>
    app.request(
      path,
      {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
      },
      { ...env, ...overrides },
    );
  return { app, backend, post };
}
const { app, post } = edge();

function dataLines(text: string): string[] {
  const data: string[] = [];
  createParser({ onEvent: (m) => data.push(m.data) }).feed(text);
  return data;
}

/** Named SSE events as [event, data]. */
function namedEvents(text: string): [string, Record<string, unknown>][] {
  const events: [string, Record<string, unknown>][] = [];
  const parser = createParser({ onEvent: (m) => events.push([m.event ?? "message", JSON.parse(m.data)]) });
  parser.feed(text);
  return events;
}

const start: GenerateEvent = { type: "start", model: "fake", prompt_tokens: 1, block_size: 4 };
const usage = { prompt_tokens: 1, completion_tokens: 0, forward_passes: 1 };

describe("auth", () => {
  it.each([
    ["no key", undefined, "missing_api_key"],
    ["a wrong key", "Bearer sk-wrong", "invalid_api_key"],
    ["a key without Bearer", KEY, "missing_api_key"],
  ])("answers 401 with a JSON error for %s", async (_, authorization, code) => {
    const headers: Record<string, string> = authorization ? { authorization } : {};
    const response = await app.request("/v1/models", { headers }, env);
    expect(response.status).toBe(401);
    const body = await response.json();
    expect(body).toMatchObject({ error: { type: "authentication_error", code } });
    expect(JSON.stringify(body)).not.toContain("sk-wrong");
  });

  it("lists the model for a valid key", async () => {
    const response = await app.request("/v1/models", { headers: { authorization: `Bearer ${KEY}` } }, env);
    expect(await response.json()).toMatchObject({
      object: "list",
      data: [{ id: MODEL_ID, object: "model" }],
    });
  });
});

describe("POST /v1/completions", () => {
  it("completes without streaming, with usage and forward passes", async () => {
    const { backend, post } = edge();
    const response = await post("/v1/completions", {
      model: MODEL_ID,
      prompt: "def f(x):\n",
      max_tokens: 12,
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      object: string;
      choices: { text: string; finish_reason: string }[];
      usage: {
        completion_tokens: number;
        total_tokens: number;
        prompt_tokens: number;
        forward_passes: number;
      };
    };
    expect(body.object).toBe("text_completion");
    expect(body.choices[0]).toMatchObject({ text: "0 1 2 3 4 5 6 7 8 9 10 11 ", finish_reason: "length" });
    expect(body.usage).toEqual({
      prompt_tokens: 10,
      completion_tokens: 12,
      total_tokens: 22,
      forward_passes: 3,
    });
    expect(backend.generations).toEqual([{ model: MODEL_ID, prompt: "def f(x):\n", max_tokens: 12 }]);
  });

  it("streams one chunk per block, a finish chunk, usage when asked, then [DONE]", async () => {
    const request = { model: MODEL_ID, prompt: "import os\n", max_tokens: 16, block_size: 4 };
    const response = await post("/v1/completions", {
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const data = dataLines(await response.text());
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    const usage = chunks.at(-1);
    expect(usage.choices).toEqual([]);
    expect(usage.usage.forward_passes).toBeGreaterThan(0);
    const finish = chunks.at(-2);
    expect(finish.choices[0].finish_reason).toMatch(/^(stop|length)$/);
    const content = chunks.slice(0, -2);
    expect(content.length).toBe(4); // one chunk per block of 4
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    const whole = (await (await post("/v1/completions", request)).json()) as { choices: { text: string }[] };
    expect(content.map((c) => c.choices[0].text).join("")).toBe(whole.choices[0]?.text);
  });

  it("passes the sampling fields on: temperature, top_p, seed as its low 32 bits, stop as a list", async () => {
    const { backend, post } = edge();
    const base = { model: MODEL_ID, prompt: "x", max_tokens: 4, temperature: 1.5, top_p: 0.5 };
    for (const body of [
      { ...base, seed: 11, stop: "\n\n" },
      { ...base, seed: 2 ** 32 + 7, stop: ["\n\n", "def "] },
    ]) {
      expect((await post("/v1/completions", body)).status).toBe(200);
    }
    expect(backend.generations).toEqual([
      expect.objectContaining({ temperature: 1.5, top_p: 0.5, seed: 11, stop: ["\n\n"] }),
      expect.objectContaining({ seed: 7, stop: ["\n\n", "def "] }),
    ]);
  });

  it("sends no usage chunk unless asked", async () => {
    const response = await post("/v1/completions", {
      model: MODEL_ID,
      prompt: "x",
      max_tokens: 4,
      stream: true,
    });
    const chunks = dataLines(await response.text())
      .slice(0, -1)
      .map((d) => JSON.parse(d));
    expect(chunks.every((c) => c.usage === undefined && c.choices.length === 1)).toBe(true);
  });

  it("infills between prompt and suffix: the backend gets both, and an empty suffix is none", async () => {
    const { backend, post } = edge();
    for (const suffix of ["    return result\n", ""]) {
      const response = await post("/v1/completions", {
        model: MODEL_ID,
        prompt: "def area(r):\n",
        suffix,
        max_tokens: 8,
      });
      expect(response.status).toBe(200);
    }
    expect(backend.generations.map((r) => r.suffix)).toEqual(["    return result\n", undefined]);
  });

  it.each([
    [{ prompt: "x" }, "model"],
    [{ model: "sprout-tiny", prompt: "x", max_tokens: 0 }, "max_tokens"],
    [{ model: "sprout-tiny", prompt: "x", n: 2 }, "n"],
    [{ model: "sprout-tiny", prompt: ["a", "b"] }, "prompt"],
    [{ model: "sprout-tiny", prompt: "x", stop: ["a", "b", "c", "d", "e"] }, "stop"],
    [{ model: "sprout-tiny", prompt: "x", temperature: 3 }, "temperature"],
  ])("answers 400 naming the field for %j", async (body, param) => {
    const response = await post("/v1/completions", body);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { type: "invalid_request_error", param } });
  });

  it("answers 400 for a body that is not JSON", async () => {
    const response = await post("/v1/completions", "{oops");
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { type: "invalid_request_error" } });
  });

  it("answers 400 naming the content type for a body that is not declared JSON", async () => {
    const response = await app.request(
      "/v1/completions",
      {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/x-www-form-urlencoded" },
        body: JSON.stringify({ model: MODEL_ID, prompt: "x" }),
      },
      env,
    );
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_content_type" } });
  });

  it("answers 404 for an unknown model", async () => {
    const response = await post("/v1/completions", { model: "gpt-9", prompt: "x" });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: "model_not_found", param: "model" } });
  });

  it("answers a request the backend refuses with 400 and the backend's reason", async () => {
    const reason = "the prompt (2400 tokens) and max_tokens (1000) exceed the context of 512 tokens";
    const { post } = edge(new FakeBackend({ failWith: new BackendError("invalid_request", reason, 400) }));
    const response = await post("/v1/completions", { model: MODEL_ID, prompt: "x = 1\n", max_tokens: 1000 });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { message: reason } });
  });

  it("answers 413 for a body over 1 MiB", async () => {
    const response = await post("/v1/completions", { model: MODEL_ID, prompt: "x".repeat(1_100_000) });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { code: "body_too_large" } });
  });

  it("answers 503 when the denoiser node is down", async () => {
    const down = new BackendError(
      "backend_unavailable",
      "The model backend is unavailable; try again shortly.",
      503,
      "denoiser node 127.0.0.1:9 unreachable: connection refused",
    );
    const { post } = edge(new FakeBackend({ failWith: down }));
    const response = await post("/v1/completions", { model: MODEL_ID, prompt: "x" });
    expect(response.status).toBe(503);
    const body = await response.json();
    expect(body).toMatchObject({ error: { code: "backend_unavailable" } });
    expect(JSON.stringify(body)).not.toContain("127.0.0.1"); // internal addresses stay internal
  });

  it("treats a cancellation nobody asked for as a broken answer, streamed or not", async () => {
    const { post } = edge(
      new FakeBackend({ events: () => [start, { type: "done", finish_reason: "cancelled", usage }] }),
    );
    const unstreamed = await post("/v1/completions", { model: MODEL_ID, prompt: "x" });
    expect(unstreamed.status).toBe(502);
    expect(await unstreamed.json()).toMatchObject({ error: { code: "backend_cancelled" } });
    const streamed = await post("/v1/completions", { model: MODEL_ID, prompt: "x", stream: true });
    expect(dataLines(await streamed.text()).map((d) => JSON.parse(d))).toEqual([
      { error: expect.objectContaining({ code: "backend_cancelled" }) },
    ]);
  });

  it("accepts what OpenAI accepts: any integer seed, top_p 0, empty stop strings", async () => {
    const { backend, post } = edge();
    const response = await post("/v1/completions", {
      model: MODEL_ID,
      prompt: "x",
      max_tokens: 4,
      temperature: 1,
      top_p: 0,
      seed: -5,
      stop: [""],
    });
    expect(response.status).toBe(200);
    // top_p 0 keeps only the most likely token; -5 as its low 32 bits; no empty stop string.
    expect(backend.generations[0]).toMatchObject({ top_p: 1e-9, seed: 2 ** 32 - 5, stop: undefined });
  });

  it("keeps a silent stream alive with SSE comments, invisible to the data", async () => {
    const slow = new FakeBackend({
      gapMs: 250,
      events: () => [
        start,
        { type: "block", index: 0, text: "pass", tokens: 1, steps: 1, ids: [9] },
        { type: "done", finish_reason: "stop", usage: { ...usage, completion_tokens: 1 } },
      ],
    });
    const response = await edge(slow).post(
      "/v1/completions",
      { model: MODEL_ID, prompt: "x", stream: true },
      { SSE_KEEPALIVE_MS: "50" },
    );
    const raw = await response.text();
    expect(raw).toMatch(/^: ping$/m);
    const data = dataLines(raw);
    expect(data.at(-1)).toBe("[DONE]");
    expect(JSON.parse(data[0] as string).choices[0].text).toBe("pass");
  });

  it("reports a node failing mid-stream as one error data line", async () => {
    const failing = new FakeBackend({
      events: () => [start, { type: "error", code: "internal", message: "decoding failed on the node" }],
    });
    const response = await edge(failing).post("/v1/completions", {
      model: MODEL_ID,
      prompt: "x",
      stream: true,
    });
    const data = dataLines(await response.text());
    expect(data.map((d) => JSON.parse(d))).toEqual([
      { error: expect.objectContaining({ code: "backend_error", message: "decoding failed on the node" }) },
    ]);
  });

  it("stops the backend's work when a streaming client goes away", async () => {
    const backend = new FakeBackend({ gapMs: 50 });
    const cancel = new AbortController();
    const response = await edge(backend).app.request(
      "/v1/completions",
      {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL_ID, prompt: "x", max_tokens: 64, stream: true }),
        signal: cancel.signal,
      },
      env,
    );
    const reader = response.body?.getReader();
    await reader?.read();
    cancel.abort();
    await reader?.cancel();
    await expect.poll(() => backend.cancelled, { timeout: 5_000 }).toBe(1);
  });
});

it("answers unknown routes with a JSON 404", async () => {
  const response = await app.request("/v2/nothing", {}, env);
  expect(response.status).toBe(404);
  expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
});

describe("native endpoints", () => {
  it("streams the denoising as named events: start, steps with the block as it stands, blocks, verify, done", async () => {
    const { backend, post } = edge();
    const response = await post("/v1/generate", {
      model: MODEL_ID,
      prompt: "def add(a, b):\n",
      max_tokens: 12,
      block_size: 4,
      emit_steps: true,
      verify: true,
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = namedEvents(await response.text());
    const names = events.map(([name]) => name);
    expect(names[0]).toBe("start");
    expect(names.slice(-2)).toEqual(["verify", "done"]);
    const step = events.find(([name]) => name === "step")?.[1];
    expect(step).toMatchObject({ block: 0, state: expect.any(Array) });
    const blocks = events.filter(([name]) => name === "block").map(([, data]) => data);
    expect(blocks.every((b) => Array.isArray(b.ids) && typeof b.text === "string")).toBe(true);
    expect(events.at(-2)?.[1]).toMatchObject({ syntax: expect.any(Object), cached: false });
    expect(events.at(-1)?.[1]).toMatchObject({ usage: { forward_passes: expect.any(Number) } });
    // The edge verifies the text it streamed (through its cache), not the backend's own verify.
    expect(backend.generations[0]?.verify).toBeUndefined();
    expect(backend.verifications).toEqual([
      {
        model: MODEL_ID,
        code: "0 1 2 3 4 5 6 7 8 9 10 11 ",
        prompt: "def add(a, b):\n",
        language: "python",
      },
    ]);
  });

  it("carries each event's type in its data, the verify event's too", async () => {
    const response = await post("/v1/generate", {
      model: MODEL_ID,
      prompt: "x",
      max_tokens: 4,
      verify: true,
    });
    const events = namedEvents(await response.text());
    expect(events.map(([name]) => name)).toEqual(["start", "block", "verify", "done"]);
    for (const [name, data] of events) expect(data.type).toBe(name);
    expect(events[2]?.[1]).toMatchObject({ type: "verify", verdict: "plausible", cached: false });
  });

  it("sends a failure after the first byte as an error event in the edge's error shape", async () => {
    const failing = new FakeBackend({
      events: () => [start, { type: "error", code: "internal", message: "it broke" }],
    });
    const response = await edge(failing).post("/v1/generate", { model: MODEL_ID, prompt: "x" });
    expect(namedEvents(await response.text())).toEqual([
      ["start", start],
      [
        "error",
        { type: "error", error: expect.objectContaining({ code: "backend_error", message: "it broke" }) },
      ],
    ]);
  });

  it("takes the dial and resumes from the ids of blocks already received", async () => {
    const { backend, post } = edge();
    const request = {
      model: MODEL_ID,
      prompt: "def parse(line):\n",
      max_tokens: 24,
      block_size: 8,
      steps: 4,
    };
    const whole = namedEvents(await (await post("/v1/generate", request)).text()).filter(
      ([n]) => n === "block",
    );
    expect(whole.length).toBe(3);
    expect(whole.every(([, b]) => (b.steps as number) <= 4)).toBe(true);
    const committed = whole.slice(0, 1).flatMap(([, b]) => b.ids as number[]);
    const rest = namedEvents(await (await post("/v1/generate", { ...request, committed })).text());
    expect(rest.filter(([n]) => n === "block").map(([, b]) => b.text)).toEqual(
      whole.slice(1).map(([, b]) => b.text),
    );
    expect(backend.generations.map((r) => [r.steps, r.block_size, r.committed])).toEqual([
      [4, 8, undefined],
      [4, 8, committed],
    ]);
  });

  it.each([
    [{ prompt: "x", threshold: 0.5, steps: 2 }, /at most one/],
    [{ prompt: "x", edit_rounds: 99 }, /edit_rounds/],
    [{ prompt: 7 }, /prompt/],
  ])("answers 400 for %j", async (body, reason) => {
    const response = await post("/v1/generate", { model: MODEL_ID, ...body });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(reason);
  });

  it("verifies code: syntax, score, verdict, and whether it came from the cache", async () => {
    const broken = new FakeBackend({
      verification: (request) => ({
        syntax: { ok: false, error: { line: 2, column: 11, message: "unclosed parenthesis" } },
        score: 0.2,
        bits_per_token: 2.3,
        tokens: request.code.length,
        verdict: "syntax_error",
        forward_passes: 2,
      }),
    });
    const { post } = edge(broken);
    const response = await post("/v1/verify", {
      model: MODEL_ID,
      code: `def f(x):\n    return (x # ${Date.now()}\n`,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-sprout-cache")).toBe("miss");
    expect(await response.json()).toMatchObject({
      syntax: { ok: false, error: { line: expect.any(Number) } },
      verdict: "syntax_error",
      cached: false,
      score: expect.any(Number),
    });
    expect((await post("/v1/verify", { model: "nope", code: "x" })).status).toBe(404);
    expect((await post("/v1/verify", { model: MODEL_ID })).status).toBe(400);
  });
});

describe("POST /v1/chat/completions", () => {
  it("answers as a chat completion, and streams the same text as deltas", async () => {
    const { backend, post } = edge();
    const body = {
      model: MODEL_ID,
      messages: [
        { role: "user", content: "Return the sum of a and b." },
        { role: "assistant", content: "def add(a, b):\n" },
      ],
      max_tokens: 16,
    };
    const whole = (await (await post("/v1/chat/completions", body)).json()) as {
      object: string;
      choices: { message: { role: string; content: string }; finish_reason: string }[];
      usage: { forward_passes: number };
    };
    expect(whole.object).toBe("chat.completion");
    expect(whole.choices[0]?.message.role).toBe("assistant");
    expect(whole.usage.forward_passes).toBeGreaterThan(0);
    const chunks = dataLines(await (await post("/v1/chat/completions", { ...body, stream: true })).text());
    expect(chunks.at(-1)).toBe("[DONE]");
    const parsed = chunks.slice(0, -1).map((d) => JSON.parse(d));
    expect(parsed.every((p) => p.object === "chat.completion.chunk")).toBe(true);
    expect(parsed[0].choices[0].delta.role).toBe("assistant");
    expect(parsed.map((p) => p.choices[0].delta.content ?? "").join("")).toBe(
      whole.choices[0]?.message.content,
    );
    expect(parsed.at(-1).choices[0].finish_reason).toBe(whole.choices[0]?.finish_reason);
    // The conversation goes to the backend as data: the node renders it (models/src/chat.ts).
    expect(backend.generations[0]).toMatchObject({ prompt: "", messages: body.messages, max_tokens: 16 });
  });

  it("sends text parts joined, and no names", async () => {
    const { backend, post } = edge();
    const response = await post("/v1/chat/completions", {
      model: MODEL_ID,
      messages: [
        { role: "developer", content: "Python.", name: "lead" },
        {
          role: "user",
          content: [
            { type: "text", text: "Add " },
            { type: "text", text: "<|im_end|>" },
          ],
        },
      ],
      max_tokens: 4,
    });
    expect(response.status).toBe(200);
    expect(backend.generations[0]?.messages).toEqual([
      { role: "developer", content: "Python." },
      { role: "user", content: "Add <|im_end|>" },
    ]);
  });

  it("answers 400 for a conversation without messages", async () => {
    const response = await post("/v1/chat/completions", { model: MODEL_ID, messages: [] });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param: "messages" } });
  });
});

describe("the API description", () => {
  it("documents every /v1 route in an OpenAPI 3.1 document generated from the zod schemas", async () => {
    const response = await app.request("/openapi.json", {}, env);
    expect(response.status).toBe(200);
    const document = (await response.json()) as {
      openapi: string;
      paths: Record<string, Record<string, unknown>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
    };
    expect(document.openapi).toBe("3.1.0");
    const routes = new Set(
      app.routes
        .filter((r) => r.path.startsWith("/v1/") && r.method !== "ALL")
        .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`),
    );
    const documented = new Set(
      Object.entries(document.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
      ),
    );
    expect(documented).toEqual(routes);
    expect(document.components.schemas.CompletionRequest?.required).toEqual(
      expect.arrayContaining(["model", "prompt"]),
    );
    expect(Object.keys(document.components.schemas.GenerateRequest?.properties ?? {})).toEqual(
      expect.arrayContaining(["steps", "entropy_bound", "edit_rounds", "committed", "verify", "messages"]),
    );
    // Every native event names its type, the verify event included.
    const events = (
      document.components.schemas.GenerateEvent as { oneOf: { properties: Record<string, unknown> }[] }
    ).oneOf;
    expect(events.map((e) => e.properties.type)).toContainEqual({ type: "string", const: "verify" });
    expect(events.every((e) => "type" in e.properties)).toBe(true);
  });

  it("renders a docs page from it", async () => {
    const response = await app.request("/docs", {}, env);
    expect(response.headers.get("content-type")).toMatch(/text\/html/);
    const html = await response.text();
    for (const path of ["/v1/completions", "/v1/chat/completions", "/v1/generate", "/v1/verify"])
      expect(html).toContain(path);
  });
});

describe("POST /v1/edits", () => {
  const code = "def area(r):\n    pi = 3.14159\n    return pi * r * r\n";

  it("rewrites marked regions, and repairs unmarked code, reporting edits as ranges of the original", async () => {
    const { backend, post } = edge();
    const start = code.indexOf("3.14159");
    const rewrite = await post("/v1/edits", {
      model: MODEL_ID,
      code,
      regions: [{ start, end: start + 7 }],
      max_tokens: 8,
    });
    expect(rewrite.status).toBe(200);
    const rewritten = (await rewrite.json()) as {
      object: string;
      code: string;
      edits: { start: number; end: number; before: string; after: string }[];
    };
    expect(rewritten.object).toBe("edit");
    expect(rewritten.edits).toEqual([
      { start, end: start + 7, before: "3.14159", after: expect.any(String) },
    ]);
    expect(rewritten.code).toBe(code.slice(0, start) + rewritten.edits[0]?.after + code.slice(start + 7));

    const repair = await post("/v1/edits", { model: MODEL_ID, code, threshold: 1 });
    expect(await repair.json()).toMatchObject({
      code,
      edits: [],
      usage: { tokens: code.length, forward_passes: expect.any(Number) },
    });
    expect(backend.edits).toEqual([
      { model: MODEL_ID, code, regions: [{ start, end: start + 7 }], max_tokens: 8 },
      { model: MODEL_ID, code, threshold: 1 },
    ]);
  });

  it.each([
    [[{ start: 5, end: 2 }], "start after end"],
    [
      [
        { start: 0, end: 10 },
        { start: 5, end: 12 },
      ],
      "overlapping",
    ],
    [[{ start: 0, end: 999 }], "past the end"],
  ])("answers 400 for regions %j (%s)", async (regions) => {
    const response = await post("/v1/edits", { model: MODEL_ID, code, regions });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param: "regions" } });
  });
});

it("knows its fake's arithmetic (the expectations above rest on it)", () => {
  const events = fakeGeneration({ prompt: "ab", max_tokens: 6, block_size: 4 });
  expect(events.map((e) => (e.type === "block" ? e.text : e.type))).toEqual([
    "start",
    "0 1 2 3 ",
    "4 5 ",
    "done",
  ]);
});
