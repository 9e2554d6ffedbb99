/** The edge: the public API, composed of small routers behind auth and a body limit. */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { BackendError } from "../../../adapters/src/index.ts";
import { apiKeyAuth } from "./auth.ts";
import type { Env } from "./env.ts";
import { ApiError, respondWithError } from "./errors.ts";
import { completions } from "./routes/completions.ts";
import { models } from "./routes/models.ts";

export const MAX_BODY_BYTES = 1024 * 1024;

export function createEdgeApp() {
  const v1 = new Hono<{ Bindings: Env }>()
    .use(apiKeyAuth())
    .use(
      bodyLimit({
        maxSize: MAX_BODY_BYTES,
        onError: (c) =>
          respondWithError(c, new ApiError(413, "body_too_large", "The request body exceeds 1 MiB.")),
      }),
    )
    .route("/models", models)
    .route("/completions", completions);

  const app = new Hono<{ Bindings: Env }>();
  app.get("/", (c) =>
    c.json({ name: "sprout", model: c.env.MODEL_ID, endpoints: ["GET /v1/models", "POST /v1/completions"] }),
  );
  app.route("/v1", v1);
  app.notFound((c) =>
    respondWithError(c, new ApiError(404, "not_found", `No route ${c.req.method} ${c.req.path}.`)),
  );
  app.onError((error, c) => {
    if (error instanceof ApiError) return respondWithError(c, error);
    if (error instanceof HTTPException && error.status < 500) {
      // Raised by Hono itself, e.g. "Malformed JSON in request body" from the validator.
      const code = error.status === 400 ? "invalid_request" : "http_error";
      return respondWithError(c, new ApiError(error.status, code, error.message));
    }
    if (error instanceof BackendError)
      return respondWithError(c, new ApiError(error.status, error.code, error.message));
    console.error(`edge: unhandled ${error.name}: ${error.message}`);
    return respondWithError(
      c,
      new ApiError(500, "internal_error", "The edge failed to handle this request."),
    );
  });
  return app;
}
