/**
 * Bearer API keys. The edge stores only sha256 digests of keys (`API_KEY_HASHES`); a presented
 * key is hashed and compared with each digest in constant time, so neither the key nor its
 * position in the list leaks through timing. Keys never appear in logs or errors.
 */
import type { MiddlewareHandler } from "hono";
import type { Env } from "./env.ts";
import { ApiError, respondWithError } from "./errors.ts";

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Equal-length strings compared without an early exit. */
export function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

export const apiKeyAuth = (): MiddlewareHandler<{ Bindings: Env }> =>
  async function apiKeyAuth(c, next) {
    const header = c.req.header("authorization");
    const match = header?.match(/^Bearer\s+(\S+)$/i);
    if (!match?.[1]) {
      return respondWithError(
        c,
        new ApiError(401, "missing_api_key", "Send your API key as 'Authorization: Bearer <key>'."),
      );
    }
    const presented = await sha256Hex(match[1]);
    const accepted = (c.env.API_KEY_HASHES ?? "")
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h.length === 64);
    let ok = false;
    for (const hash of accepted) ok = constantTimeEqual(presented, hash) || ok;
    if (!ok) return respondWithError(c, new ApiError(401, "invalid_api_key", "The API key is not valid."));
    await next();
  };
