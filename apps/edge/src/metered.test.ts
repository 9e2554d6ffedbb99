/**
 * The metering decorator (metered.ts) over a test double of a backend: what each call books, and
 * that a stream's hold ends however its iteration ends. And the queue consumer's jobs, booked
 * against their key's real limiter (a Durable Object, inside workerd).
 */
/// <reference types="@cloudflare/vitest-pool-workers/types" />
import { env as bindings } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { BackendError } from "../../../adapters/src/index.ts";
import { FakeBackend } from "../../../test/support/fake-backend.ts";
import { memoryKv } from "../../../test/support/memory-kv.ts";
import type { Env } from "./env.ts";
import { type JobRecord, jobKey, runJob } from "./jobs.ts";
import { type LimiterNamespace, limiterClient } from "./limiter.ts";
import type { Meter } from "./meter.ts";
import { metered } from "./metered.ts";

/** A meter that remembers: tokens booked, holds open. */
function recordingMeter() {
  const meter = {
    booked: 0,
    open: 0,
    book(tokens: number) {
      meter.booked += tokens;
    },
    hold() {
      meter.open++;
      let ended = false;
      return () => {
        if (!ended) meter.open--;
        ended = true;
      };
    },
  } satisfies Meter & { booked: number; open: number };
  return meter;
}

const request = { prompt: "abc", max_tokens: 8, block_size: 4 };

describe("metered", () => {
  it("books a stream's usage and ends its hold when the stream ends", async () => {
    const meter = recordingMeter();
    const events = await metered(new FakeBackend(), meter).doStream(request);
    expect(meter.open).toBe(1);
    for await (const _ of events) {
    }
    expect(meter).toMatchObject({ booked: 3 + 8, open: 0 });
  });

  it("books what got through and ends the hold when the reader stops early or the stream throws", async () => {
    const early = recordingMeter();
    for await (const event of await metered(new FakeBackend(), early).doStream(request)) {
      if (event.type === "block") break; // the prompt and one block of 4 tokens got through
    }
    expect(early).toMatchObject({ booked: 3 + 4, open: 0 });

    const broken = recordingMeter();
    const failing = new FakeBackend();
    failing.doStream = async () =>
      (async function* () {
        yield { type: "start", model: "m", prompt_tokens: 3, block_size: 4 } as const;
        throw new TypeError("connection reset");
      })();
    const events = await metered(failing, broken).doStream(request);
    await expect(
      (async () => {
        for await (const _ of events) {
        }
      })(),
    ).rejects.toThrow(/reset/);
    expect(broken).toMatchObject({ booked: 3, open: 0 });
  });

  it("ends the hold when the stream cannot start", async () => {
    const meter = recordingMeter();
    const down = new FakeBackend({ failWith: new BackendError("backend_unavailable", "down", 503) });
    await expect(metered(down, meter).doStream(request)).rejects.toThrow(/down/);
    expect(meter).toMatchObject({ booked: 0, open: 0 });
  });

  it("books the tokens a verification scored and an edit read and wrote", async () => {
    const meter = recordingMeter();
    const backend = metered(new FakeBackend(), meter);
    await backend.verify?.({ code: "x = 1\n", language: "python" });
    expect(meter).toMatchObject({ booked: 6, open: 0 });
    await backend.edit?.({ code: "y = 22\n" });
    expect(meter).toMatchObject({ booked: 6 + 7, open: 0 });
  });
});

describe("the queue consumer", () => {
  it("books a job's tokens against its key when it runs the job", async () => {
    const KEY_LIMITER = (bindings as { KEY_LIMITER: LimiterNamespace }).KEY_LIMITER;
    const keyId = `job-key-${crypto.randomUUID()}`;
    const jobs = memoryKv();
    const job: JobRecord = {
      id: "job_1",
      key_id: keyId,
      metered: true,
      type: "completion",
      status: "queued",
      request: { prompt: "def f(x):\n", max_tokens: 16 },
      created_at: 0,
    };
    await jobs.put(jobKey(job.id), JSON.stringify(job));
    const env: Env = {
      DENOISER_URL: "",
      DENOISER_SECRET: "",
      API_KEY_HASHES: "",
      JOBS: jobs,
      KEY_LIMITER,
    };
    await runJob(env, new FakeBackend(), job.id);
    expect(await jobs.get(jobKey(job.id), "json")).toMatchObject({ status: "completed" });
    const limiter = limiterClient(KEY_LIMITER, keyId);
    const limits = { requests_per_minute: null, concurrency: null };
    // 10 prompt + 16 completion tokens booked: a limit of 26 is spent, one of 27 is not.
    expect(await limiter.acquire({ ...limits, tokens_per_minute: 26 })).toMatchObject({ ok: false });
    expect(await limiter.acquire({ ...limits, tokens_per_minute: 27 })).toMatchObject({ ok: true });
  });
});
