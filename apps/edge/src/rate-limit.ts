/**
 * The rate-limit middleware: asks the key's limiter (limiter.ts) before a request runs, answers
 * 429 with Retry-After when it may not, and releases the lease when the request is over, booking
 * the tokens the route reported through `c.var.reportTokens`. A streaming route calls
 * `c.var.endOfStream()` when its stream ends or its client leaves (the lease lasts as long);
 * anything else is over when the handler answers. Keys without limits, and edges without the
 * `KEY_LIMITER` binding (the app run in Node), pass straight through.
 */
import type { MiddlewareHandler } from "hono";
import type { EdgeEnv } from "./env.ts";
import { ApiError, respondWithError } from "./errors.ts";
import { limiterClient } from "./limiter.ts";

export const rateLimit = (): MiddlewareHandler<EdgeEnv> =>
  async function rateLimit(c, next) {
    let tokens = 0;
    c.set("reportTokens", (count) => {
      tokens += count;
    });
    c.set("endOfStream", async () => {});
    const { id, limits } = c.get("apiKey");
    const limited = Object.values(limits).some((v) => v !== null);
    if (!limited || !c.env.KEY_LIMITER) return next();
    const limiter = limiterClient(c.env.KEY_LIMITER, id);
    const admission = await limiter.acquire(limits);
    if (!admission.ok) {
      c.header("retry-after", String(admission.retryAfterSeconds));
      return respondWithError(
        c,
        new ApiError(429, "rate_limited", `This API key is limited to ${admission.reason}; retry later.`),
      );
    }
    const release = () => limiter.release(admission.lease, tokens).catch(() => {});
    // A stream's lease lasts until its route says the stream is over. The release is registered
    // with waitUntil while the request is alive: a client that leaves ends the request context,
    // and a release started only then would be cut off with it.
    let endOfStream: () => void = () => {};
    const streamOver = new Promise<void>((resolve) => {
      endOfStream = resolve;
    });
    c.set("endOfStream", async () => endOfStream());
    let streaming = false;
    try {
      await next();
      streaming = c.res.headers.get("content-type")?.startsWith("text/event-stream") ?? false;
    } finally {
      if (!streaming) await release();
    }
    if (streaming) {
      const released = streamOver.then(release);
      try {
        c.executionCtx.waitUntil(released);
      } catch {
        // no execution context (the app run in Node): the promise runs on its own
      }
    }
  };
