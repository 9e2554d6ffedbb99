/**
 * Imported checkpoints served end to end beside sprout-tiny, with the `openai` client: the three
 * tiny family models (test/support/tiny-imported.ts) through `npm start` (the edge in workerd),
 * completions and chat equal to what the runtime decodes by itself; then a stream cut after its
 * first block by a node that dies, resumed on a second node with the text of an uninterrupted run.
 */
import { Hono } from "hono";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chatPromptIds } from "../models/src/chat.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "../models/src/index.ts";
import { TextTokenizer } from "../models/src/tokenizer.ts";
import {
  edgeInNode,
  listen,
  type RunningNode,
  type RunningServer,
  startDenoiserNode,
} from "./support/servers.ts";
import { freePort, type Started, startSprout, whenReady } from "./support/sprout.ts";
import { buildTinyImportedModels, TINY_IMPORTED, type TinyImported } from "./support/tiny-imported.ts";

const API_KEY = "sk-imported-e2e";
const PROMPT = "t5 t9 t3 t7 t1 t2";

let dirs: Record<TinyImported, string>;
const models = {} as Record<TinyImported, Model>;

beforeAll(async () => {
  dirs = buildTinyImportedModels();
  for (const name of TINY_IMPORTED) models[name] = await loadModel(dirs[name]);
}, 180_000);

afterAll(async () => {
  for (const model of Object.values(models)) await model.close();
});

/** A streamed completion's text. */
async function streamedText(stream: AsyncIterable<OpenAI.Completion>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
  return text;
}

/** What the runtime writes by itself for a prompt: the text and the ids. */
async function direct(
  model: Model,
  options: { prompt?: string; messages?: { role: "user"; content: string }[] },
) {
  let text = "";
  const ids: number[] = [];
  for await (const event of model.generate({ prompt: "", ...options, maxTokens: 12 })) {
    if (event.type === "block") {
      text += event.text;
      ids.push(...event.ids);
    }
  }
  return { text, ids };
}

describe("imported models beside sprout-tiny through npm start (workerd)", () => {
  let sprout: Started;
  let client: OpenAI;

  beforeAll(async () => {
    const edgePort = await freePort();
    sprout = startSprout({
      SPROUT_API_KEY: API_KEY,
      SPROUT_EDGE_PORT: String(edgePort),
      SPROUT_NODE_PORT: String(await freePort()),
      SPROUT_MODELS: [SHIPPED_MODEL_DIR, ...TINY_IMPORTED.map((name) => dirs[name])].join(","),
    });
    await whenReady(sprout);
    client = new OpenAI({ apiKey: API_KEY, baseURL: `http://127.0.0.1:${edgePort}/v1`, maxRetries: 0 });
  });

  afterAll(async () => {
    if (sprout?.child.exitCode === null) {
      sprout.child.kill("SIGINT");
      await sprout.exited;
    }
  });

  it("prints and lists every model it serves, sprout-tiny first, with its context", async () => {
    for (const name of ["sprout-tiny", ...TINY_IMPORTED]) expect(sprout.output()).toContain(name);
    const listed = [];
    for await (const model of client.models.list()) listed.push(model);
    expect(listed.map((m) => m.id)).toEqual(["sprout-tiny", ...TINY_IMPORTED]);
    expect((listed[1] as unknown as { context_length: number }).context_length).toBe(256);
  });

  it.each(TINY_IMPORTED)("completes with %s as the runtime does alone, streamed and not", async (name) => {
    const expected = await direct(models[name], { prompt: PROMPT });
    const whole = await client.completions.create({ model: name, prompt: PROMPT, max_tokens: 12 });
    expect(whole.model).toBe(name);
    expect(whole.choices[0]?.text).toBe(expected.text);
    const stream = await client.completions.create({
      model: name,
      prompt: PROMPT,
      max_tokens: 12,
      stream: true,
    });
    expect(await streamedText(stream)).toBe(expected.text);
    expect(expected.ids.length).toBeGreaterThan(0);
  });

  it.each(TINY_IMPORTED)("chats with %s through its own chat template", async (name) => {
    const messages = [{ role: "user" as const, content: "t40 t41 t42" }];
    const expected = await direct(models[name], { messages });
    const tokenizer = await TextTokenizer.fromFile(`${dirs[name]}/tokenizer.json`);
    const ids = chatPromptIds(models[name].manifest, tokenizer, messages);
    expect(ids).toContain(299); // the template's <|im_start|>, a control token
    const reply = await client.chat.completions.create({ model: name, messages, max_tokens: 12 });
    expect(reply.choices[0]?.message.content).toBe(expected.text);
    expect(reply.usage?.prompt_tokens).toBe(ids.length);
  });

  it("still serves sprout-tiny, its default, beside them", async () => {
    const completion = await client.completions.create({
      model: "sprout-tiny",
      prompt: "def add(a, b):\n",
      max_tokens: 8,
    });
    expect(completion.choices[0]?.text.length).toBeGreaterThan(0);
  });
});

/**
 * A test double for a node that dies mid-stream: it passes everything through to `target`, but
 * cuts a generation's stream right after its first block (the connection is dropped).
 */
async function dyingAfterFirstBlock(target: string): Promise<RunningServer & { cuts: () => number }> {
  let cuts = 0;
  const app = new Hono().all("*", async (c) => {
    const url = new URL(c.req.url);
    const request = c.req.raw;
    const upstream = await fetch(`${target}${url.pathname}${url.search}`, {
      method: request.method,
      headers: request.headers,
      body: request.method === "GET" ? undefined : await request.arrayBuffer(),
    });
    if (!url.pathname.endsWith("/generate") || !upstream.body) return upstream;
    const reader = upstream.body.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) return controller.close();
        controller.enqueue(value);
        seen += decoder.decode(value, { stream: true });
        if (seen.includes('"type":"block"')) {
          cuts++;
          await reader.cancel();
          controller.error(new Error("the node died"));
        }
      },
    });
    return new Response(body, { status: upstream.status, headers: upstream.headers });
  });
  const server = await listen(app);
  return { ...server, cuts: () => cuts };
}

describe("an imported model resumed mid-stream on a second node", () => {
  const SECRET = "imported-resume-secret";
  const KEY = "sk-imported-resume";
  let a: RunningNode;
  let b: RunningNode;
  let dying: Awaited<ReturnType<typeof dyingAfterFirstBlock>>;
  let edge: RunningServer;
  let client: OpenAI;

  beforeAll(async () => {
    a = await startDenoiserNode(SECRET, [dirs["tiny-fast-dllm"], dirs["tiny-sdar"]]);
    b = await startDenoiserNode(SECRET, [dirs["tiny-fast-dllm"], dirs["tiny-sdar"]]);
    dying = await dyingAfterFirstBlock(a.url);
    edge = await edgeInNode([dying.url, b.url], SECRET, KEY);
    client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: KEY, maxRetries: 0 });
  }, 120_000);

  afterAll(async () => {
    await edge?.close();
    await dying?.close();
    await b?.close();
    await a?.close();
  });

  it.each(["tiny-fast-dllm", "tiny-sdar"] as const)(
    "%s: the client gets the uninterrupted run's text",
    async (name) => {
      const expected = await direct(models[name], { prompt: PROMPT });
      const before = dying.cuts();
      // The pool spreads requests over both members: send until one went to the dying node.
      for (let i = 0; i < 6 && dying.cuts() === before; i++) {
        const stream = await client.completions.create({
          model: name,
          prompt: PROMPT,
          max_tokens: 12,
          stream: true,
        });
        expect(await streamedText(stream)).toBe(expected.text);
      }
      expect(dying.cuts()).toBeGreaterThan(before);
    },
    60_000,
  );
});
