/**
 * Vitest globalSetup for the edge's tests, which run inside workerd (vitest.config.ts): servers
 * cannot start in there, so this starts them in Node and provides their URLs — the real
 * denoiser node with the shipped model, and three fake nodes (test doubles for failures: a
 * node that reports a cancellation nobody asked for, one that fails mid-stream, one that is slow)
 * — and a real OpenAI-compatible server for the upstream adapter: the edge app itself, served by
 * Node in front of the same denoiser node; and a webhook receiver with a receiver's failures.
 */
import { createHash } from "node:crypto";
import { Hono } from "hono";
import type { TestProject } from "vitest/node";
import { createEdgeApp } from "../../apps/edge/src/app.ts";
import {
  fakeNode,
  listen,
  type RunningServer,
  START_EVENT,
  slowNode,
  startDenoiserNode,
  webhookReceiver,
} from "./servers.ts";

declare module "vitest" {
  export interface ProvidedContext {
    nodeUrl: string;
    nodeSecret: string;
    modelId: string;
    cancellingNodeUrl: string;
    failingNodeUrl: string;
    slowNodeUrl: string;
    upstreamUrl: string;
    upstreamKey: string;
    receiverUrl: string;
    /** The model's control tokens as text, `<|mask|>`…: what a prompt may spell but never inject. */
    controlTokens: string[];
  }
}

export default async function setup(project: TestProject) {
  const node = await startDenoiserNode();
  const usage = { prompt_tokens: 1, completion_tokens: 0, forward_passes: 1 };
  const fakes: RunningServer[] = [
    await fakeNode([START_EVENT, { type: "done", finish_reason: "cancelled", usage }]),
    await fakeNode([
      START_EVENT,
      { type: "error", code: "internal", message: "decoding failed on the node" },
    ]),
    await slowNode(
      [
        START_EVENT,
        { type: "block", index: 0, text: "pass", tokens: 1, steps: 1, ids: [9] },
        { type: "done", finish_reason: "stop", usage: { ...usage, completion_tokens: 1 } },
      ],
      250,
    ),
  ];
  const upstreamKey = "sk-upstream-test";
  const edge = createEdgeApp();
  const upstreamEnv = {
    MODEL_ID: node.model.manifest.name,
    DENOISER_URL: node.url,
    DENOISER_SECRET: node.secret,
    API_KEY_HASHES: createHash("sha256").update(upstreamKey).digest("hex"),
  };
  fakes.push(await listen(new Hono().all("*", (c) => edge.fetch(c.req.raw, upstreamEnv))));
  const receiver = await webhookReceiver();
  fakes.push(receiver);
  project.provide("receiverUrl", receiver.url);
  project.provide("upstreamUrl", `${(fakes[3] as RunningServer).url}/v1`);
  project.provide("upstreamKey", upstreamKey);
  project.provide("nodeUrl", node.url);
  project.provide("nodeSecret", node.secret);
  project.provide("modelId", node.model.manifest.name);
  project.provide(
    "controlTokens",
    Object.keys(node.model.manifest.special_tokens).map((name) => `<|${name}|>`),
  );
  project.provide("cancellingNodeUrl", (fakes[0] as RunningServer).url);
  project.provide("failingNodeUrl", (fakes[1] as RunningServer).url);
  project.provide("slowNodeUrl", (fakes[2] as RunningServer).url);
  return async () => {
    await Promise.all(fakes.map((f) => f.close()));
    await node.close();
  };
}
