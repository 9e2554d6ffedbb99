/**
 * A generation run to its end, for answers that are not streamed (OpenAI routes without
 * `stream`, completion jobs): its text, finish reason and usage. An `error` event, or a stream
 * that ends without `done`, is a 502.
 */
import type { Backend, StreamOptions } from "../../../adapters/src/index.ts";
import type { FinishReason, GenerateRequest, Usage } from "../../../protocol/src/index.ts";
import { ApiError } from "./errors.ts";

export interface CompletedText {
  text: string;
  finish_reason: FinishReason;
  usage: Usage;
}

export async function completeText(
  backend: Backend,
  request: GenerateRequest,
  options?: StreamOptions,
): Promise<CompletedText> {
  let text = "";
  for await (const event of await backend.doStream(request, options)) {
    if (event.type === "block") text += event.text;
    if (event.type === "error") throw new ApiError(502, "backend_error", event.message);
    if (event.type === "done") return { text, finish_reason: event.finish_reason, usage: event.usage };
  }
  throw new ApiError(502, "backend_error", "The model backend ended without finishing.");
}
