/**
 * The backend middleware: gives each request the backend it may use, `c.var.backend`, metered
 * against the caller's key (metered.ts). Which backend serves is the app's choice
 * (`createEdgeApp({ backendFor })`: the pool of backends.ts in the worker, a test double in tests).
 */
import type { MiddlewareHandler } from "hono";
import type { Backend } from "../../../adapters/src/index.ts";
import type { EdgeEnv, Env } from "./env.ts";
import { metered } from "./metered.ts";

export interface BackendOptions {
  /** The backend that serves requests under these bindings. */
  backendFor: (env: Env) => Backend;
}

export interface BackendVariables {
  /** The backend this request uses, metered (set by `injectBackend`). */
  backend: Backend;
}

export const injectBackend = ({ backendFor }: BackendOptions): MiddlewareHandler<EdgeEnv> =>
  async function injectBackend(c, next) {
    c.set("backend", metered(backendFor(c.env), c.var.meter));
    await next();
  };
