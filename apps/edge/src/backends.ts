/**
 * Which backend serves a request: a model router (adapters/src/router.ts) over the denoiser nodes
 * listed in `DENOISER_URL` (comma-separated) and the OpenAI-compatible upstreams in `UPSTREAMS`
 * (a JSON array of `{url, api_key, model?, weight?}`, a secret; without `model`, an upstream
 * serves every model its /v1/models lists). The router learns which models each member serves
 * (a node's /readyz) and keeps one pool per model: each request goes to its model's pool, which
 * picks the least loaded member serving it, retries another before the first block and fails
 * over mid-stream by resuming (on Sprout nodes: an upstream cannot resume and is skipped for
 * that). Nothing names the models here: they are what the members serve. One router per
 * configuration and isolate, so its catalog, circuits and load counts persist across the requests
 * an isolate serves.
 */
import { z } from "zod";
import {
  type Backend,
  DenoiserNodeBackend,
  ModelRouter,
  OpenAiCompatibleBackend,
  type PoolMember,
} from "../../../adapters/src/index.ts";
import type { Env } from "./env.ts";

const Upstreams = z.array(
  z.object({
    url: z.url(),
    api_key: z.string(),
    model: z.string().min(1).optional(),
    weight: z.number().positive().optional(),
  }),
);

const routers = new Map<string, ModelRouter>();

export function backendFor(env: Env): Backend {
  const urls = env.DENOISER_URL.split(",")
    .map((url) => url.trim())
    .filter((url) => url.length > 0);
  const key = JSON.stringify([urls, env.DENOISER_SECRET, env.UPSTREAMS ?? ""]);
  let router = routers.get(key);
  if (!router) {
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
    router = new ModelRouter({
      members,
      onFailure: (id, detail) => console.error(`edge: ${id} failed: ${detail}`),
    });
    routers.set(key, router);
  }
  return router;
}
