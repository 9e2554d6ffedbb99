/**
 * Which backend serves a request: a pool (adapters/src/pool.ts) of the denoiser nodes listed in
 * `DENOISER_URL` (comma-separated), which picks the least loaded, retries another before the
 * first block and fails over mid-stream by resuming. One pool per configuration and isolate, so
 * its circuits and load counts persist across the requests an isolate serves.
 */
import { type Backend, BackendPool, DenoiserNodeBackend } from "../../../adapters/src/index.ts";
import type { Env } from "./env.ts";

const pools = new Map<string, BackendPool>();

export function backendFor(env: Env): Backend {
  const urls = env.DENOISER_URL.split(",")
    .map((url) => url.trim())
    .filter((url) => url.length > 0);
  const key = JSON.stringify([urls, env.DENOISER_SECRET]);
  let pool = pools.get(key);
  if (!pool) {
    pool = new BackendPool({
      members: urls.map((url) => ({
        backend: new DenoiserNodeBackend({ url, secret: env.DENOISER_SECRET }),
      })),
      onFailure: (id, detail) => console.error(`edge: ${id} failed: ${detail}`),
    });
    pools.set(key, pool);
  }
  return pool;
}
