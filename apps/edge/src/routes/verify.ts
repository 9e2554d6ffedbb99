/**
 * Native `POST /v1/verify`: `{model, code, language?, prompt?, threshold?}` →
 * `{syntax: {ok, error?}, score, bits_per_token, tokens, verdict, cached}`, from the verification
 * cache when it can (verify-cache.ts; the `x-sprout-cache` header says hit-edge, hit-kv or miss).
 */
import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import { NodeVerifyRequest } from "../../../../adapters/src/index.ts";
import { backendFor } from "../backends.ts";
import type { EdgeEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { checkModel } from "../openai.ts";
import { jsonBody } from "../validate.ts";
import { cachedVerification } from "../verify-cache.ts";

export const VerifyBody = NodeVerifyRequest.extend({ model: z.string().min(1) });

/** Verification of `request` through the cache; the backend computes what the cache lacks. */
export async function verifyCached(c: Context<EdgeEnv>, request: z.infer<typeof NodeVerifyRequest>) {
  const backend = backendFor(c.env);
  if (!backend.verify) throw new ApiError(503, "verify_unavailable", "No backend here can verify code.");
  const verify = backend.verify.bind(backend);
  const waitUntil = (work: Promise<unknown>) => {
    try {
      c.executionCtx.waitUntil(work);
    } catch {
      void work.catch(() => {}); // no execution context (the app run in Node): let it finish
    }
  };
  return cachedVerification(c.env, request, () => verify(request), waitUntil);
}

export const verify = new Hono<EdgeEnv>().post("/", jsonBody(VerifyBody), async (c) => {
  const { model, ...request } = c.req.valid("json");
  checkModel(c, model);
  const { verification, outcome } = await verifyCached(c, request);
  c.header("x-sprout-cache", outcome);
  return c.json({ ...verification, cached: outcome !== "miss" });
});
