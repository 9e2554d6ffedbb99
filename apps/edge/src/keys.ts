/**
 * API keys kept in KV (`API_KEYS`), as records under `key:<sha256 of the key>`: the key itself is
 * never stored, only its digest. A key's id is the first 16 hex characters of that digest, so
 * `npm run keys -- revoke <id>` finds the record by prefix without an index. A record carries
 * scopes, an optional expiry, a revocation time and per-key limits (enforced by the rate
 * limiter). Keys look like `sk-sprout-` followed by 43 base64url characters (256 random bits).
 */
import { z } from "zod";

/** What a key may do: OpenAI-style completions (and chat), native generation and edits, verification, jobs and webhooks. */
export const SCOPES = ["completions", "generate", "verify", "jobs"] as const;
export type Scope = (typeof SCOPES)[number];

export const KeyRecord = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(z.enum(SCOPES)),
  created_at: z.number().int(),
  /** Unix seconds after which the key is refused; null: never. */
  expires_at: z.number().int().nullable(),
  revoked_at: z.number().int().nullable(),
  limits: z.object({
    requests_per_minute: z.number().int().positive().nullable(),
    tokens_per_minute: z.number().int().positive().nullable(),
    concurrency: z.number().int().positive().nullable(),
  }),
});
export type KeyRecord = z.infer<typeof KeyRecord>;

export const KEY_PREFIX = "sk-sprout-";
export const kvKeyFor = (digest: string) => `key:${digest}`;
export const keyIdFor = (digest: string) => digest.slice(0, 16);
