/**
 * Native jobs and webhooks (jobs.ts runs them):
 *   POST   /v1/webhooks      `{url, events}` → 201 `{id, url, events, secret}`; the `whsec_…` secret
 *                            is shown once and signs every delivery (Standard Webhooks)
 *   GET    /v1/webhooks      this key's endpoints (without secrets)
 *   DELETE /v1/webhooks/:id
 *   POST   /v1/jobs          `{type: "completion" | "edit", request}` → 202 `{id, status}`
 *   GET    /v1/jobs/:id      status and, once finished, result or error
 * A job's `request` is the node's generation request (type completion) or edit request (type
 * edit), validated now, run later by the queue consumer through the same adapters; its `model`
 * (absent: the default, the first /v1/models lists) is checked now (404 for an unknown one) and
 * stored with the job.
 */
import { Hono } from "hono";
import { z } from "zod";
import { EditRequest, GenerateRequest } from "../../../../protocol/src/index.ts";
import type { EdgeEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { JOB_EVENTS, type JobRecord, jobKey, type WebhookRecord, webhookPrefix } from "../jobs.ts";
import { checkModel } from "../openai.ts";
import { jsonBody } from "../validate.ts";
import { refuseWebhookUrl } from "../webhook-url.ts";

const WebhookBody = z.object({
  url: z.string().max(2048),
  events: z
    .array(z.enum(JOB_EVENTS))
    .min(1)
    .max(JOB_EVENTS.length)
    .refine((events) => new Set(events).size === events.length, "events must not repeat")
    .default([...JOB_EVENTS]),
});

const JobBody = z.discriminatedUnion("type", [
  z.object({ type: z.literal("completion"), request: GenerateRequest }),
  z.object({ type: z.literal("edit"), request: EditRequest }),
]);

function storage(env: EdgeEnv["Bindings"]) {
  if (!env.JOBS || !env.JOBS_QUEUE)
    throw new ApiError(503, "jobs_unavailable", "Jobs are not configured on this edge.");
  return { kv: env.JOBS, queue: env.JOBS_QUEUE };
}

const base64url = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");

export const webhooks = new Hono<EdgeEnv>()
  .post("/", jsonBody(WebhookBody), async (c) => {
    const { kv } = storage(c.env);
    const { url, events } = c.req.valid("json");
    const refusal = refuseWebhookUrl(url, c.env.ALLOW_LOOPBACK_WEBHOOKS === "1");
    if (refusal) throw new ApiError(400, "invalid_webhook_url", `The webhook URL ${refusal}.`, "url");
    const hook: WebhookRecord = {
      id: `wh_${crypto.randomUUID().replaceAll("-", "")}`,
      // As the URL parser reads it (what fetch will call): tabs and line breaks removed, IPs normalised.
      url: new URL(url).href,
      events,
      secret: `whsec_${base64url(crypto.getRandomValues(new Uint8Array(24)))}`,
      created_at: Math.floor(Date.now() / 1000),
    };
    await kv.put(`${webhookPrefix(c.var.apiKey.id)}${hook.id}`, JSON.stringify(hook));
    return c.json(hook, 201);
  })
  .get("/", async (c) => {
    const { kv } = storage(c.env);
    const listed = await kv.list({ prefix: webhookPrefix(c.var.apiKey.id) });
    const hooks = await Promise.all(
      listed.keys.map(async ({ name }) => (await kv.get(name, "json")) as WebhookRecord),
    );
    return c.json({ object: "list", data: hooks.map(({ secret: _secret, ...shown }) => shown) });
  })
  .delete("/:id", async (c) => {
    const { kv } = storage(c.env);
    const name = `${webhookPrefix(c.var.apiKey.id)}${c.req.param("id")}`;
    if (!(await kv.get(name))) throw new ApiError(404, "webhook_not_found", "No such webhook endpoint.");
    await kv.delete(name);
    return c.body(null, 204);
  });

export const jobs = new Hono<EdgeEnv>()
  .post("/", jsonBody(JobBody), async (c) => {
    const { kv, queue } = storage(c.env);
    const body = c.req.valid("json");
    body.request.model = (await checkModel(c, body.request.model)).id;
    const job: JobRecord = {
      ...body,
      id: `job_${crypto.randomUUID().replaceAll("-", "")}`,
      key_id: c.var.apiKey.id,
      // The consumer books the job's tokens against the key when it has limits (jobs.ts).
      metered: Object.values(c.var.apiKey.limits).some((limit) => limit !== null),
      status: "queued",
      created_at: Date.now(),
    };
    await kv.put(jobKey(job.id), JSON.stringify(job));
    await queue.send({ kind: "run", job_id: job.id });
    return c.json({ id: job.id, object: "job", status: job.status }, 202);
  })
  .get("/:id", async (c) => {
    const { kv } = storage(c.env);
    const job = (await kv.get(jobKey(c.req.param("id")), "json")) as JobRecord | null;
    if (!job || job.key_id !== c.var.apiKey.id) throw new ApiError(404, "job_not_found", "No such job.");
    const { key_id: _key, metered: _metered, request: _request, ...shown } = job;
    return c.json({ object: "job", ...shown });
  });
