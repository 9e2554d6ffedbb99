/**
 * The edge worker's entry point (wrangler.toml `main`): the API, the queue consumer that runs
 * jobs and delivers webhooks, and the per-key limiter's Durable Object class. Both the API and
 * the consumer are served by the pool of backends.ts.
 */
import { createEdgeApp } from "./app.ts";
import { backendFor } from "./backends.ts";
import { queueConsumer } from "./queue.ts";

export { KeyLimiter } from "./limiter.ts";

export default {
  fetch: createEdgeApp({ backendFor }).fetch,
  queue: queueConsumer({ backendFor }),
};
