/**
 * Vitest globalSetup for the edge's tests, which run inside workerd (vitest.config.ts): servers
 * cannot start in there, so this starts them in Node and provides their URLs — the real
 * denoiser node with the shipped model (for the fuzz, webhook and pool tests; the edge's own
 * behaviour is tested against a test double, test/support/fake-backend.ts), a real
 * OpenAI-compatible server for the upstream adapter (the edge app itself, served by Node in front
 * of the same denoiser node), and a webhook receiver with a receiver's failures.
 */
import { createHash } from "node:crypto";
import { Hono } from "hono";
import type { TestProject } from "vitest/node";
import { createEdgeApp } from "../../apps/edge/src/app.ts";
import { backendFor } from "../../apps/edge/src/backends.ts";
import { listen, type RunningServer, startDenoiserNode, webhookReceiver } from "./servers.ts";

declare module "vitest" {
  export interface ProvidedContext {
    nodeUrl: string;
    nodeSecret: string;
    modelId: string;
    upstreamUrl: string;
    upstreamKey: string;
    receiverUrl: string;
    /** The model's control tokens as text, `<|mask|>`…: what a prompt may spell but never inject. */
    controlTokens: string[];
  }
}

export default async function setup(project: TestProject) {
  const node = await startDenoiserNode();
  const upstreamKey = "sk-upstream-test";
  const edge = createEdgeApp({ backendFor });
  const upstreamEnv = {
    DENOISER_URL: node.url,
    DENOISER_SECRET: node.secret,
    API_KEY_HASHES: createHash("sha256").update(upstreamKey).digest("hex"),
  };
  const upstream = await listen(new Hono().all("*", (c) => edge.fetch(c.req.raw, upstreamEnv)));
  const receiver = await webhookReceiver();
  const servers: RunningServer[] = [upstream, receiver];
  project.provide("receiverUrl", receiver.url);
  project.provide("upstreamUrl", `${upstream.url}/v1`);
  project.provide("upstreamKey", upstreamKey);
  project.provide("nodeUrl", node.url);
  project.provide("nodeSecret", node.secret);
  project.provide("modelId", node.model.manifest.name);
  project.provide(
    "controlTokens",
    Object.keys(node.model.manifest.special_tokens).map((name) => `<|${name}|>`),
  );
  return async () => {
    await Promise.all(servers.map((s) => s.close()));
    await node.close();
  };
}
