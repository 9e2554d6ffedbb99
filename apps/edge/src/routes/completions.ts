/**
 * OpenAI-compatible `POST /v1/completions`, streamed or not (openai.ts). Each committed block of
 * the denoiser becomes one chunk. Sprout extensions in the body: `block_size` and `threshold`,
 * the speed/quality dial. Decoding is greedy unless `temperature` is given (> 0); `top_p` and
 * `seed` shape the sampling, and the same seed gives the same completion. `suffix` infills.
 */
import { Hono } from "hono";
import { z } from "zod";
import type { EdgeEnv } from "../env.ts";
import { checkModel, nodeRequest, OpenAiFields, respondOpenAi } from "../openai.ts";
import { jsonBody } from "../validate.ts";

export const CompletionRequest = z.object({
  ...OpenAiFields,
  prompt: z.union([
    z.string(),
    z
      .array(z.string())
      .length(1)
      .transform((p) => p[0] as string),
  ]),
  max_tokens: z.number().int().min(1).max(1024).default(16),
  suffix: z.string().nullish(),
});

export const completions = new Hono<EdgeEnv>().post("/", jsonBody(CompletionRequest), async (c) => {
  const body = c.req.valid("json");
  await checkModel(c, body.model);
  // OpenAI treats an empty suffix as none; so does Sprout (infilling needs text after the middle).
  const request = nodeRequest(body, body.prompt, body.max_tokens, body.suffix || undefined);
  return respondOpenAi(c, body, request, {
    idPrefix: "cmpl",
    object: "text_completion",
    chunkObject: "text_completion",
    choice: (text, finish) => ({ text, index: 0, logprobs: null, finish_reason: finish }),
    chunkChoice: (text, finish) => ({ text, index: 0, logprobs: null, finish_reason: finish }),
  });
});
