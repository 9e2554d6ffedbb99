/**
 * Jobs and webhooks: records in KV (`JOBS`), work on a Queue (`JOBS_QUEUE`).
 *
 * - `job:<id>`: `{id, key_id, metered, type, status, request, result?, error?, created_at, finished_at?}`.
 * - `webhook:<key id>:<id>`: `{id, url, events, secret, created_at}` (the secret signs deliveries).
 * - Queue messages: `{kind: "run", job_id}` runs a job through the same adapters as live requests;
 *   its end sends one `{kind: "deliver", ...}` per subscribed endpoint. What a job consumed is booked
 *   against its key (metered.ts), as a live request's is. A delivery is signed per
 *   the Standard Webhooks spec (the `standardwebhooks` library): `webhook-id` (the same on every
 *   retry), `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`. A 2xx acknowledges it;
 *   anything else, a network error or a timeout retries it with exponential backoff and jitter,
 *   honouring Retry-After; redirects are not followed. After the queue's `max_retries` the
 *   message goes to the dead-letter queue (wrangler.toml): nothing is dropped silently.
 */
import { Webhook } from "standardwebhooks";
import type { Backend } from "../../../adapters/src/index.ts";
import type { EditRequest, GenerateRequest } from "../../../protocol/src/index.ts";
import { completeText } from "./complete-text.ts";
import type { Env } from "./env.ts";
import { limiterClient } from "./limiter.ts";
import { KeyMeter } from "./meter.ts";
import { metered } from "./metered.ts";

export const JOB_EVENTS = ["job.completed", "job.failed"] as const;

export type JobRecord = {
  id: string;
  key_id: string;
  /** Whether the key had limits when the job was posted: then the job's tokens are booked against it. */
  metered?: boolean;
  status: "queued" | "running" | "completed" | "failed";
  result?: unknown;
  error?: { code: string; message: string };
  created_at: number;
  finished_at?: number;
} & ({ type: "completion"; request: GenerateRequest } | { type: "edit"; request: EditRequest });

export interface WebhookRecord {
  id: string;
  url: string;
  events: (typeof JOB_EVENTS)[number][];
  secret: string;
  created_at: number;
}

export type QueueMessage =
  | { kind: "run"; job_id: string }
  | { kind: "deliver"; webhook_key: string; message_id: string; payload: string };

export const jobKey = (id: string) => `job:${id}`;
export const webhookPrefix = (keyId: string) => `webhook:${keyId}:`;

/**
 * Runs a queued job to its end (unless a previous delivery of this message already did) and
 * returns the deliveries it owes. A redelivered message recomputes the same deliveries, with the
 * same webhook-ids, so a crash between storing the result and queueing them loses nothing; a
 * receiver may see a message twice and recognises it by its webhook-id.
 */
export async function runJob(env: Env, backend: Backend, jobId: string): Promise<QueueMessage[]> {
  const kv = env.JOBS as NonNullable<Env["JOBS"]>;
  const job = (await kv.get(jobKey(jobId), "json")) as JobRecord | null;
  if (!job) return [];
  let finished = job;
  if (job.status !== "completed" && job.status !== "failed") {
    await kv.put(jobKey(jobId), JSON.stringify({ ...job, status: "running" }));
    const meter = jobMeter(env, job);
    const work = meter.hold();
    try {
      const result = await runWork(metered(backend, meter), job);
      finished = { ...job, status: "completed", result, finished_at: Date.now() };
    } catch (error) {
      const message = error instanceof Error ? error.message : "the job failed";
      const code = (error as { code?: string }).code ?? "job_failed";
      finished = { ...job, status: "failed", error: { code, message }, finished_at: Date.now() };
    } finally {
      work();
    }
    await kv.put(jobKey(jobId), JSON.stringify(finished));
    await meter.settled;
  }
  const type = finished.status === "completed" ? "job.completed" : "job.failed";
  const payload = JSON.stringify({
    type,
    timestamp: new Date(finished.finished_at ?? Date.now()).toISOString(),
    data: {
      id: job.id,
      status: finished.status,
      ...(finished.result ? { result: finished.result } : { error: finished.error }),
    },
  });
  const hooks = await kv.list({ prefix: webhookPrefix(job.key_id) });
  const messages: QueueMessage[] = [];
  for (const { name } of hooks.keys) {
    const hook = (await kv.get(name, "json")) as WebhookRecord | null;
    if (hook?.events.includes(type)) {
      messages.push({ kind: "deliver", webhook_key: name, message_id: `msg_${job.id}_${hook.id}`, payload });
    }
  }
  return messages;
}

/** A job's account with its key's limiter: it books tokens (no lease: the job was admitted when posted). */
function jobMeter(env: Env, job: JobRecord): KeyMeter {
  const limiter = job.metered && env.KEY_LIMITER ? limiterClient(env.KEY_LIMITER, job.key_id) : undefined;
  return new KeyMeter(async (tokens) => {
    await limiter?.book(tokens);
  });
}

async function runWork(backend: Backend, job: JobRecord) {
  if (job.type === "completion") return completeText(backend, job.request);
  if (!backend.edit) throw new Error("no backend can edit");
  return backend.edit(job.request);
}

/** How long a receiver may take to answer a delivery before it counts as failed (and is retried). */
export const DELIVERY_TIMEOUT_MS = 15_000;

/**
 * One delivery attempt: 2xx is done ("ok"); otherwise how many seconds to wait before the next
 * try (exponential in the attempt, with jitter; at least what Retry-After asks).
 */
export async function deliver(
  hook: WebhookRecord,
  messageId: string,
  payload: string,
  attempt: number,
  timeoutMs = DELIVERY_TIMEOUT_MS,
): Promise<"ok" | { retryAfterSeconds: number }> {
  const timestamp = new Date();
  const signature = new Webhook(hook.secret).sign(messageId, timestamp, payload);
  let retryAfter = 0;
  try {
    const response = await fetch(hook.url, {
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        "content-type": "application/json",
        "user-agent": "sprout-webhooks/1",
        "webhook-id": messageId,
        "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
        "webhook-signature": signature,
      },
      body: payload,
    });
    await response.body?.cancel();
    if (response.status >= 200 && response.status < 300) return "ok";
    retryAfter = Number(response.headers.get("retry-after")) || 0;
  } catch {
    // unreachable, reset or timed out: retried like a failure status
  }
  const backoff = Math.min(3600, 2 ** attempt * 5);
  return { retryAfterSeconds: Math.ceil(Math.max(retryAfter, backoff * (0.5 + Math.random() / 2))) };
}
