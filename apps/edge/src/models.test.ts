/**
 * An edge of several models, inside workerd: the edge's backend is a `ModelRouter`
 * (adapters/src/router.ts) over test doubles (test/support/fake-backend.ts), each serving the
 * models its script names — what the worker's backendFor builds over real nodes. /v1/models, each
 * route's routing to its model's members, 404 for an unknown model, failover within a model's
 * pool, and the verification cache keyed by the model. (Real nodes serving two models behind the
 * edge: test/multi-model.test.ts.)
 */
import type { Queue } from "@cloudflare/workers-types";
import { beforeAll, describe, expect, it } from "vitest";
import { BackendError, ModelRouter } from "../../../adapters/src/index.ts";
import type { GenerateEvent } from "../../../protocol/src/index.ts";
import { FakeBackend, fakeGeneration } from "../../../test/support/fake-backend.ts";
import { memoryKv } from "../../../test/support/memory-kv.ts";
import { createEdgeApp } from "./app.ts";
import { sha256Hex } from "./auth.ts";
import type { Env } from "./env.ts";
import type { JobRecord, QueueMessage } from "./jobs.ts";

const KEY = "sk-models-test";
let env: Env;
beforeAll(async () => {
  env = { DENOISER_URL: "", DENOISER_SECRET: "unused", API_KEY_HASHES: await sha256Hex(KEY) };
});

const down = new BackendError("backend_unavailable", "down", 503, "a is down");

/**
 * Three members: `a` serves alpha, `b` alpha and beta, `c` beta; behind one router, as the
 * worker's backendFor builds it.
 */
function edge(scripts: { a?: ConstructorParameters<typeof FakeBackend>[0] } = {}) {
  const a = new FakeBackend({ id: "a", models: ["alpha"], ...scripts.a });
  const b = new FakeBackend({ id: "b", models: ["alpha", "beta"] });
  const c = new FakeBackend({ id: "c", models: ["beta"] });
  const router = new ModelRouter({ members: [a, b, c].map((backend) => ({ backend })) });
  const app = createEdgeApp({ backendFor: () => router });
  const request = (method: string, path: string, body?: unknown, bindings: Partial<Env> = {}) =>
    app.request(
      path,
      {
        method,
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      },
      { ...env, ...bindings },
    );
  const post = (path: string, body: unknown, bindings?: Partial<Env>) =>
    request("POST", path, body, bindings);
  return { a, b, c, router, request, post };
}

describe("an edge of several models", () => {
  it("finds a model that came up after the models were learnt at once, not with a 404", async () => {
    let clock = 0;
    const script = { id: "a", models: ["alpha"] };
    const router = new ModelRouter({ members: [{ backend: new FakeBackend(script) }], now: () => clock });
    const app = createEdgeApp({ backendFor: () => router });
    const post = (model: string) =>
      app.request(
        "/v1/completions",
        {
          method: "POST",
          headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
          body: JSON.stringify({ model, prompt: "x", max_tokens: 4 }),
        },
        env,
      );
    expect((await post("alpha")).status).toBe(200); // the models are learnt: alpha only
    script.models.push("beta"); // the member starts serving beta
    expect((await post("beta")).status).toBe(404); // asked again too recently
    clock += 2_000;
    expect((await post("beta")).status).toBe(200); // an unknown model asks the members again
  });

  it("lists every model any member serves at /v1/models, each once, the default first", async () => {
    const { request } = edge();
    const response = await request("GET", "/v1/models");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      object: "list",
      data: [
        { id: "alpha", object: "model", created: 0, owned_by: "sprout" },
        { id: "beta", object: "model", created: 0, owned_by: "sprout" },
      ],
    });
  });

  it("sends each model's requests only to members serving it, naming the model, on every route", async () => {
    const { a, b, c, post } = edge();
    for (let i = 0; i < 4; i++) {
      const response = await post("/v1/completions", { model: "beta", prompt: "x", max_tokens: 4 });
      expect(response.status).toBe(200);
    }
    expect(a.generations).toEqual([]);
    expect(b.generations.length + c.generations.length).toBe(4);
    expect(c.generations.length).toBeGreaterThan(0); // spread over beta's pool
    expect([...b.generations, ...c.generations].every((r) => r.model === "beta")).toBe(true);

    const chat = await post("/v1/chat/completions", {
      model: "alpha",
      messages: [{ role: "user", content: "add two numbers" }],
      max_tokens: 4,
    });
    expect(chat.status).toBe(200);
    expect(await chat.json()).toMatchObject({ model: "alpha" });
    const generate = await post("/v1/generate", { model: "beta", prompt: "x", max_tokens: 4 });
    expect(await generate.text()).toMatch(/event: done/);
    expect((await post("/v1/verify", { model: "alpha", code: "x = 1\n" })).status).toBe(200);
    const edits = await post("/v1/edits", {
      model: "beta",
      code: "x = 1\n",
      regions: [{ start: 0, end: 1 }],
    });
    expect(await edits.json()).toMatchObject({ object: "edit", model: "beta" });

    const alphaWork = [...a.generations, ...b.generations.filter((r) => r.model === "alpha")];
    expect(alphaWork.map((r) => r.model)).toEqual(["alpha"]); // the chat
    expect([...a.verifications, ...b.verifications].map((r) => r.model)).toEqual(["alpha"]);
    expect(c.verifications).toEqual([]);
    expect([...b.edits, ...c.edits].map((r) => r.model)).toEqual(["beta"]);
    expect(a.edits).toEqual([]);
  });

  it.each([
    ["/v1/completions", { prompt: "x" }],
    ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }] }],
    ["/v1/generate", { prompt: "x" }],
    ["/v1/verify", { code: "x = 1\n" }],
    ["/v1/edits", { code: "x = 1\n" }],
  ])(
    "answers %s for an unknown model with 404 model_not_found, naming the available ones",
    async (path, body) => {
      const { a, b, c, post } = edge();
      const response = await post(path, { ...body, model: "gpt-4" });
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({
        error: {
          message: "The model 'gpt-4' does not exist. Available models: alpha, beta.",
          type: "not_found_error",
          code: "model_not_found",
          param: "model",
        },
      });
      for (const member of [a, b, c]) {
        expect(member.generations.length + member.verifications.length + member.edits.length).toBe(0);
      }
    },
  );

  it("fails over within the model's pool: a member down before the first block, and one dying mid-stream", async () => {
    const { a, b, c, post } = edge({ a: { failWith: down } });
    for (let i = 0; i < 3; i++) {
      const response = await post("/v1/completions", { model: "alpha", prompt: "x", max_tokens: 8 });
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ choices: [{ text: "0 1 2 3 4 5 6 7 " }] });
    }
    expect(a.generations.length).toBeGreaterThan(0); // tried, failed, and b took over
    expect(b.generations.length).toBe(3);
    expect(c.generations).toEqual([]); // beta's member never sees alpha's work

    // a dies after its first block: b resumes from the ids the client has, within alpha's pool.
    const dying = (request: Parameters<typeof fakeGeneration>[0]): GenerateEvent[] => [
      ...fakeGeneration(request).slice(0, 2),
      { type: "error", code: "internal", message: "decoding failed on the node" },
    ];
    const mid = edge({ a: { events: dying } });
    let resumed = false;
    for (let i = 0; i < 2 && !resumed; i++) {
      const stream = await mid.post("/v1/completions", {
        model: "alpha",
        prompt: "x",
        max_tokens: 8,
        stream: true,
      });
      expect(await stream.text()).toContain('"text":"4 5 6 7 "');
      resumed = mid.b.generations.some((r) => r.committed?.length === 4);
    }
    expect(resumed).toBe(true);
    expect(mid.b.generations.find((r) => r.committed)).toMatchObject({
      model: "alpha",
      committed: [0, 1, 2, 3],
    });
    expect(mid.c.generations).toEqual([]);
  });

  it("keys the verification cache by the model: one code, two models, two verdicts", async () => {
    const { post } = edge();
    const bindings = { VERIFY_CACHE: memoryKv() };
    const code = `x = ${crypto.randomUUID().length}  # ${crypto.randomUUID()}\n`;
    const outcome = async (model: string) =>
      (await post("/v1/verify", { model, code }, bindings)).headers.get("x-sprout-cache");
    expect(await outcome("alpha")).toBe("miss");
    expect(await outcome("beta")).toBe("miss");
    expect(await outcome("alpha")).not.toBe("miss");
  });

  it("stores a job with its model (the default where the request names none), and refuses an unknown one", async () => {
    const { post } = edge();
    const jobs = memoryKv();
    const sent: QueueMessage[] = [];
    const bindings = {
      JOBS: jobs,
      JOBS_QUEUE: { send: async (m: QueueMessage) => void sent.push(m) } as unknown as Queue<QueueMessage>,
    };
    const stored = async (response: Response) => {
      const { id } = (await response.json()) as { id: string };
      return (await jobs.get(`job:${id}`, "json")) as JobRecord;
    };
    const unnamed = await post(
      "/v1/jobs",
      { type: "completion", request: { prompt: "x", max_tokens: 4 } },
      bindings,
    );
    expect(unnamed.status).toBe(202);
    expect((await stored(unnamed)).request.model).toBe("alpha");
    const named = await post(
      "/v1/jobs",
      { type: "edit", request: { model: "beta", code: "x = 1\n" } },
      bindings,
    );
    expect((await stored(named)).request.model).toBe("beta");
    const unknown = await post(
      "/v1/jobs",
      { type: "completion", request: { model: "gpt-4", prompt: "x", max_tokens: 4 } },
      bindings,
    );
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "model_not_found", param: "model" } });
    expect(sent).toHaveLength(2);
  });

  it("answers 503 while no backend can say which models it serves", async () => {
    const router = new ModelRouter({ members: [{ backend: new FakeBackend({ models: [] }) }] });
    const app = createEdgeApp({ backendFor: () => router });
    const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };
    const models = await app.request("/v1/models", { headers }, env);
    expect(models.status).toBe(503);
    const completion = await app.request(
      "/v1/completions",
      { method: "POST", headers, body: JSON.stringify({ model: "alpha", prompt: "x" }) },
      env,
    );
    expect(completion.status).toBe(503);
    expect(await completion.json()).toMatchObject({ error: { code: "backend_unavailable" } });
  });
});
