/**
 * The queue consumer: runs each job on the backend it is given (metered against the job's key,
 * jobs.ts) and queues its deliveries, then delivers each webhook, retrying with backoff.
 */
import type { MessageBatch } from "@cloudflare/workers-types";
import type { Env } from "./env.ts";
import type { BackendOptions } from "./inject-backend.ts";
import { deliver, type QueueMessage, runJob, type WebhookRecord } from "./jobs.ts";

export const queueConsumer = ({ backendFor }: BackendOptions) =>
  async function queue(batch: MessageBatch<QueueMessage>, env: Env): Promise<void> {
    for (const message of batch.messages) {
      const body = message.body;
      try {
        if (body.kind === "run") {
          const deliveries = await runJob(env, backendFor(env), body.job_id);
          for (const delivery of deliveries) await env.JOBS_QUEUE?.send(delivery);
          message.ack();
          continue;
        }
        const hook = (await env.JOBS?.get(body.webhook_key, "json")) as WebhookRecord | null;
        if (!hook) {
          message.ack(); // the endpoint was deleted
          continue;
        }
        const outcome = await deliver(hook, body.message_id, body.payload, message.attempts);
        if (outcome === "ok") message.ack();
        else message.retry({ delaySeconds: outcome.retryAfterSeconds });
      } catch (error) {
        console.error(
          `edge: queue message failed: ${error instanceof Error ? error.message : String(error)}`,
        );
        message.retry({ delaySeconds: Math.min(300, 2 ** message.attempts) });
      }
    }
  };
