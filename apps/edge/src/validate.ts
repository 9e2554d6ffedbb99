import { zValidator } from "@hono/zod-validator";
import type { ZodType } from "zod";
import { ApiError, respondWithError } from "./errors.ts";

/** zod-validated JSON body; the first issue becomes an OpenAI-shaped 400 naming the field. */
export const jsonBody = <T extends ZodType>(schema: T) =>
  zValidator("json", schema, (result, c) => {
    // Hono reads a body of another type as `{}`: say what is wrong instead of "model: required".
    if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(c.req.header("content-type") ?? "")) {
      return respondWithError(
        c,
        new ApiError(
          400,
          "invalid_content_type",
          "Send the body as JSON with 'Content-Type: application/json'.",
        ),
      );
    }
    if (!result.success) {
      const issue = result.error.issues[0];
      const param = issue?.path.join(".") || null;
      const message = param ? `${param}: ${issue?.message}` : (issue?.message ?? "invalid request body");
      return respondWithError(c, new ApiError(400, "invalid_request", message, param));
    }
  });
