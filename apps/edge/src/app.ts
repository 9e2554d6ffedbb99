/**
 * The edge: the public API, composed of small routers behind auth, a body limit, scopes and the
 * key's rate limit; each request is given its backend, metered against its key (inject-backend.ts).
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { apiKeyAuth, requireScope } from "./auth.ts";
import type { EdgeEnv, Env } from "./env.ts";
import { ApiError, respondWithError, toApiError } from "./errors.ts";
import { type BackendOptions, injectBackend } from "./inject-backend.ts";
import { docsPage, openApiDocument } from "./openapi.ts";
import { rateLimit } from "./rate-limit.ts";
import { chat } from "./routes/chat.ts";
import { completions } from "./routes/completions.ts";
import { edits } from "./routes/edits.ts";
import { generate } from "./routes/generate.ts";
import { jobs, webhooks } from "./routes/jobs.ts";
import { models } from "./routes/models.ts";
import { verify } from "./routes/verify.ts";

export const MAX_BODY_BYTES = 1024 * 1024;

export type EdgeAppOptions = BackendOptions;

export function createEdgeApp({ backendFor }: EdgeAppOptions) {
  const v1 = new Hono<EdgeEnv>()
    .use(apiKeyAuth())
    .use(
      bodyLimit({
        maxSize: MAX_BODY_BYTES,
        onError: (c) =>
          respondWithError(c, new ApiError(413, "body_too_large", "The request body exceeds 1 MiB.")),
      }),
    )
    .use("/completions", requireScope("completions"))
    .use("/chat/completions", requireScope("completions"))
    .use("/generate", requireScope("generate"))
    .use("/verify", requireScope("verify"))
    .use("/edits", requireScope("generate"))
    .use("/jobs/*", requireScope("jobs"))
    .use("/jobs", requireScope("jobs"))
    .use("/webhooks/*", requireScope("jobs"))
    .use("/webhooks", requireScope("jobs"))
    .use(rateLimit())
    .use(injectBackend({ backendFor }))
    .route("/models", models)
    .route("/completions", completions)
    .route("/chat/completions", chat)
    .route("/generate", generate)
    .route("/verify", verify)
    .route("/edits", edits)
    .route("/jobs", jobs)
    .route("/webhooks", webhooks);

  const app = new Hono<{ Bindings: Env }>();
  // `/` itself is the playground (static assets, wrangler.toml [assets]); this is the index for programs.
  app.get("/api", (c) =>
    c.json({
      name: "sprout",
      endpoints: [
        "GET /v1/models",
        "POST /v1/completions",
        "POST /v1/chat/completions",
        "POST /v1/generate",
        "POST /v1/verify",
        "POST /v1/edits",
        "POST /v1/jobs",
        "GET /v1/jobs/{id}",
        "POST /v1/webhooks",
        "GET /v1/webhooks",
        "DELETE /v1/webhooks/{id}",
      ],
    }),
  );
  app.get("/openapi.json", (c) => c.json(openApiDocument()));
  app.get("/docs", (c) => c.html(docsPage(openApiDocument())));
  app.route("/v1", v1);
  app.notFound((c) =>
    respondWithError(c, new ApiError(404, "not_found", `No route ${c.req.method} ${c.req.path}.`)),
  );
  app.onError((error, c) => respondWithError(c, toApiError(error)));
  return app;
}
