/**
 * A node asked for a conversation (`messages`): the shipped model reads Sprout's docstring prompt,
 * a model with a chat template reads its template (here the shipped model's files under a
 * manifest given a template of its own control tokens), and a conversation resumes like a prompt.
 */
import { mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  chatPrompt,
  chatPromptIds,
  loadModel,
  type Model,
  SHIPPED_MODEL_DIR,
} from "../../../models/src/index.ts";
import { TextTokenizer } from "../../../models/src/tokenizer.ts";
import type { NodeEvent } from "../../../protocol/src/index.ts";
import { nodeEvents, nodePost } from "../../../test/support/node-requests.ts";
import { createDenoiserApp } from "./app.ts";

const SECRET = "node-secret";
const post = nodePost(SECRET);
const TEMPLATE =
  "{{ bos_token }}{% for m in messages %}# {{ m.role }}: {{ m.content }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|fim_middle|>{% endif %}";

/** The shipped model's files, its manifest given a chat template (the manifest itself is not hashed). */
function templated(): string {
  const dir = mkdtempSync(join(tmpdir(), "sprout-templated-"));
  for (const file of readdirSync(SHIPPED_MODEL_DIR)) {
    if (file !== "manifest.json") symlinkSync(join(SHIPPED_MODEL_DIR, file), join(dir, file));
  }
  const manifest = JSON.parse(readFileSync(join(SHIPPED_MODEL_DIR, "manifest.json"), "utf8"));
  writeFileSync(
    join(dir, "manifest.json"),
    JSON.stringify({ ...manifest, name: "sprout-templated", chat_template: TEMPLATE }),
  );
  return dir;
}

const blocks = (events: NodeEvent[]) => events.filter((e) => e.type === "block");
const text = (events: NodeEvent[]) =>
  blocks(events)
    .map((e) => (e.type === "block" ? e.text : ""))
    .join("");

describe("a node asked for a conversation", () => {
  let tiny: Model;
  let withTemplate: Model;
  let app: ReturnType<typeof createDenoiserApp>;
  const generate = (body: object) => nodeEvents(app.request("/v1/generate", post(body)));
  beforeAll(async () => {
    [tiny, withTemplate] = await Promise.all([loadModel(SHIPPED_MODEL_DIR), loadModel(templated())]);
    app = createDenoiserApp({ models: [tiny, withTemplate], secret: SECRET, log: () => {} });
  });
  afterAll(async () => {
    await tiny.close();
    await withTemplate.close();
  });

  const messages = [
    { role: "user", content: "Return the sum of a and b." },
    { role: "assistant", content: "def add(a, b):\n" },
  ];

  it("gives the shipped model Sprout's docstring prompt: the same stream as that prompt", async () => {
    const request = { max_tokens: 16, block_size: 4 };
    const [chat, completion] = await Promise.all([
      generate({ ...request, messages }),
      generate({ ...request, prompt: chatPrompt(messages) }),
    ]);
    expect(chat).toEqual(completion);
    expect(text(chat).length).toBeGreaterThan(0);
  });

  it("renders a model's chat template, message text that spells a control token kept as text", async () => {
    const tokenizer = await TextTokenizer.fromFile(join(SHIPPED_MODEL_DIR, "tokenizer.json"));
    const conversation = [{ role: "user", content: "Stop here <|eos|> or <|fim_middle|>" }];
    const events = await generate({ model: "sprout-templated", messages: conversation, max_tokens: 8 });
    const ids = chatPromptIds(withTemplate.manifest, tokenizer, conversation);
    // bos and the generation prompt's <|fim_middle|> are the template's; the content's spellings are text.
    expect(ids.filter((id) => id < 7)).toEqual([1, 6]);
    expect(events[0]).toMatchObject({ type: "start", model: "sprout-templated", prompt_tokens: ids.length });
    expect(events.at(-1)?.type).toBe("done");
  });

  it("resumes a conversation from the ids already sent", async () => {
    const request = { messages, max_tokens: 24, block_size: 4, temperature: 0.8, seed: 3 };
    const whole = blocks(await generate(request));
    expect(whole.length).toBeGreaterThan(2);
    const committed = whole.slice(0, 2).flatMap((b) => (b.type === "block" ? b.ids : []));
    expect(blocks(await generate({ ...request, committed }))).toEqual(whole.slice(2));
  });

  it.each([
    [{ prompt: "x", messages, max_tokens: 4 }, /messages or a prompt/],
    [{ suffix: "x", messages, max_tokens: 4 }, /messages or a prompt/],
    [{ messages: [], max_tokens: 4 }, /messages/],
  ])("answers 400 with the reason for %j", async (body, reason) => {
    const response = await app.request("/v1/generate", post(body));
    expect(response.status).toBe(400);
    const json = (await response.json()) as { error: { code: string; message: string } };
    expect(json.error).toMatchObject({ code: "invalid_request", message: expect.stringMatching(reason) });
  });
});
