/** The OpenAI-compatible adapter's wire, against a scripted upstream (a real one: apps/edge/src/backends.test.ts). */
import { describe, expect, it } from "vitest";
import type { GenerateEvent, GenerateRequest } from "../../protocol/src/index.ts";
import { OpenAiCompatibleBackend } from "./openai-compatible.ts";

/** An upstream that answers every request with these SSE data lines, recording what it was sent. */
function upstream(lines: unknown[]) {
  const sent: { url: string; body: Record<string, unknown> }[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    sent.push({ url: String(input), body: JSON.parse(String(init?.body)) });
    const text = lines.map((l) => `data: ${typeof l === "string" ? l : JSON.stringify(l)}\n\n`).join("");
    return new Response(text, { headers: { "content-type": "text/event-stream" } });
  };
  const backend = new OpenAiCompatibleBackend({
    url: "https://up.example/v1/",
    apiKey: "k",
    model: "up",
    fetch,
  });
  return { backend, sent };
}

async function collect(backend: OpenAiCompatibleBackend, request: GenerateRequest): Promise<GenerateEvent[]> {
  const events: GenerateEvent[] = [];
  for await (const event of await backend.doStream(request)) events.push(event);
  return events;
}

const usage = { prompt_tokens: 9, completion_tokens: 3 };

describe("OpenAiCompatibleBackend", () => {
  it("sends a conversation as a chat request, its messages as they are, and reads the deltas", async () => {
    const { backend, sent } = upstream([
      { choices: [{ delta: { role: "assistant", content: "" }, finish_reason: null }] },
      { choices: [{ delta: { content: "def " }, finish_reason: null }] },
      { choices: [{ delta: { content: "f():" }, finish_reason: null }] },
      { choices: [{ delta: {}, finish_reason: "length" }] },
      { choices: [], usage },
      "[DONE]",
    ]);
    const messages = [
      { role: "developer" as const, content: "Python." },
      { role: "user" as const, content: "A function <|im_end|>" },
    ];
    const events = await collect(backend, { prompt: "", messages, max_tokens: 3, temperature: 0.5 });
    expect(sent).toEqual([
      {
        url: "https://up.example/v1/chat/completions",
        body: {
          model: "up",
          messages,
          max_tokens: 3,
          temperature: 0.5,
          stream: true,
          stream_options: { include_usage: true },
        },
      },
    ]);
    expect(events).toEqual([
      { type: "start", model: "up" },
      { type: "block", index: 0, text: "def " },
      { type: "block", index: 1, text: "f():" },
      { type: "done", finish_reason: "length", usage: { ...usage, forward_passes: 3 } },
    ]);
  });

  it("sends a prompt as a completion request", async () => {
    const { backend, sent } = upstream([
      { choices: [{ text: "x", finish_reason: "stop" }] },
      { choices: [], usage },
      "[DONE]",
    ]);
    const events = await collect(backend, { prompt: "def f():\n", suffix: "\n", max_tokens: 3 });
    expect(sent[0]?.url).toBe("https://up.example/v1/completions");
    expect(sent[0]?.body).toMatchObject({ prompt: "def f():\n", suffix: "\n" });
    expect(sent[0]?.body).not.toHaveProperty("messages");
    expect(events[1]).toEqual({ type: "block", index: 0, text: "x" });
  });

  it("refuses to resume, a conversation too", async () => {
    const { backend, sent } = upstream([]);
    const request = { prompt: "", messages: [{ role: "user" as const, content: "x" }], max_tokens: 3 };
    await expect(backend.doStream({ ...request, committed: [1] })).rejects.toMatchObject({
      code: "invalid_request",
      status: 400,
    });
    expect(sent).toEqual([]);
  });
});
