/**
 * OpenAI-compatible `POST /v1/chat/completions`, streamed or not (openai.ts).
 *
 * The edge does not render a conversation: it sends the messages to the backend as data (the
 * node request's `messages`; text parts joined, `name` dropped). A Sprout node renders them as
 * its model reads a conversation (models/src/chat.ts): an imported checkpoint's own chat template,
 * message text kept as text; for Sprout's own code model, which was not trained on conversations,
 * instructions (system, developer and user messages) as docstrings and earlier assistant messages
 * as the code they wrote. When the last message is the assistant's, its content is a prefill: the
 * model continues it, e.g. `def fibonacci(n):\n` to get a body. An OpenAI-compatible upstream gets
 * them as its own chat request. The reply is the text the model writes.
 */
import { Hono } from "hono";
import { z } from "zod";
import { ChatMessage } from "../../../../protocol/src/index.ts";
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
        role: ChatMessage.shape.role,
        content: Content,
        name: z.string().optional(),
      }),
    )
    .min(1),
  max_tokens: z.number().int().min(1).max(1024).nullish(),
  max_completion_tokens: z.number().int().min(1).max(1024).nullish(),
});

export const chat = new Hono<EdgeEnv>().post("/", jsonBody(ChatRequest), async (c) => {
  const body = c.req.valid("json");
  await checkModel(c, body.model);
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? 128;
  const messages = body.messages.map(({ role, content }) => ({ role, content }));
  const request = { ...nodeRequest(body, "", maxTokens), messages };
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
