/**
 * OpenAI-compatible `POST /v1/chat/completions`, streamed or not (openai.ts).
 *
 * Sprout's model completes code; it was not trained on conversations. Messages become one
 * prompt the way its training data reads: instructions (system, developer and user messages) as
 * docstrings, `"""\n<content>\n"""\n`, and earlier assistant messages as the code they wrote,
 * each followed by a newline. When the last message is the assistant's, its content is a prefill:
 * the model continues it (no newline added), e.g. `def fibonacci(n):\n` to get a body. The reply
 * is the text the model writes after the prompt.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { EdgeEnv } from "../env.ts";
import { checkModel, nodeRequest, OpenAiFields, respondOpenAi } from "../openai.ts";
import { jsonBody } from "../validate.ts";

const Content = z.union([
  z.string(),
  z
    .array(z.object({ type: z.literal("text"), text: z.string() }))
    .transform((parts) => parts.map((p) => p.text).join("")),
]);

export const ChatRequest = z.object({
  ...OpenAiFields,
  messages: z
    .array(
      z.object({
        role: z.enum(["system", "developer", "user", "assistant"]),
        content: Content,
        name: z.string().optional(),
      }),
    )
    .min(1),
  max_tokens: z.number().int().min(1).max(1024).nullish(),
  max_completion_tokens: z.number().int().min(1).max(1024).nullish(),
});

/** The prompt a conversation becomes (see the module comment). */
export function chatPrompt(messages: { role: string; content: string }[]): string {
  return messages
    .map((m, i) => {
      if (m.role !== "assistant") return `"""\n${m.content.trim()}\n"""\n`;
      return i === messages.length - 1 ? m.content : `${m.content.replace(/\n*$/, "")}\n`;
    })
    .join("");
}

export const chat = new Hono<EdgeEnv>().post("/", jsonBody(ChatRequest), async (c) => {
  const body = c.req.valid("json");
  checkModel(c, body.model);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? 128;
  const request = nodeRequest(body, chatPrompt(body.messages), maxTokens);
  return respondOpenAi(c, body, request, {
    idPrefix: "chatcmpl",
    object: "chat.completion",
    chunkObject: "chat.completion.chunk",
    choice: (text, finish) => ({
      index: 0,
      message: { role: "assistant", content: text, refusal: null },
      logprobs: null,
      finish_reason: finish,
    }),
    chunkChoice: (text, finish, first) => {
      const delta = finish === null ? { content: text } : {};
      return {
        index: 0,
        // The first chunk names the role, as OpenAI's do.
        delta: first ? { role: "assistant", content: "", ...delta } : delta,
        logprobs: null,
        finish_reason: finish,
      };
    },
  });
});
