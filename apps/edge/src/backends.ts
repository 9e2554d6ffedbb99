/** Which backend serves a request. One denoiser node for now; a routing pool comes with issue 5. */
import { type Backend, DenoiserNodeBackend } from "../../../adapters/src/index.ts";
import type { Env } from "./env.ts";

export function backendFor(env: Env): Backend {
  return new DenoiserNodeBackend({ url: env.DENOISER_URL, secret: env.DENOISER_SECRET });
}
