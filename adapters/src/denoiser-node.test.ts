import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GenerateEvent, PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../protocol/src/index.ts";
import {
  listen,
  type RunningNode,
  type RunningServer,
  startDenoiserNode,
} from "../../test/support/servers.ts";
import { BackendError } from "./backend.ts";
import { DenoiserNodeBackend } from "./denoiser-node.ts";

async function collect(stream: AsyncIterable<GenerateEvent>): Promise<GenerateEvent[]> {
  const events: GenerateEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

describe("DenoiserNodeBackend against the real node", () => {
  let node: RunningNode;
  beforeAll(async () => {
    node = await startDenoiserNode();
  });
  afterAll(() => node.close());

  it("streams validated protocol events", async () => {
    const backend = new DenoiserNodeBackend({ url: node.url, secret: node.secret });
    const events = await collect(
      await backend.doStream({ prompt: "def f():\n", max_tokens: 10, block_size: 5 }),
    );
    expect(events[0]).toMatchObject({ type: "start", model: node.model.manifest.name });
    expect(events.at(-1)?.type).toBe("done");
    const blocks = events.filter((e) => e.type === "block");
    expect(blocks.length).toBeGreaterThanOrEqual(1);
  });

  it("turns a refused secret into a configuration error, not the user's fault", async () => {
    const backend = new DenoiserNodeBackend({ url: node.url, secret: "wrong" });
    const error = await backend.doStream({ prompt: "x", max_tokens: 1 }).catch((e) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect(error).toMatchObject({ code: "backend_auth", status: 502 });
    expect(String(error.message)).not.toContain("wrong");
  });

  it("passes the node's refusal of a request on as invalid_request", async () => {
    const backend = new DenoiserNodeBackend({ url: node.url, secret: node.secret });
    const error = await backend.doStream({ prompt: "x", max_tokens: 4096 }).catch((e) => e);
    expect(error).toMatchObject({ code: "invalid_request", status: 400 });
    expect(error.message).toMatch(/context/);
  });

  it("aborts the node's work when the signal fires", async () => {
    const backend = new DenoiserNodeBackend({ url: node.url, secret: node.secret });
    const cancel = new AbortController();
    const stream = await backend.doStream(
      { prompt: "x", max_tokens: 200, threshold: 1, block_size: 4 },
      { signal: cancel.signal },
    );
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const event of stream) {
          seen.push(event.type);
          if (event.type === "block") cancel.abort();
        }
      })(),
    ).rejects.toThrow();
    expect(seen).not.toContain("done");
  });
});

/** A whole stream, as a node writes it: a multi-byte character in a block, two events of one kind. */
const wholeEvents: GenerateEvent[] = [
  { type: "start", model: "m", prompt_tokens: 1, block_size: 2 },
  { type: "block", index: 0, text: "é =", tokens: 2, steps: 1, ids: [7, 8] },
  { type: "block", index: 1, text: " 1\n", tokens: 2, steps: 2, ids: [9, 10] },
  {
    type: "done",
    finish_reason: "length",
    usage: { prompt_tokens: 1, completion_tokens: 4, forward_passes: 3 },
  },
];
const wholeStream = wholeEvents.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("");

describe("DenoiserNodeBackend against broken nodes", () => {
  let fake: RunningServer;
  beforeAll(async () => {
    // A fake node (test double) that misbehaves in scripted ways, chosen by the prompt.
    const app = new Hono().post("/v1/generate", async (c) => {
      const { prompt } = await c.req.json();
      const version = prompt === "old" ? "1" : String(PROTOCOL_VERSION);
      const sse = (body: string | ReadableStream) =>
        c.body(body, 200, { "content-type": "text/event-stream", [PROTOCOL_HEADER]: version });
      if (prompt === "garbage") return sse("event: block\ndata: {not json\n\n");
      if (prompt === "off-protocol") return sse('event: block\ndata: {"type":"block","index":-1}\n\n');
      if (prompt === "trickle" || prompt === "bunched" || prompt === "cut-mid-event") {
        // A whole stream one byte per chunk, or in one chunk; or cut inside its last event.
        let text = wholeStream;
        if (prompt === "cut-mid-event") text = text.slice(0, text.lastIndexOf("event: done") + 20);
        const bytes = new TextEncoder().encode(text);
        const chunks = prompt === "trickle" ? [...bytes].map((b) => Uint8Array.of(b)) : [bytes];
        return sse(
          new ReadableStream({
            pull(controller) {
              const chunk = chunks.shift();
              if (chunk) controller.enqueue(chunk);
              else controller.close();
            },
          }),
        );
      }
      if (prompt === "cut" || prompt === "old") {
        return sse('event: start\ndata: {"type":"start","model":"m","prompt_tokens":1,"block_size":4}\n\n');
      }
      return c.json({ error: { code: "busy", message: "overloaded" } }, 503);
    });
    fake = await listen(app);
  });
  afterAll(() => fake.close());

  const backend = () => new DenoiserNodeBackend({ url: fake.url, secret: "s" });

  it.each(["trickle", "bunched"])(
    "reads the same events however the stream is cut into chunks (%s)",
    async (prompt) => {
      const events = await collect(await backend().doStream({ prompt, max_tokens: 4 }));
      expect(events).toEqual(wholeEvents);
    },
  );

  it.each([
    ["garbage", /not JSON/],
    ["off-protocol", /outside protocol v2/],
    ["cut", /closed the stream/],
    ["cut-mid-event", /closed the stream/],
  ])("rejects a node that sends %s", async (prompt, message) => {
    const stream = await backend().doStream({ prompt, max_tokens: 4 });
    await expect(collect(stream)).rejects.toMatchObject({
      code: "bad_response",
      detail: expect.stringMatching(message),
    });
  });

  it("refuses a node that speaks another version of the protocol", async () => {
    await expect(backend().doStream({ prompt: "old", max_tokens: 4 })).rejects.toMatchObject({
      code: "bad_response",
      detail: expect.stringMatching(/speaks protocol 1, not 2/),
    });
  });

  it("reports an overloaded node as unavailable", async () => {
    await expect(backend().doStream({ prompt: "busy", max_tokens: 4 })).rejects.toMatchObject({
      code: "backend_unavailable",
      status: 503,
    });
  });

  it("reports a node nobody answers at as unavailable", async () => {
    const gone = new DenoiserNodeBackend({ url: "http://127.0.0.1:9", secret: "s" });
    await expect(gone.doStream({ prompt: "x", max_tokens: 1 })).rejects.toMatchObject({
      code: "backend_unavailable",
    });
  });
});
