/**
 * The router the worker serves from (backends.ts), built from the bindings, run inside workerd
 * against the real denoiser node and a real OpenAI-compatible server (the edge app itself, served
 * by Node in front of the same node; test/support/edge-setup.ts).
 */
import { describe, expect, inject, it } from "vitest";
import { backendFor } from "./backends.ts";
import { completeText } from "./complete-text.ts";
import type { Env } from "./env.ts";

const env = (overrides: Partial<Env>): Env => ({
  DENOISER_URL: inject("nodeUrl"),
  DENOISER_SECRET: inject("nodeSecret"),
  API_KEY_HASHES: "",
  ...overrides,
});

/** A request's text through the OpenAI-compatible upstream (alone in the pool), and through the node. */
async function viaUpstreamAndNode(request: Parameters<typeof completeText>[1]) {
  const upstreams = JSON.stringify([
    { url: inject("upstreamUrl"), api_key: inject("upstreamKey"), model: inject("modelId") },
  ]);
  const viaUpstream = await completeText(
    backendFor(env({ DENOISER_URL: "", UPSTREAMS: upstreams })),
    request,
  );
  const viaNode = await completeText(backendFor(env({})), request);
  return { viaUpstream, viaNode };
}

describe("backendFor", () => {
  it("serves from an OpenAI-compatible upstream in the pool, and the same text as a node gives", async () => {
    const { viaUpstream, viaNode } = await viaUpstreamAndNode({
      prompt: "def fibonacci(n):\n",
      max_tokens: 12,
    });
    expect(viaUpstream.text.length).toBeGreaterThan(0);
    expect(viaUpstream.text).toBe(viaNode.text);
  });

  it("sends a conversation to an upstream as chat: the same text as the node renders and gives", async () => {
    const { viaUpstream, viaNode } = await viaUpstreamAndNode({
      prompt: "",
      messages: [{ role: "user" as const, content: "Return the n-th Fibonacci number." }],
      max_tokens: 12,
    });
    expect(viaUpstream.text.length).toBeGreaterThan(0);
    expect(viaUpstream.text).toBe(viaNode.text);
  });

  it("learns the models from the members: a node's /readyz, an upstream's /v1/models when none is configured", async () => {
    const viaNode = await backendFor(env({})).models?.();
    expect(viaNode).toEqual([
      { id: inject("modelId"), version: expect.stringMatching(/^[0-9a-f]{64}$/), context_length: 512 },
    ]);
    const upstreams = JSON.stringify([{ url: inject("upstreamUrl"), api_key: inject("upstreamKey") }]);
    const upstream = backendFor(env({ DENOISER_URL: "", UPSTREAMS: upstreams }));
    expect(await upstream.models?.()).toEqual([{ id: inject("modelId") }]);
    const request = { model: inject("modelId"), prompt: "def fibonacci(n):\n", max_tokens: 8 };
    expect((await completeText(upstream, request)).text).toBe(
      (await completeText(backendFor(env({})), request)).text,
    );
  });

  it("keeps one pool per configuration, so its circuits and load counts outlive a request", () => {
    expect(backendFor(env({}))).toBe(backendFor(env({})));
    expect(backendFor(env({ DENOISER_URL: "http://127.0.0.1:9" }))).not.toBe(backendFor(env({})));
  });
});
