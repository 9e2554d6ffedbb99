/**
 * Errors in the OpenAI shape, `{"error": {"message", "type", "code", "param"}}` (the protocol's
 * `ErrorBody`), so that OpenAI clients surface them as they would OpenAI's own.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { BackendError } from "../../../adapters/src/index.ts";
import type { ErrorBody } from "../../../protocol/src/index.ts";

const TYPES: Partial<Record<ContentfulStatusCode, string>> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
  502: "api_error",
  503: "api_error",
};

export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export function errorBody(error: ApiError): ErrorBody {
  return {
    error: {
      message: error.message,
      type: TYPES[error.status] ?? "api_error",
      code: error.code,
      param: error.param,
    },
  };
}

export const respondWithError = (c: Context, error: ApiError) => c.json(errorBody(error), error.status);

/** Any thrown value as the ApiError a client should see; unexpected ones say nothing internal. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof BackendError) {
    if (error.status >= 500) console.error(`edge: backend error ${error.code}: ${error.detail}`);
    return new ApiError(
      error.status,
      error.code,
      error.message,
      error.code === "model_not_found" ? "model" : null,
    );
  }
  if (error instanceof HTTPException && error.status < 500) {
    // Raised by Hono itself, e.g. "Malformed JSON in request body" from the validator.
    const code = error.status === 400 ? "invalid_request" : "http_error";
    return new ApiError(error.status as ContentfulStatusCode, code, error.message);
  }
  console.error(
    `edge: unhandled ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
  );
  return new ApiError(500, "internal_error", "The edge failed to handle this request.");
}
