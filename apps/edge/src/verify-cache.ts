/**
 * The verification cache: results keyed by a hash of the model's name, its version (as its
 * backend says: a Sprout node's graph sha256, so new weights never get old verdicts), the code
 * and the options. The Cache API (this data centre, fast) sits in front of KV (`VERIFY_CACHE`, global);
 * both expire after `VERIFY_TTL_SECONDS`. Either is skipped where the runtime lacks it (tests that
 * run the app in Node), and then every verification is computed.
 */
import type { ServedModel } from "../../../adapters/src/index.ts";
import type { Verification, VerifyRequest } from "../../../protocol/src/index.ts";
import { sha256Hex } from "./auth.ts";
import type { Env } from "./env.ts";

export const VERIFY_TTL_SECONDS = 24 * 60 * 60;

/** Where a result came from: computed now, this data centre's cache, or KV. */
export type CacheOutcome = "miss" | "hit-edge" | "hit-kv";

export async function cachedVerification(
  env: Env,
  model: ServedModel,
  request: VerifyRequest,
  compute: () => Promise<Verification>,
  /** Keeps the worker alive for writes after the response (executionCtx.waitUntil). */
  waitUntil: (work: Promise<unknown>) => void,
): Promise<{ verification: Verification; outcome: CacheOutcome }> {
  const key = await sha256Hex(
    JSON.stringify([
      model.id,
      model.version ?? "",
      request.language,
      request.threshold ?? null,
      request.prompt ?? "",
      request.code,
    ]),
  );
  const url = `https://verify-cache.sprout.invalid/${key}`;
  const edge = typeof caches === "undefined" ? undefined : (caches as unknown as { default: Cache }).default;
  const fromEdge = await edge?.match(url);
  if (fromEdge) return { verification: (await fromEdge.json()) as Verification, outcome: "hit-edge" };
  const remember = (verification: Verification) =>
    edge?.put(
      url,
      new Response(JSON.stringify(verification), {
        headers: { "content-type": "application/json", "cache-control": `max-age=${VERIFY_TTL_SECONDS}` },
      }),
    );
  const fromKv = (await env.VERIFY_CACHE?.get(key, "json")) as Verification | null | undefined;
  if (fromKv) {
    waitUntil(Promise.resolve(remember(fromKv)));
    return { verification: fromKv, outcome: "hit-kv" };
  }
  const verification = await compute();
  waitUntil(
    Promise.all([
      remember(verification),
      env.VERIFY_CACHE?.put(key, JSON.stringify(verification), { expirationTtl: VERIFY_TTL_SECONDS }),
    ]),
  );
  return { verification, outcome: "miss" };
}
