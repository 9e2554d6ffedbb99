import type { KVNamespace, Queue } from "@cloudflare/workers-types";
import type { AuthVariables } from "./auth.ts";
import type { BackendVariables } from "./inject-backend.ts";
import type { QueueMessage } from "./jobs.ts";
import type { LimiterNamespace } from "./limiter.ts";
import type { RateLimitVariables } from "./rate-limit.ts";

/** Bindings of the edge worker (wrangler.toml explains each). */
export interface Env {
  /**
   * Base URLs of the denoiser nodes, comma-separated (see backends.ts): the models the edge serves
   * are those the nodes and upstreams say they serve, one pool per model.
   */
  DENOISER_URL: string;
  /** OpenAI-compatible upstreams beside the nodes: JSON `[{url, api_key, model?, weight?}]` (a secret). */
  UPSTREAMS?: string;
  /** Secret shared with the denoiser node (a wrangler secret in production). */
  DENOISER_SECRET: string;
  /** API key records by digest (keys.ts; `npm run keys`); optional beside API_KEY_HASHES. */
  API_KEYS?: KVNamespace;
  /** Per-key rate limiters (limiter.ts); without it, limits are not enforced (the app run in Node). */
  KEY_LIMITER?: LimiterNamespace;
  /** Verification results, global, behind the Cache API (verify-cache.ts); optional. */
  VERIFY_CACHE?: KVNamespace;
  /** Job records and webhook endpoints (jobs.ts). */
  JOBS?: KVNamespace;
  /** Where jobs and webhook deliveries wait for the queue consumer (jobs.ts). */
  JOBS_QUEUE?: Queue<QueueMessage>;
  /** "1" in local development only (`npm start`): webhooks may point at loopback over http. */
  ALLOW_LOOPBACK_WEBHOOKS?: string;
  /** Milliseconds of silence after which a stream gets a `: ping` comment (default 15000). */
  SSE_KEEPALIVE_MS?: string;
  /** Comma-separated hex sha256 digests of the API keys accepted (a wrangler secret). */
  API_KEY_HASHES: string;
}

/** The edge's Hono environment: its bindings, and what its middleware set (auth, rate limit, backend). */
export interface EdgeEnv {
  Bindings: Env;
  Variables: AuthVariables & RateLimitVariables & BackendVariables;
}
