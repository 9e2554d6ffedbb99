/**
 * Errors in the OpenAI shape, `{"error": {"message", "type", "code", "param"}}`, so that OpenAI
 * clients surface them as they would OpenAI's own.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

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

export function errorBody(error: ApiError) {
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
