/**
 * The edge's behaviour, run inside workerd (the Workers Vitest integration, vitest.config.ts)
 * through `app.request`, against the real denoiser node and fake nodes that test/support/
 * edge-setup.ts starts in Node. The whole system, bindings included, runs in test/e2e.test.ts.
 */
import { createParser } from "eventsource-parser";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { createEdgeApp } from "./app.ts";
import { sha256Hex } from "./auth.ts";
import type { Env } from "./env.ts";
import { chatPrompt } from "./routes/chat.ts";

const KEY = "sk-test-key";
let env: Env;
const app = createEdgeApp();

beforeAll(async () => {
  env = {
    MODEL_ID: inject("modelId"),
    DENOISER_URL: inject("nodeUrl"),
    DENOISER_SECRET: inject("nodeSecret"),
    API_KEY_HASHES: `${"0".repeat(64)}, ${await sha256Hex(KEY)}`,
  };
});

const post = (path: string, body: unknown, key = KEY, overrides: Partial<Env> = {}) =>
  app.request(
    path,
    {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    },
    { ...env, ...overrides },
  );

function dataLines(text: string): string[] {
  const data: string[] = [];
  createParser({ onEvent: (m) => data.push(m.data) }).feed(text);
  return data;
}

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
      data: [{ id: env.MODEL_ID, object: "model" }],
    });
  });
});

describe("POST /v1/completions", () => {
  it("completes without streaming, with usage and forward passes", async () => {
    const response = await post("/v1/completions", {
      model: env.MODEL_ID,
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
    expect(body.choices[0]?.finish_reason).toMatch(/^(stop|length)$/);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
    expect(body.usage.forward_passes).toBeGreaterThan(0);
  });

  it("streams one chunk per block, a finish chunk, usage when asked, then [DONE]", async () => {
    const request = { model: env.MODEL_ID, prompt: "import os\n", max_tokens: 16, block_size: 4 };
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
    expect(content.length).toBeLessThanOrEqual(4); // at most one chunk per block of 4
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    // Decoding is greedy: the stream carries exactly the text of the same request unstreamed.
    const whole = (await (await post("/v1/completions", request)).json()) as { choices: { text: string }[] };
    expect(content.map((c) => c.choices[0].text).join("")).toBe(whole.choices[0]?.text);
  });

  it("samples with a temperature, reproducibly for a seed", async () => {
    const text = async (seed: number) => {
      const request = { model: env.MODEL_ID, prompt: "def f(x):\n", max_tokens: 12, temperature: 1.5, seed };
      const body = (await (await post("/v1/completions", request)).json()) as { choices: { text: string }[] };
      return body.choices[0]?.text;
    };
    expect(await text(11)).toBe(await text(11));
    const texts = new Set(await Promise.all([1, 2, 3, 4].map(text)));
    expect(texts.size).toBeGreaterThan(1);
  });

  it("honours stop as a string or a list", async () => {
    const request = { model: env.MODEL_ID, prompt: "def main():\n", max_tokens: 24 };
    type Completion = { choices: { text: string; finish_reason: string }[] };
    const full =
      ((await (await post("/v1/completions", request)).json()) as Completion).choices[0]?.text ?? "";
    const stop = full.slice(5, 8);
    for (const form of [stop, [stop]]) {
      const body = (await (await post("/v1/completions", { ...request, stop: form })).json()) as Completion;
      expect(body.choices[0]).toEqual(
        expect.objectContaining({ text: full.slice(0, full.indexOf(stop)), finish_reason: "stop" }),
      );
    }
  });

  it("sends no usage chunk unless asked", async () => {
    const response = await post("/v1/completions", {
      model: env.MODEL_ID,
      prompt: "x",
      max_tokens: 4,
      stream: true,
    });
    const chunks = dataLines(await response.text())
      .slice(0, -1)
      .map((d) => JSON.parse(d));
    expect(chunks.every((c) => c.usage === undefined && c.choices.length === 1)).toBe(true);
  });

  it("infills between prompt and suffix: the node sees both", async () => {
    const ask = async (suffix?: string) => {
      const response = await post("/v1/completions", {
        model: env.MODEL_ID,
        prompt: "def area(r):\n",
        suffix,
        max_tokens: 8,
      });
      expect(response.status).toBe(200);
      return (await response.json()) as { usage: { prompt_tokens: number } };
    };
    const [plain, infill] = await Promise.all([ask(), ask("    return result\n")]);
    expect(infill.usage.prompt_tokens).toBeGreaterThan(plain.usage.prompt_tokens + 2);
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
        body: JSON.stringify({ model: env.MODEL_ID, prompt: "x" }),
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

  it("answers 400 when prompt and max_tokens overflow the model's context", async () => {
    const response = await post("/v1/completions", {
      model: env.MODEL_ID,
      prompt: "x = 1\n".repeat(400),
      max_tokens: 1000,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { message: expect.stringMatching(/context/) } });
  });

  it("answers 413 for a body over 1 MiB", async () => {
    const response = await post("/v1/completions", { model: env.MODEL_ID, prompt: "x".repeat(1_100_000) });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { code: "body_too_large" } });
  });

  it("answers 503 when the denoiser node is down", async () => {
    const response = await post("/v1/completions", { model: env.MODEL_ID, prompt: "x" }, KEY, {
      DENOISER_URL: "http://127.0.0.1:9",
    });
    expect(response.status).toBe(503);
    const body = await response.json();
    expect(body).toMatchObject({ error: { code: "backend_unavailable" } });
    expect(JSON.stringify(body)).not.toContain("127.0.0.1"); // internal addresses stay internal
  });

  it("treats a cancellation nobody asked for as a broken answer, streamed or not", async () => {
    {
      const overrides = { DENOISER_URL: inject("cancellingNodeUrl") };
      const unstreamed = await post("/v1/completions", { model: env.MODEL_ID, prompt: "x" }, KEY, overrides);
      expect(unstreamed.status).toBe(502);
      expect(await unstreamed.json()).toMatchObject({ error: { code: "backend_cancelled" } });
      const streamed = await post(
        "/v1/completions",
        { model: env.MODEL_ID, prompt: "x", stream: true },
        KEY,
        overrides,
      );
      expect(dataLines(await streamed.text()).map((d) => JSON.parse(d))).toEqual([
        { error: expect.objectContaining({ code: "backend_cancelled" }) },
      ]);
    }
  });

  it("accepts what OpenAI accepts: any integer seed, top_p 0, empty stop strings", async () => {
    const response = await post("/v1/completions", {
      model: env.MODEL_ID,
      prompt: "x",
      max_tokens: 4,
      temperature: 1,
      top_p: 0,
      seed: -5,
      stop: [""],
    });
    expect(response.status).toBe(200);
  });

  it("keeps a silent stream alive with SSE comments, invisible to the data", async () => {
    {
      const response = await post(
        "/v1/completions",
        { model: env.MODEL_ID, prompt: "x", stream: true },
        KEY,
        { DENOISER_URL: inject("slowNodeUrl"), SSE_KEEPALIVE_MS: "50" },
      );
      const raw = await response.text();
      expect(raw).toMatch(/^: ping$/m);
      const data = dataLines(raw);
      expect(data.at(-1)).toBe("[DONE]");
      expect(JSON.parse(data[0] as string).choices[0].text).toBe("pass");
    }
  });

  it("serves from an OpenAI-compatible upstream in the pool, and the same text as a node gives", async () => {
    const body = { model: env.MODEL_ID, prompt: "def fibonacci(n):\n", max_tokens: 12 };
    const upstreams = JSON.stringify([
      { url: inject("upstreamUrl"), api_key: inject("upstreamKey"), model: env.MODEL_ID },
    ]);
    const viaUpstream = await post("/v1/completions", body, KEY, { DENOISER_URL: "", UPSTREAMS: upstreams });
    expect(viaUpstream.status).toBe(200);
    const viaNode = await post("/v1/completions", body);
    const text = async (r: Response) =>
      ((await r.json()) as { choices: { text: string }[] }).choices[0]?.text;
    expect(await text(viaUpstream)).toBe(await text(viaNode));
  });

  it("reports a node failing mid-stream as one error data line", async () => {
    {
      const response = await post(
        "/v1/completions",
        { model: env.MODEL_ID, prompt: "x", stream: true },
        KEY,
        { DENOISER_URL: inject("failingNodeUrl") },
      );
      const data = dataLines(await response.text());
      expect(data.map((d) => JSON.parse(d))).toEqual([
        { error: expect.objectContaining({ code: "backend_error", message: "decoding failed on the node" }) },
      ]);
    }
  });
});

it("answers unknown routes with a JSON 404", async () => {
  const response = await app.request("/v2/nothing", {}, env);
  expect(response.status).toBe(404);
  expect(await response.json()).toMatchObject({ error: { code: "not_found" } });
});

describe("native endpoints", () => {
  /** Named SSE events as [event, data]. */
  function namedEvents(text: string): [string, Record<string, unknown>][] {
    const events: [string, Record<string, unknown>][] = [];
    const parser = createParser({ onEvent: (m) => events.push([m.event ?? "message", JSON.parse(m.data)]) });
    parser.feed(text);
    return events;
  }

  it("streams the denoising as named events: start, steps with the block as it stands, blocks, verify, done", async () => {
    const response = await post("/v1/generate", {
      model: env.MODEL_ID,
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
  });

  it("takes the dial and resumes from the ids of blocks already received", async () => {
    const request = {
      model: env.MODEL_ID,
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
  });

  it.each([
    [{ prompt: "x", threshold: 0.5, steps: 2 }, /at most one/],
    [{ prompt: "x", edit_rounds: 99 }, /edit_rounds/],
    [{ prompt: 7 }, /prompt/],
  ])("answers 400 for %j", async (body, reason) => {
    const response = await post("/v1/generate", { model: env.MODEL_ID, ...body });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(reason);
  });

  it("verifies code: syntax, score, verdict, and whether it came from the cache", async () => {
    const response = await post("/v1/verify", { model: env.MODEL_ID, code: "def f(x):\n    return (x\n" });
    expect(response.status).toBe(200);
    expect(response.headers.get("x-sprout-cache")).toBe("miss"); // no Cache API or KV when run in Node
    expect(await response.json()).toMatchObject({
      syntax: { ok: false, error: { line: expect.any(Number) } },
      verdict: "syntax_error",
      cached: false,
      score: expect.any(Number),
    });
    expect((await post("/v1/verify", { model: "nope", code: "x" })).status).toBe(404);
    expect((await post("/v1/verify", { model: env.MODEL_ID })).status).toBe(400);
  });
});

describe("POST /v1/chat/completions", () => {
  it("turns a conversation into the prompt the code model reads", () => {
    expect(
      chatPrompt([
        { role: "system", content: "Write Python." },
        { role: "user", content: "Add two numbers.\n" },
        { role: "assistant", content: "def add(a, b):\n" },
      ]),
    ).toBe('"""\nWrite Python.\n"""\n"""\nAdd two numbers.\n"""\ndef add(a, b):\n');
  });

  it("answers as a chat completion, and streams the same text as deltas", async () => {
    const body = {
      model: env.MODEL_ID,
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
  });

  it("answers 400 for a conversation without messages", async () => {
    const response = await post("/v1/chat/completions", { model: env.MODEL_ID, messages: [] });
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
      expect.arrayContaining(["steps", "entropy_bound", "edit_rounds", "committed", "verify"]),
    );
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
    const start = code.indexOf("3.14159");
    const rewrite = await post("/v1/edits", {
      model: env.MODEL_ID,
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

    const repair = await post("/v1/edits", { model: env.MODEL_ID, code, threshold: 1 });
    expect(await repair.json()).toMatchObject({
      code,
      edits: [],
      usage: { forward_passes: expect.any(Number) },
    });
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
    const response = await post("/v1/edits", { model: env.MODEL_ID, code, regions });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param: "regions" } });
  });
});
