/** A node serving several model directories: the shipped model and its autoregressive twin. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model, SHIPPED_MODEL_DIR, TWIN_MODEL_DIR } from "../../../models/src/index.ts";
import { EditResult, type NodeEvent, Verification } from "../../../protocol/src/index.ts";
import { nodeEvents, nodePost } from "../../../test/support/node-requests.ts";
import { createDenoiserApp } from "./app.ts";
import { maxContext, modelDirs } from "./config.ts";

const SECRET = "node-secret";
const post = nodePost(SECRET);
const events = nodeEvents;

describe("a node serving several models", () => {
  let tiny: Model;
  let twin: Model;
  let app: ReturnType<typeof createDenoiserApp>;
  beforeAll(async () => {
    [tiny, twin] = await Promise.all([loadModel(SHIPPED_MODEL_DIR), loadModel(TWIN_MODEL_DIR)]);
    app = createDenoiserApp({ models: [tiny, twin], secret: SECRET, log: () => {} });
  });
  afterAll(async () => {
    await tiny.close();
    await twin.close();
  });

  it("answers a generation from each model it names, the first when none is named", async () => {
    const request = { prompt: "def add(a, b):\n", max_tokens: 12, block_size: 4 };
    const [named, twinEvents, unnamed] = await Promise.all([
      events(app.request("/v1/generate", post({ ...request, model: "sprout-tiny" }))),
      events(app.request("/v1/generate", post({ ...request, model: "sprout-tiny-ar" }))),
      events(app.request("/v1/generate", post(request))),
    ]);
    expect(named[0]).toMatchObject({ type: "start", model: "sprout-tiny" });
    expect(unnamed[0]).toMatchObject({ type: "start", model: "sprout-tiny" });
    expect(twinEvents[0]).toMatchObject({ type: "start", model: "sprout-tiny-ar" });
    const text = (all: NodeEvent[]) => all.map((e) => (e.type === "block" ? e.text : "")).join("");
    expect(text(unnamed)).toBe(text(named)); // greedy: the same model gives the same text
    // The twin decodes autoregressively: one token per forward.
    const done = twinEvents.at(-1);
    expect(done?.type).toBe("done");
    if (done?.type !== "done") return;
    expect(done.usage.completion_tokens).toBeGreaterThan(0);
    expect(done.usage.forward_passes).toBe(done.usage.completion_tokens);
    // The shipped model commits several tokens per forward on this prompt (block diffusion).
    const tinyDone = named.at(-1);
    if (tinyDone?.type !== "done") throw new Error("no done event");
    expect(tinyDone.usage.forward_passes).toBeLessThan(tinyDone.usage.completion_tokens);

    // Per model in /metrics: forwards never mix models, so each model counts its own.
    const metrics = await (await app.request("/metrics")).text();
    for (const name of ["sprout-tiny", "sprout-tiny-ar"]) {
      expect(metrics).toMatch(new RegExp(`sprout_model_forward_passes_total\\{model="${name}"\\} [1-9]`));
    }
    expect(metrics).toMatch(/sprout_model_generations_total\{model="sprout-tiny",outcome="finished"\} 2/);
    expect(metrics).toMatch(/sprout_model_generations_total\{model="sprout-tiny-ar",outcome="finished"\} 1/);
  });

  it("verifies and edits with the model a request names", async () => {
    const code = "def f(x):\n    return x + 1\n";
    const scores = await Promise.all(
      ["sprout-tiny", "sprout-tiny-ar"].map(async (model) => {
        const response = await app.request("/v1/verify", post({ code, model }));
        expect(response.status).toBe(200);
        return Verification.parse(await response.json()).bits_per_token;
      }),
    );
    expect(scores[0]).not.toBe(scores[1]); // two networks, two scores
    const edit = await app.request(
      "/v1/edit",
      post({ code, regions: [{ start: 20, end: 25 }], max_tokens: 4, model: "sprout-tiny-ar" }),
    );
    expect(edit.status).toBe(200);
    const result = EditResult.parse(await edit.json()).code; // only the region is rewritten
    expect(result.startsWith(code.slice(0, 20))).toBe(true);
    expect(result.endsWith(code.slice(25))).toBe(true);
  });

  it.each([
    ["/v1/generate", { prompt: "x", max_tokens: 1 }],
    ["/v1/verify", { code: "x = 1\n" }],
    ["/v1/edit", { code: "x = 1\n" }],
  ])(
    "answers %s for an unknown model with 404 model_not_found, naming the served models",
    async (path, body) => {
      const response = await app.request(path, post({ ...body, model: "gpt-4" }));
      expect(response.status).toBe(404);
      const { error } = (await response.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe("model_not_found");
      expect(error.message).toMatch(/"gpt-4"/);
      expect(error.message).toMatch(/sprout-tiny, sprout-tiny-ar/);
    },
  );

  it("is ready only once every model is loaded, and says which it serves", async () => {
    const resolvers: ((m: Model) => void)[] = [];
    const loading = (): Promise<Model> => new Promise((resolve) => resolvers.push(resolve));
    const node = createDenoiserApp({ models: [loading(), loading()], secret: SECRET, log: () => {} });
    expect(await (await node.request("/readyz")).json()).toMatchObject({
      ready: false,
      reason: "loading the models",
    });
    resolvers[1]?.(twin);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await node.request("/readyz")).status).toBe(503);
    const early = await node.request(
      "/v1/generate",
      post({ prompt: "x", max_tokens: 1, model: "sprout-tiny-ar" }),
    );
    expect(early.status).toBe(503);
    expect(await early.json()).toMatchObject({ error: { code: "model_unavailable" } });
    resolvers[0]?.(tiny);
    await node.ready;
    const ready = await node.request("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      model: "sprout-tiny",
      active: 0,
      queued: 0,
      models: [
        { name: "sprout-tiny", sha256: expect.stringMatching(/^[0-9a-f]{64}$/), active: 0, queued: 0 },
        { name: "sprout-tiny-ar", sha256: expect.stringMatching(/^[0-9a-f]{64}$/), active: 0, queued: 0 },
      ],
    });
    expect(await (await node.request("/healthz")).json()).toMatchObject({
      model: "sprout-tiny",
      models: ["sprout-tiny", "sprout-tiny-ar"],
    });
  });

  it("is not ready when one of its models fails to load, and refuses two of one name", async () => {
    const broken = createDenoiserApp({
      models: [tiny, Promise.reject(new Error("denoiser.onnx does not match its sha256"))],
      secret: SECRET,
      log: () => {},
    });
    await broken.ready;
    const refused = await broken.request("/readyz");
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ ready: false, reason: expect.stringMatching(/sha256/) });
    const work = await broken.request("/v1/generate", post({ prompt: "x", max_tokens: 1 }));
    expect(work.status).toBe(503);
    expect(await work.json()).toMatchObject({ error: { code: "model_unavailable" } });

    const twice = createDenoiserApp({ models: [tiny, tiny], secret: SECRET, log: () => {} });
    await twice.ready;
    expect(await (await twice.request("/readyz")).json()).toMatchObject({
      ready: false,
      reason: expect.stringMatching(/both named "sprout-tiny"/),
    });
  });
});

describe("a node capping its models' context (SPROUT_MAX_CONTEXT)", () => {
  // The node loads its models with the cap (main.ts: loadModel's maxContext), as here.
  let tiny: Model;
  let twin: Model;
  let app: ReturnType<typeof createDenoiserApp>;
  beforeAll(async () => {
    [tiny, twin] = await Promise.all([
      loadModel(SHIPPED_MODEL_DIR, { maxContext: 48 }),
      loadModel(TWIN_MODEL_DIR, { maxContext: 48 }),
    ]);
    app = createDenoiserApp({ models: [tiny, twin], secret: SECRET, log: () => {} });
    await app.ready;
  });
  afterAll(async () => {
    await tiny.close();
    await twin.close();
  });

  it("shows the effective context of each model in /readyz, beside the manifest's", async () => {
    const ready = await app.request("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      models: [
        { name: "sprout-tiny", context_length: 48, manifest_context_length: 512 },
        { name: "sprout-tiny-ar", context_length: 48, manifest_context_length: 512 },
      ],
    });
  });

  it.each(["sprout-tiny", "sprout-tiny-ar"])(
    "refuses a %s generation or edit beyond the cap with the clear 400, and serves one within it",
    async (model) => {
      const beyond = await app.request("/v1/generate", post({ model, prompt: "x = 1\n", max_tokens: 60 }));
      expect(beyond.status).toBe(400);
      const { error } = (await beyond.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe("invalid_request");
      expect(error.message).toMatch(/exceeds the context of 48 tokens/);
      const code = "def f(x):\n    return x + 1\n".repeat(8);
      const edit = await app.request("/v1/edit", post({ model, code }));
      expect(edit.status).toBe(400);
      expect(await edit.json()).toMatchObject({
        error: { code: "invalid_request", message: expect.stringMatching(/context of 48 tokens/) },
      });
      const within = await events(
        app.request("/v1/generate", post({ model, prompt: "x = 1\n", max_tokens: 8 })),
      );
      expect(within.at(-1)).toMatchObject({ type: "done" });
    },
  );

  it("leaves a model whose manifest allows less than the cap as it is", async () => {
    const own = await loadModel(SHIPPED_MODEL_DIR, { maxContext: 4096 });
    try {
      const roomy = createDenoiserApp({ model: own, secret: SECRET, log: () => {} });
      await roomy.ready;
      expect(await (await roomy.request("/readyz")).json()).toMatchObject({
        models: [{ name: "sprout-tiny", context_length: 512, manifest_context_length: 512 }],
      });
    } finally {
      await own.close();
    }
  });

  it("reads SPROUT_MAX_CONTEXT as a positive integer, unset as no cap", () => {
    expect(maxContext({})).toBeUndefined();
    expect(maxContext({ SPROUT_MAX_CONTEXT: "" })).toBeUndefined();
    expect(maxContext({ SPROUT_MAX_CONTEXT: "2048" })).toBe(2048);
    for (const bad of ["0", "-1", "1.5", "lots"]) {
      expect(() => maxContext({ SPROUT_MAX_CONTEXT: bad })).toThrow(
        /SPROUT_MAX_CONTEXT must be a positive integer/,
      );
    }
  });
});

describe("the node's model directories (SPROUT_MODELS)", () => {
  it("default to the shipped model, take SPROUT_MODEL_DIR as one, and SPROUT_MODELS as a list", () => {
    expect(modelDirs({}, "models/sprout-tiny")).toEqual(["models/sprout-tiny"]);
    expect(modelDirs({ SPROUT_MODELS: "" }, "models/sprout-tiny")).toEqual(["models/sprout-tiny"]);
    expect(modelDirs({ SPROUT_MODEL_DIR: "models/sprout-tiny-ar" }, "d")).toEqual(["models/sprout-tiny-ar"]);
    expect(modelDirs({ SPROUT_MODELS: "models/sprout-tiny, models/sprout-tiny-ar" }, "d")).toEqual([
      "models/sprout-tiny",
      "models/sprout-tiny-ar",
    ]);
  });

  it("refuse both variables at once, and an empty entry", () => {
    expect(() => modelDirs({ SPROUT_MODELS: "a", SPROUT_MODEL_DIR: "b" }, "d")).toThrow(/not both/);
    expect(() => modelDirs({ SPROUT_MODELS: "a,,b" }, "d")).toThrow(/empty entry/);
  });
});
