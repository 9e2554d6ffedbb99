import type { Context } from "hono";

/**
 * Keeps the worker alive for `work` after the response (executionCtx.waitUntil). Registered while
 * the request is alive: a client that leaves ends the request's context, and work started only
 * then would be cut off with it. Where there is no execution context (the app run in Node), the
 * work runs on its own.
 */
export function waitUntil(c: Context, work: Promise<unknown>): void {
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    void work.catch(() => {});
  }
}
