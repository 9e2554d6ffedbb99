/**
 * Two real models behind one edge, with the `openai` client: node A serves sprout-tiny and its
 * autoregressive twin, node B the twin only; the edge (its app and backendFor, served by Node)
 * learns that from their /readyz, lists both at /v1/models, sends each request to nodes serving
 * its model, answers 404 for another, and fails over within the twin's pool when B is gone.
 */
import OpenAI, { NotFoundError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  edgeInNode,
  type RunningNode,
  type RunningServer,
  startDenoiserNode,
  TWO_MODEL_DIRS,
} from "./support/servers.ts";

const KEY = "sk-multi-model";
const SECRET = "multi-model-secret";

describe("two models behind one edge", () => {
  let a: RunningNode;
  let b: RunningNode;
  let edge: RunningServer;
  let client: OpenAI;
  beforeAll(async () => {
    a = await startDenoiserNode(SECRET, TWO_MODEL_DIRS);
    b = await startDenoiserNode(SECRET, [a.models[1] as RunningNode["model"]]);
    edge = await edgeInNode([a.url, b.url], SECRET, KEY);
    client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  afterAll(async () => {
    await edge?.close();
    await b?.close();
    await a?.close();
  });

  it("lists both models, the first node's first model first, with their context", async () => {
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models).toEqual([
      { id: "sprout-tiny", object: "model", created: 0, owned_by: "sprout", context_length: 512 },
      { id: "sprout-tiny-ar", object: "model", created: 0, owned_by: "sprout", context_length: 512 },
    ]);
  });

  it("serves each model from nodes serving it, streamed and not", async () => {
    for (const model of ["sprout-tiny", "sprout-tiny-ar"]) {
      const completion = await client.completions.create({
        model,
        prompt: "def add(a, b):\n",
        max_tokens: 8,
      });
      expect(completion.model).toBe(model);
      expect(completion.choices[0]?.text.length).toBeGreaterThan(0);
      const usage = completion.usage as unknown as { completion_tokens: number; forward_passes: number };
      // The twin decodes autoregressively: one token per forward (its node's signature).
      if (model === "sprout-tiny-ar") expect(usage.forward_passes).toBe(usage.completion_tokens);
      const stream = await client.chat.completions.create({
        model,
        messages: [{ role: "user", content: "Add two numbers." }],
        max_tokens: 8,
        stream: true,
      });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      expect(text.length).toBeGreaterThan(0);
    }
  });

  it("answers 404 model_not_found for another model, naming the two", async () => {
    const error = await client.completions
      .create({ model: "gpt-4", prompt: "x", max_tokens: 1 })
      .catch((e) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error.code).toBe("model_not_found");
    expect(error.message).toMatch(/Available models: sprout-tiny, sprout-tiny-ar\./);
  });

  it("fails over within the twin's pool once node B is gone", async () => {
    await b.close();
    for (let i = 0; i < 3; i++) {
      const completion = await client.completions.create({
        model: "sprout-tiny-ar",
        prompt: "x = ",
        max_tokens: 4,
      });
      expect(completion.choices[0]?.finish_reason).toMatch(/^(stop|length)$/);
    }
  });
});
