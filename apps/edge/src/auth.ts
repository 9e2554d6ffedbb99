/**
 * Bearer API keys. The edge stores only sha256 digests of keys. A presented key is hashed and
 * looked up in KV (`API_KEYS`, records with scopes, expiry, revocation and limits: keys.ts);
 * keys in the `API_KEY_HASHES` secret (bootstrap and local development: every scope, no
 * limits) are compared with each digest in constant time, so neither the key nor its position
 * in the list leaks through timing. Keys never appear in logs or errors, and a key in the query
 * string is refused (URLs end up in logs).
 */
import type { MiddlewareHandler } from "hono";
import type { EdgeEnv } from "./env.ts";
import { ApiError, respondWithError } from "./errors.ts";
import { KeyRecord, keyIdFor, kvKeyFor, SCOPES, type Scope } from "./keys.ts";

export interface AuthVariables {
  /** The caller's key (set by `apiKeyAuth`). */
  apiKey: KeyRecord;
}

/** The record for keys from `API_KEY_HASHES`: every scope, no expiry, no limits. */
const bootstrapKey = (digest: string): KeyRecord => ({
  id: keyIdFor(digest),
  name: "API_KEY_HASHES",
  scopes: [...SCOPES],
  created_at: 0,
  expires_at: null,
  revoked_at: null,
  limits: { requests_per_minute: null, tokens_per_minute: null, concurrency: null },
});

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

export const apiKeyAuth = (): MiddlewareHandler<EdgeEnv> =>
  async function apiKeyAuth(c, next) {
    const query = new URL(c.req.url).searchParams;
    if (["key", "api_key", "apikey", "access_token"].some((name) => query.has(name))) {
      return respondWithError(
        c,
        new ApiError(
          400,
          "key_in_url",
          "Never put an API key in a URL; send it as 'Authorization: Bearer <key>'.",
        ),
      );
    }
    const header = c.req.header("authorization");
    const match = header?.match(/^Bearer\s+(\S+)$/i);
    if (!match?.[1]) {
      return respondWithError(
        c,
        new ApiError(401, "missing_api_key", "Send your API key as 'Authorization: Bearer <key>'."),
      );
    }
    const presented = await sha256Hex(match[1]);
    const stored = await c.env.API_KEYS?.get(kvKeyFor(presented), "json");
    let record: KeyRecord | undefined;
    if (stored) {
      record = KeyRecord.parse(stored);
      if (record.revoked_at !== null) {
        return respondWithError(c, new ApiError(401, "revoked_api_key", "The API key has been revoked."));
      }
      if (record.expires_at !== null && record.expires_at * 1000 <= Date.now()) {
        return respondWithError(c, new ApiError(401, "expired_api_key", "The API key has expired."));
      }
    } else {
      const accepted = (c.env.API_KEY_HASHES ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h.length === 64);
      let ok = false;
      for (const hash of accepted) ok = constantTimeEqual(presented, hash) || ok;
      if (ok) record = bootstrapKey(presented);
    }
    if (!record)
      return respondWithError(c, new ApiError(401, "invalid_api_key", "The API key is not valid."));
    c.set("apiKey", record);
    await next();
  };

/** 403 unless the caller's key has `scope`. */
export const requireScope = (scope: Scope): MiddlewareHandler<EdgeEnv> =>
  async function requireScope(c, next) {
    if (!c.get("apiKey").scopes.includes(scope)) {
      return respondWithError(
        c,
        new ApiError(
          403,
          "insufficient_scope",
          `This API key may not use this endpoint (it needs the '${scope}' scope).`,
        ),
      );
    }
    await next();
  };
