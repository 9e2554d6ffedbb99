/**
 * Native `POST /v1/verify`: the protocol's `VerifyBody` (`{model, code, language?, prompt?,
 * threshold?}`) → its `VerifyResponse` (`{syntax: {ok, error?}, score, bits_per_token, tokens,
 * verdict, forward_passes, cached}`), from the verification cache when it can (verify-cache.ts;
 * the `x-sprout-cache` header says hit-edge, hit-kv or miss). What the backend computes is booked
 * against the key (metered.ts); a cached answer costs the model nothing and books nothing.
 */
import type { Context } from "hono";
import { Hono } from "hono";
import type { ServedModel } from "../../../../adapters/src/index.ts";
import { VerifyBody, type VerifyRequest, type VerifyResponse } from "../../../../protocol/src/index.ts";
import type { EdgeEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { checkModel } from "../openai.ts";
import { jsonBody } from "../validate.ts";
import { cachedVerification } from "../verify-cache.ts";
import { waitUntil } from "../wait-until.ts";

/** Verification of `request` by `model` through the cache; the backend computes what the cache lacks. */
export async function verifyCached(c: Context<EdgeEnv>, model: ServedModel, request: VerifyRequest) {
  const backend = c.var.backend;
  if (!backend.verify) throw new ApiError(503, "verify_unavailable", "No backend here can verify code.");
  const verify = backend.verify.bind(backend);
  return cachedVerification(
    c.env,
    model,
    request,
    () => verify(request),
    (work) => waitUntil(c, work),
  );
}

export const verify = new Hono<EdgeEnv>().post("/", jsonBody(VerifyBody), async (c) => {
  const request = c.req.valid("json");
  const model = await checkModel(c, request.model);
  const { verification, outcome } = await verifyCached(c, model, request);
  c.header("x-sprout-cache", outcome);
  return c.json({ ...verification, cached: outcome !== "miss" } satisfies VerifyResponse);
});
