import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "../../../models/src/index.ts";
import {
  EditResult,
  NodeEvent,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  Verification,
} from "../../../protocol/src/index.ts";
import { nodeHeaders, nodePost, sseMessages } from "../../../test/support/node-requests.ts";
import { listen } from "../../../test/support/servers.ts";
import { createDenoiserApp } from "./app.ts";

const SECRET = "node-secret";
const auth = nodeHeaders(SECRET);
const parseSse = sseMessages;

/** A sample's value in a node's /metrics (0 when absent), e.g. `sprout_edits_total{outcome="finished"}`. */
async function metric(app: { request: (path: string) => Response | Promise<Response> }, sample: string) {
  const text = await (await app.request("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

const CODE =
  "def area(r):\n    pi = 3.14159\n    return pi * r * r\n\n\ndef perimeter(r):\n    return 2 * pi * r\n";
const post = nodePost(SECRET);
/** A rewrite of one small region: a generation of a few tokens. */
const EDIT = post({
  code: CODE,
  regions: [{ start: CODE.indexOf("3.14159"), end: CODE.indexOf("3.14159") + 7 }],
  max_tokens: 8,
  block_size: 4,
});

describe("the denoiser node", () => {
  let model: Model;
  let app: ReturnType<typeof createDenoiserApp>;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
    app = createDenoiserApp({ model, secret: SECRET, log: () => {} });
  });
  afterAll(() => model.close());

  it("answers its health check without a secret", async () => {
    const response = await app.request("/healthz");
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      ok: true,
      model: model.manifest.name,
      protocol: PROTOCOL_VERSION,
      generations: { active: 0 },
    });
  });

  it.each([
    ["no", {}],
    ["a wrong", { authorization: "Bearer nope" }],
    ["a non-bearer", { authorization: SECRET }],
  ])("refuses %s secret", async (_, headers) => {
    const response = await app.request("/v1/generate", {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ prompt: "x", max_tokens: 1 }),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: { code: "unauthorized" } });
  });

  it.each([
    [{ prompt: "x" }, /max_tokens/],
    [{ prompt: 3, max_tokens: 1 }, /prompt/],
    [{ prompt: "x", max_tokens: 1, threshold: 1.5 }, /threshold/],
    [{ prompt: "x", max_tokens: 2000 }, /exceeds the context/],
  ])("answers 400 with the reason for %j", async (body, reason) => {
    const response = await app.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(400);
    const json = (await response.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe("invalid_request");
    expect(json.error.message).toMatch(reason);
  });

  it("answers 400 for a body that is not JSON", async () => {
    const response = await app.request("/v1/generate", { method: "POST", headers: auth, body: "{oops" });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { code: "invalid_request" } });
  });

  it("streams the protocol's events as SSE, its version in a header", async () => {
    const response = await app.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "class A:\n", max_tokens: 8, block_size: 4, emit_steps: true }),
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(response.headers.get(PROTOCOL_HEADER)).toBe(String(PROTOCOL_VERSION));
    const messages = parseSse(await response.text());
    const events = messages.map((m) => NodeEvent.parse(JSON.parse(m.data)));
    expect(messages.map((m) => m.event)).toEqual(events.map((e) => e.type));
    expect(events[0]?.type).toBe("start");
    expect(events.some((e) => e.type === "step")).toBe(true);
    expect(events.at(-1)?.type).toBe("done");
  });

  it("verifies code on request, and a generation's own text before done when asked", async () => {
    const response = await app.request("/v1/verify", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ code: "def f(x):\n    return x + 1\n" }),
    });
    expect(response.status).toBe(200);
    expect(Verification.parse(await response.json())).toMatchObject({ syntax: { ok: true } });
    const bad = await app.request("/v1/verify", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ code: 3 }),
    });
    expect(bad.status).toBe(400);

    const stream = await app.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "def f(x):\n", max_tokens: 16, verify: true }),
    });
    const events = parseSse(await stream.text()).map((m) => NodeEvent.parse(JSON.parse(m.data)));
    expect(events.slice(-2).map((e) => e.type)).toEqual(["verify", "done"]);
  });

  it("resumes a stream from the ids of the blocks already sent: the rest is what an uninterrupted stream sends", async () => {
    const generate = async (body: object) => {
      const response = await app.request("/v1/generate", {
        method: "POST",
        headers: auth,
        body: JSON.stringify(body),
      });
      return parseSse(await response.text()).map((m) => NodeEvent.parse(JSON.parse(m.data)));
    };
    const request = {
      prompt: "def parse(line):\n",
      max_tokens: 40,
      block_size: 8,
      temperature: 0.8,
      seed: 7,
    };
    const blocks = (events: NodeEvent[]) => events.filter((e) => e.type === "block");
    const whole = blocks(await generate(request));
    expect(whole.length).toBeGreaterThan(2);
    const committed = whole.slice(0, 2).flatMap((b) => (b.type === "block" ? b.ids : []));
    const rest = blocks(await generate({ ...request, committed }));
    expect(rest).toEqual(whole.slice(2));
  });

  it("stops decoding when the client goes away, and says so in its metrics", async () => {
    const server = await listen(app);
    try {
      const cancel = new AbortController();
      const response = await fetch(`${server.url}/v1/generate`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ prompt: "x", max_tokens: 200, block_size: 4, threshold: 1 }),
        signal: cancel.signal,
      });
      const reader = response.body?.getReader();
      await reader?.read();
      cancel.abort();
      const health = async () =>
        ((await (await app.request("/healthz")).json()) as { generations: Record<string, number> })
          .generations;
      await expect.poll(health, { timeout: 10_000 }).toMatchObject({ active: 0, cancelled: 1 });
      const metrics = await (await app.request("/metrics")).text();
      expect(metrics).toMatch(/sprout_generations_total\{outcome="cancelled"\} 1/);
      const generated = Number(/^sprout_generated_tokens_total (\d+)/m.exec(metrics)?.[1]);
      expect(generated).toBeLessThan(200);
    } finally {
      await server.close();
    }
  });

  it("is ready once its model is loaded, and not while loading or after a failed load", async () => {
    const ready = await app.request("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      model: model.manifest.name,
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });

    let finishLoading: (m: Model) => void = () => {};
    const loading = createDenoiserApp({
      model: new Promise<Model>((r) => (finishLoading = r)),
      secret: SECRET,
      log: () => {},
    });
    expect((await loading.request("/readyz")).status).toBe(503);
    const early = await loading.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "x", max_tokens: 1 }),
    });
    expect(early.status).toBe(503);
    expect(await early.json()).toMatchObject({ error: { code: "model_unavailable" } });
    finishLoading(model);
    await loading.ready;
    expect((await loading.request("/readyz")).status).toBe(200);

    const broken = createDenoiserApp({
      model: Promise.reject(new Error("denoiser.onnx does not match its sha256")),
      secret: SECRET,
      log: () => {},
    });
    await broken.ready;
    const refused = await broken.request("/readyz");
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ ready: false, reason: expect.stringMatching(/sha256/) });
  });

  it("answers 503 with Retry-After when every slot and the queue are full", async () => {
    const tight = createDenoiserApp({
      model,
      secret: SECRET,
      log: () => {},
      scheduler: { maxBatch: 1, maxQueue: 1 },
    });
    const long = {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "x", max_tokens: 64, threshold: 1 }),
    };
    const running = [await tight.request("/v1/generate", long), await tight.request("/v1/generate", long)];
    const refused = await tight.request("/v1/generate", long);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toMatchObject({ error: { code: "overloaded" } });
    const bodies = Promise.all(running.map((r) => r.text())); // clients reading along
    await tight.drain();
    await bodies;
    expect(await (await tight.request("/metrics")).text()).toMatch(/sprout_generations_rejected_total 1/);
  });

  it("drains on shutdown: in-flight streams end cancelled, new work gets 503", async () => {
    const drainable = createDenoiserApp({ model, secret: SECRET, log: () => {} });
    const response = await drainable.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "x", max_tokens: 200, block_size: 4, threshold: 1 }),
    });
    const body = response.text(); // a client reading along
    await drainable.drain();
    const health = (await (await drainable.request("/healthz")).json()) as {
      generations: { active: number };
    };
    expect(health.generations.active).toBe(0);
    const events = parseSse(await body).map((m) => NodeEvent.parse(JSON.parse(m.data)));
    expect(events.at(-1)).toMatchObject({ type: "done", finish_reason: "cancelled" });
    const refused = await drainable.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "x", max_tokens: 1 }),
    });
    expect(refused.status).toBe(503);
  });

  it("runs edits and verifications in its scheduler: its forward-pass counter counts them", async () => {
    const node = createDenoiserApp({ model, secret: SECRET, log: () => {} });
    const forwards = () => metric(node, "sprout_forward_passes_total");
    expect(await forwards()).toBe(0);
    const edit = await node.request("/v1/edit", EDIT);
    expect(edit.status).toBe(200);
    const rewritten = EditResult.parse(await edit.json());
    expect(rewritten.forward_passes).toBeGreaterThan(0);
    expect(await forwards()).toBe(rewritten.forward_passes); // alone, each of its forwards is one of the node's
    const repair = await node.request("/v1/edit", post({ code: CODE, threshold: 1 }));
    const repaired = EditResult.parse(await repair.json());
    expect(await forwards()).toBe(rewritten.forward_passes + repaired.forward_passes);
    const verify = await node.request("/v1/verify", post({ code: CODE }));
    expect(Verification.parse(await verify.json()).forward_passes).toBe(2);
    expect(await forwards()).toBe(rewritten.forward_passes + repaired.forward_passes + 2);
    expect(await metric(node, 'sprout_edits_total{outcome="finished"}')).toBe(2);
    expect(await metric(node, 'sprout_verifications_total{outcome="finished"}')).toBe(1);
  });

  it.each([
    ["edits", "/v1/edit", EDIT],
    ["verifications", "/v1/verify", post({ code: CODE })],
  ])(
    "meets its queue bound with 64 concurrent %s: some 503 with Retry-After, the rest 200",
    async (_, path, init) => {
      const node = createDenoiserApp({ model, secret: SECRET, log: () => {} }); // the default queue: 8 slots, 32 waiting
      await node.request("/v1/verify", post({ code: "x = 1\n" })); // tree-sitter loaded: requests reach the queue at once
      const responses = await Promise.all(Array.from({ length: 64 }, () => node.request(path, init)));
      const refused = responses.filter((r) => r.status === 503);
      const answered = responses.filter((r) => r.status === 200);
      expect(refused.length + answered.length).toBe(64);
      expect(refused.length).toBeGreaterThan(0);
      expect(answered.length).toBeGreaterThanOrEqual(8 + 32); // every slot and queue place was taken
      for (const response of refused) {
        expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
        expect(await response.json()).toMatchObject({ error: { code: "overloaded" } });
      }
      const Result = path === "/v1/edit" ? EditResult : Verification;
      for (const response of answered) Result.parse(await response.json());
      expect(await metric(node, "sprout_generations_rejected_total")).toBe(refused.length);
      // Answering again, with nothing left in its slots or queue.
      expect((await node.request(path, init)).status).toBe(200);
      expect(await metric(node, "sprout_queued_generations")).toBe(0);
      expect(await metric(node, "sprout_active_generations")).toBe(0);
    },
  );

  it("stops an edit's work when its client goes away", async () => {
    const node = createDenoiserApp({ model, secret: SECRET, log: () => {} });
    const server = await listen(node);
    try {
      const forwards = () => metric(node, "sprout_forward_passes_total");
      const cancel = new AbortController();
      const code = "def area(r):\n    return 3.14159 * r * r\n\n\n".repeat(12);
      // Block size 1 and nothing revised: one forward per token of the code (a few seconds).
      const response = fetch(`${server.url}/v1/edit`, {
        ...post({ code, threshold: 1, block_size: 1 }),
        signal: cancel.signal,
      }).catch(() => "aborted");
      await expect.poll(forwards, { timeout: 10_000 }).toBeGreaterThan(5);
      cancel.abort();
      expect(await response).toBe("aborted");
      await expect
        .poll(() => metric(node, 'sprout_edits_total{outcome="cancelled"}'), { timeout: 10_000 })
        .toBe(1);
      expect(await metric(node, "sprout_active_generations")).toBe(0);
      const stopped = await forwards();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await forwards()).toBe(stopped);
      expect(stopped).toBeLessThan((await model.verify({ code })).tokens);
    } finally {
      await server.close();
    }
  });

  it("drains edits too: one in flight is cancelled and answered 503 shutting_down", async () => {
    const node = createDenoiserApp({ model, secret: SECRET, log: () => {} });
    const code = "def area(r):\n    return 3.14159 * r * r\n\n\n".repeat(12);
    const response = node.request("/v1/edit", post({ code, threshold: 1, block_size: 1 }));
    await expect.poll(() => metric(node, "sprout_forward_passes_total")).toBeGreaterThan(0);
    await node.drain();
    const drained = await response;
    expect(drained.status).toBe(503);
    expect(await drained.json()).toMatchObject({ error: { code: "shutting_down" } });
  });
});
