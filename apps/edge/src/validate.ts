import { zValidator } from "@hono/zod-validator";
import type { ZodType } from "zod";
import { ApiError, respondWithError } from "./errors.ts";

/** zod-validated JSON body; the first issue becomes an OpenAI-shaped 400 naming the field. */
export const jsonBody = <T extends ZodType>(schema: T) =>
  zValidator("json", schema, (result, c) => {
    if (!result.success) {
      const issue = result.error.issues[0];
      const param = issue?.path.join(".") || null;
      const message = param ? `${param}: ${issue?.message}` : (issue?.message ?? "invalid request body");
      return respondWithError(c, new ApiError(400, "invalid_request", message, param));
    }
  });
