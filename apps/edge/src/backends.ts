/**
 * Which backend serves a request: a pool (adapters/src/pool.ts) of the denoiser nodes listed in
 * `DENOISER_URL` (comma-separated) and of the OpenAI-compatible upstreams in `UPSTREAMS` (a JSON
 * array of `{url, api_key, model, weight?}`, a secret). The pool picks the least loaded, retries
 * another before the first block and fails over mid-stream by resuming (on Sprout nodes: an
 * upstream cannot resume and is skipped for that). One pool per configuration and isolate, so
 * its circuits and load counts persist across the requests an isolate serves.
 */
import { z } from "zod";
import {
  type Backend,
  BackendPool,
  DenoiserNodeBackend,
  OpenAiCompatibleBackend,
  type PoolMember,
} from "../../../adapters/src/index.ts";
import type { Env } from "./env.ts";

const Upstreams = z.array(
  z.object({
    url: z.url(),
    api_key: z.string(),
    model: z.string(),
    weight: z.number().positive().optional(),
  }),
);

const pools = new Map<string, BackendPool>();

export function backendFor(env: Env): Backend {
  const urls = env.DENOISER_URL.split(",")
    .map((url) => url.trim())
    .filter((url) => url.length > 0);
  const key = JSON.stringify([urls, env.DENOISER_SECRET, env.UPSTREAMS ?? ""]);
  let pool = pools.get(key);
  if (!pool) {
    const members: PoolMember[] = urls.map((url) => ({
      backend: new DenoiserNodeBackend({ url, secret: env.DENOISER_SECRET }),
    }));
    for (const upstream of Upstreams.parse(JSON.parse(env.UPSTREAMS || "[]"))) {
      members.push({
        backend: new OpenAiCompatibleBackend({
          url: upstream.url,
          apiKey: upstream.api_key,
          model: upstream.model,
        }),
        weight: upstream.weight,
      });
    }
    pool = new BackendPool({
      members,
      onFailure: (id, detail) => console.error(`edge: ${id} failed: ${detail}`),
    });
    pools.set(key, pool);
  }
  return pool;
}
