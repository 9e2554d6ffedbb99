import { createParser } from "eventsource-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeEvent } from "../../../adapters/src/protocol.ts";
import { type DecodeEvent, loadModel, type Model, SHIPPED_MODEL_DIR } from "../../../models/src/index.ts";
import { listen } from "../../../test/support/servers.ts";
import { createDenoiserApp } from "./app.ts";

const SECRET = "node-secret";
const auth = { authorization: `Bearer ${SECRET}`, "content-type": "application/json" };

function parseSse(text: string): { event?: string; data: string }[] {
  const messages: { event?: string; data: string }[] = [];
  const parser = createParser({ onEvent: (m) => messages.push({ event: m.event, data: m.data }) });
  parser.feed(text);
  return messages;
}

describe("the denoiser node", () => {
  let model: Model;
  /** Every event the model yielded, seen from inside the node (a spy around the real model). */
  const yielded: DecodeEvent[] = [];
  let app: ReturnType<typeof createDenoiserApp>;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
    const spy: Model = {
      ...model,
      async *generate(options) {
        for await (const event of model.generate(options)) {
          yielded.push(event);
          yield event;
        }
      },
    };
    app = createDenoiserApp({ model: spy, secret: SECRET, log: () => {} });
  });
  afterAll(() => model.close());

  it("answers its health check without a secret", async () => {
    const response = await app.request("/healthz");
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      ok: true,
      model: model.manifest.name,
      protocol: 1,
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

  it("streams protocol v1 events as SSE", async () => {
    const response = await app.request("/v1/generate", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: "class A:\n", max_tokens: 8, block_size: 4, emit_steps: true }),
    });
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const messages = parseSse(await response.text());
    const events = messages.map((m) => NodeEvent.parse(JSON.parse(m.data)));
    expect(messages.map((m) => m.event)).toEqual(events.map((e) => e.type));
    expect(events[0]?.type).toBe("start");
    expect(events.some((e) => e.type === "step")).toBe(true);
    expect(events.at(-1)?.type).toBe("done");
  });

  it("stops decoding when the client goes away", async () => {
    const server = await listen(app);
    try {
      yielded.length = 0;
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
      await expect
        .poll(() => yielded.at(-1), { timeout: 10_000 })
        .toMatchObject({
          type: "done",
          finish_reason: "cancelled",
        });
      const done = yielded.at(-1) as Extract<DecodeEvent, { type: "done" }>;
      expect(done.usage.completion_tokens).toBeLessThan(200);
    } finally {
      await server.close();
    }
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
});
