/**
 * The rate-limit middleware: asks the key's limiter (limiter.ts) before a request runs and answers
 * 429 with Retry-After when it may not. An admitted request gets a `KeyMeter` (meter.ts) as
 * `c.var.meter`: the backend it is given books against it (metered.ts), and the lease is
 * released, with the tokens booked, once the request and every stream it opened have ended
 * (before the answer, when no stream is left running).
 * Keys without limits, and edges without the `KEY_LIMITER` binding (the app run in Node), pass
 * straight through, unmetered.
 */
import type { MiddlewareHandler } from "hono";
import type { EdgeEnv } from "./env.ts";
import { ApiError, respondWithError } from "./errors.ts";
import { limiterClient } from "./limiter.ts";
import { KeyMeter, type Meter, UNMETERED } from "./meter.ts";
import { waitUntil } from "./wait-until.ts";

export interface RateLimitVariables {
  /** The caller's account with its key's limiter (set by `rateLimit`). */
  meter: Meter;
}

export const rateLimit = (): MiddlewareHandler<EdgeEnv> =>
  async function rateLimit(c, next) {
    const { id, limits } = c.get("apiKey");
    const limited = Object.values(limits).some((v) => v !== null);
    if (!limited || !c.env.KEY_LIMITER) {
      c.set("meter", UNMETERED);
      return next();
    }
    const limiter = limiterClient(c.env.KEY_LIMITER, id);
    const admission = await limiter.acquire(limits);
    if (!admission.ok) {
      c.header("retry-after", String(admission.retryAfterSeconds));
      return respondWithError(
        c,
        new ApiError(429, "rate_limited", `This API key is limited to ${admission.reason}; retry later.`),
      );
    }
    const meter = new KeyMeter((tokens) => limiter.release(admission.lease, tokens));
    waitUntil(c, meter.settled);
    c.set("meter", meter);
    const request = meter.hold();
    try {
      await next();
    } finally {
      request();
      // Answered with nothing left running: the tokens are booked before the client hears back,
      // so its next request already sees them. A stream settles when it ends (waitUntil above).
      if (!meter.held) await meter.settled;
    }
  };
