/**
 * Webhook abuse and delivery faults, run inside workerd against the real denoiser node and a
 * webhook receiver in Node that fails the ways real ones do (test/support/servers.ts).
 *
 * The queue is simulated here (a test double of the Queues runtime, with a simulated clock) so
 * that faults can be placed exactly: the consumer dying between running a job and queueing its
 * deliveries, and again after a receiver's 2xx but before the acknowledgement, while the
 * receiver is down for minutes. The real queue runs in test/e2e.test.ts.
 */
import type { MessageBatch, Queue } from "@cloudflare/workers-types";
import { Webhook } from "standardwebhooks";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { memoryKv } from "../../../test/support/memory-kv.ts";
import type { ReceivedDelivery } from "../../../test/support/servers.ts";
import { createEdgeApp } from "./app.ts";
import { sha256Hex } from "./auth.ts";
import { backendFor } from "./backends.ts";
import type { Env } from "./env.ts";
import worker from "./index.ts";
import { deliver, type JobRecord, jobKey, type QueueMessage, type WebhookRecord } from "./jobs.ts";

const KEY = "sk-webhook-tests";
const app = createEdgeApp({ backendFor });
let receiver: string;

async function receiverLog(prefix: string): Promise<ReceivedDelivery[]> {
  const log = (await (await fetch(`${receiver}/log`)).json()) as ReceivedDelivery[];
  return log.filter((d) => d.path.startsWith(prefix));
}

const hook = (url: string): WebhookRecord => ({
  id: "wh_test",
  url,
  events: ["job.completed", "job.failed"],
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  created_at: 0,
});

/** The Queues runtime, simulated: messages, attempts, delays on a simulated clock, and injected faults. */
class SimulatedQueue {
  private pending: { body: QueueMessage; attempts: number; dueAt: number; lostAcks: number }[] = [];
  clock = 0;
  /** Sends that fail: the consumer dies after running a job, before its deliveries are queued. */
  failSends = 0;
  /** Acknowledgements of deliveries lost: the consumer dies after the receiver's 2xx, before its ack. */
  loseDeliveryAcks = 0;

  readonly binding = {
    send: async (body: QueueMessage) => {
      if (this.failSends > 0) {
        this.failSends--;
        throw new Error("simulated: the consumer died before queueing the deliveries");
      }
      this.pending.push({ body, attempts: 1, dueAt: this.clock, lostAcks: 0 });
    },
  } as unknown as Queue<QueueMessage>;

  /** Runs the consumer until the queue is empty (or `maxRounds`), advancing the clock to each due message. */
  async drain(env: Env, maxRounds = 50): Promise<void> {
    for (let round = 0; round < maxRounds && this.pending.length > 0; round++) {
      this.clock = Math.max(this.clock, Math.min(...this.pending.map((m) => m.dueAt)));
      const due = this.pending.filter((m) => m.dueAt <= this.clock);
      this.pending = this.pending.filter((m) => m.dueAt > this.clock);
      const outcomes: ("ack" | number)[] = [];
      const batch = {
        queue: "sprout-jobs",
        messages: due.map((m, i) => ({
          id: String(i),
          timestamp: new Date(),
          body: m.body,
          attempts: m.attempts,
          ack: () => {
            outcomes[i] = "ack";
          },
          retry: (options?: { delaySeconds?: number }) => {
            outcomes[i] = options?.delaySeconds ?? 0;
          },
        })),
      } as unknown as MessageBatch<QueueMessage>;
      await worker.queue(batch, env);
      due.forEach((m, i) => {
        const outcome = outcomes[i];
        if (outcome === "ack" && m.body.kind === "deliver" && this.loseDeliveryAcks > 0 && m.lostAcks === 0) {
          this.loseDeliveryAcks--;
          this.pending.push({ ...m, attempts: m.attempts + 1, lostAcks: 1 }); // redelivered
        } else if (outcome !== "ack") {
          this.pending.push({ ...m, attempts: m.attempts + 1, dueAt: this.clock + (outcome ?? 0) });
        }
      });
    }
  }
}

beforeAll(() => {
  receiver = inject("receiverUrl");
});

/** The edge's bindings here: the real node, in-memory KV and the simulated queue; loopback receivers allowed. */
async function edgeEnv(queue = new SimulatedQueue(), jobs = memoryKv()): Promise<Env> {
  return {
    DENOISER_URL: inject("nodeUrl"),
    DENOISER_SECRET: inject("nodeSecret"),
    API_KEY_HASHES: await sha256Hex(KEY),
    JOBS: jobs,
    JOBS_QUEUE: queue.binding,
    ALLOW_LOOPBACK_WEBHOOKS: "1",
  };
}

/** A call to the edge with the test key: GET, or POST of `body` as JSON. */
const api = (env: Env, path: string, body?: unknown) =>
  app.request(
    path,
    {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    },
    env,
  );

describe("webhook deliveries", () => {
  it("does not follow a redirect (a receiver could point the edge anywhere)", async () => {
    const outcome = await deliver(hook(`${receiver}/redirect/r1`), "msg_r1", "{}", 1);
    expect(outcome).not.toBe("ok");
    expect(await receiverLog("/redirect/r1")).toHaveLength(1);
    expect(await receiverLog("/hook/r1-redirected")).toHaveLength(0);
  });

  it("gives up on a receiver that never answers within its timeout, to retry later", async () => {
    const started = Date.now();
    const outcome = await deliver(hook(`${receiver}/slow/s1`), "msg_s1", "{}", 1, 300);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(outcome).toMatchObject({ retryAfterSeconds: expect.any(Number) });
  });

  it("sends only its own headers: line breaks in a webhook URL cannot add one", async () => {
    const response = await api(await edgeEnv(), "/v1/webhooks", {
      url: `${receiver}/hook/inj\r\nX-Injected: 1\r\n\r\nbody`,
    });
    expect(response.status).toBe(201);
    const stored = (await response.json()) as WebhookRecord;
    expect(stored.url).not.toMatch(/[\r\n]/);
    expect(await deliver(stored, "msg_inj", '{"ok":true}', 1)).toBe("ok");
    const [received] = await receiverLog("/hook/injX-Injected");
    expect(received?.headers).not.toHaveProperty("x-injected");
    expect(received?.body).toBe('{"ok":true}');
  });

  it.each([
    ["a URL over 2,048 characters", { url: `https://hooks.example.com/${"a".repeat(2100)}` }],
    ["an unknown event", { url: "https://hooks.example.com/", events: ["job.*"] }],
    ["10,000 events", { url: "https://hooks.example.com/", events: Array(10_000).fill("job.completed") }],
  ])("refuses %s with a 400", async (_, body) => {
    const response = await api(await edgeEnv(), "/v1/webhooks", body);
    expect(response.status).toBe(400);
  });
});

describe("jobs through a dying consumer and a receiver down for minutes", () => {
  it("delivers each job, under one webhook-id each, after recovery; nothing is run twice", async () => {
    const queue = new SimulatedQueue();
    const jobs = memoryKv();
    const env = await edgeEnv(queue, jobs);
    // Each delivery's first 6 attempts get 503: with backoff that is minutes of downtime.
    const registered = (await (
      await api(env, "/v1/webhooks", { url: `${receiver}/hook/down?down=6` })
    ).json()) as WebhookRecord;
    const ids: string[] = [];
    for (const prompt of ["def add(a, b):\n", "class Stack:\n", "import os\n"]) {
      const accepted = await api(env, "/v1/jobs", { type: "completion", request: { prompt, max_tokens: 4 } });
      expect(accepted.status).toBe(202);
      ids.push(((await accepted.json()) as { id: string }).id);
    }

    queue.failSends = 1; // the first job's consumer dies after storing its result
    await queue.drain(env, 1);
    const firstRun = (await jobs.get(jobKey(ids[0] as string), "json")) as JobRecord;
    expect(firstRun.status).toBe("completed");
    queue.loseDeliveryAcks = 2; // and two consumers die after a receiver's 2xx, before the ack
    await queue.drain(env);

    for (const id of ids) {
      const job = (await (await api(env, `/v1/jobs/${id}`)).json()) as JobRecord & {
        result: { text: string };
      };
      expect(job.status).toBe("completed");
      expect(typeof job.result.text).toBe("string");
    }
    // Redelivering the first job's run message did not run it again.
    expect(((await jobs.get(jobKey(ids[0] as string), "json")) as JobRecord).finished_at).toBe(
      firstRun.finished_at,
    );

    const log = await receiverLog("/hook/down");
    const byId = new Map<string, ReceivedDelivery[]>();
    for (const d of log)
      byId.set(d.headers["webhook-id"] as string, [
        ...(byId.get(d.headers["webhook-id"] as string) ?? []),
        d,
      ]);
    expect(byId.size).toBe(3); // one webhook-id per job, the same on every retry
    const delivered = new Set<string>();
    for (const [, attempts] of byId) {
      expect(attempts.slice(0, 6).map((a) => a.status)).toEqual(Array(6).fill(503));
      const ok = attempts.filter((a) => a.status === 204);
      expect(ok.length).toBeGreaterThanOrEqual(1); // 2 where the ack was lost: the receiver dedups by id
      for (const attempt of ok) {
        const event = new Webhook(registered.secret).verify(attempt.body, attempt.headers) as {
          data: { id: string };
        };
        delivered.add(event.data.id);
      }
    }
    expect([...delivered].sort()).toEqual([...ids].sort());
    expect(log.filter((d) => d.status === 204).length).toBe(3 + 2);
    expect(queue.clock).toBeGreaterThan(5 * 60); // simulated seconds the receiver was down, in all
  });
});
