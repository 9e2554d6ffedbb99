/**
 * The whole system as `npm start` runs it: the real denoiser node with the shipped model, the
 * edge in workerd (wrangler dev), and the official `openai` client talking to it.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer as createHttpServer } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import OpenAI from "openai";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OpenAiCompatibleBackend } from "../adapters/src/index.ts";
import { runLoad } from "./support/load.ts";
import { freePort, type Started, startSprout, whenReady } from "./support/sprout.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const API_KEY = "sk-e2e-test-key";
const run = promisify(execFile);

const startWith = (edgePort: number, nodePort: number) =>
  startSprout({
    SPROUT_API_KEY: API_KEY,
    SPROUT_EDGE_PORT: String(edgePort),
    SPROUT_NODE_PORT: String(nodePort),
  });

describe("npm start, end to end through workerd", () => {
  let sprout: Started;
  let edge: string;
  let edgePort: number;
  let nodePort: number;

  beforeAll(async () => {
    edgePort = await freePort();
    nodePort = await freePort();
    edge = `http://127.0.0.1:${edgePort}`;
    sprout = startWith(edgePort, nodePort);
    await whenReady(sprout);
  });

  afterAll(async () => {
    if (sprout?.child.exitCode === null) {
      sprout.child.kill("SIGINT");
      await sprout.exited;
    }
  });

  it("serves concurrent streams for a bounded time without an error, its memory flat (load, CI form)", async () => {
    // The full load benchmark (more streams, longer, batching on and off) is bench/load.ts. The
    // local Workers runtime grows by ~100 MB as it warms up, then slowly (docs/RELIABILITY.md):
    // warm up first, so that the bound below catches a leak, not the warm-up.
    await runLoad({ url: edge, key: API_KEY, streams: 6, seconds: 3 });
    const result = await runLoad({
      url: edge,
      key: API_KEY,
      streams: 6,
      seconds: 8,
      rootPid: sprout.child.pid,
    });
    expect(result.errors).toEqual({});
    expect(result.completed).toBe(result.requests);
    expect(result.completed).toBeGreaterThanOrEqual(6);
    expect(result.first_block_ms.p99).toBeLessThan(result.stream_ms.p99);
    expect(result.memory_mb.end - result.memory_mb.start).toBeLessThan(100);
  }, 60_000);

  it("never prints the key it was given", () => {
    expect(sprout.output()).not.toContain(API_KEY);
  });

  it("streams a completion to the official openai client, with a usage chunk", async () => {
    const client = new OpenAI({ apiKey: API_KEY, baseURL: `${edge}/v1` });
    const stream = await client.completions.create({
      model: "sprout-tiny",
      prompt: "def fibonacci(n):\n",
      max_tokens: 24,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const usage = chunks.at(-1)?.usage as (OpenAI.CompletionUsage & { forward_passes?: number }) | undefined;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    expect(usage?.forward_passes).toBeGreaterThan(0);
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(finish?.choices[0]?.finish_reason).toMatch(/^(stop|length)$/);
    // Greedy decoding: the same request unstreamed gives the same text.
    const whole = await client.completions.create({
      model: "sprout-tiny",
      prompt: "def fibonacci(n):\n",
      max_tokens: 24,
    });
    expect(whole.object).toBe("text_completion");
    expect(chunks.map((c) => c.choices[0]?.text ?? "").join("")).toBe(whole.choices[0]?.text);
  });

  it("chats with the official openai client, streamed", async () => {
    const client = new OpenAI({ apiKey: API_KEY, baseURL: `${edge}/v1` });
    const stream = await client.chat.completions.create({
      model: "sprout-tiny",
      messages: [{ role: "user", content: "Return the n-th Fibonacci number." }],
      max_tokens: 16,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it("manages keys in KV: scopes, revocation and expiry take effect at once", async () => {
    // Asynchronously: a blocked event loop would miss the server closing idle connections.
    const keys = async (...args: string[]) =>
      (await run(process.execPath, ["--import", "tsx", "scripts/keys.ts", ...args], { cwd: root })).stdout;
    const created = await keys("create", "--name", "e2e", "--scopes", "verify");
    const key = /sk-sprout-[\w-]{43}/.exec(created)?.[0] as string;
    const id = /created key ([0-9a-f]{16})/.exec(created)?.[1] as string;
    expect(key).toBeDefined();
    const call = (path: string, body: object, bearer = key) =>
      fetch(`${edge}/v1/${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "sprout-tiny", ...body }),
      });
    expect((await call("verify", { code: "x = 1\n" })).status).toBe(200);
    const forbidden = await call("completions", { prompt: "x", max_tokens: 1 });
    expect(forbidden.status).toBe(403);
    expect(await forbidden.json()).toMatchObject({ error: { code: "insufficient_scope" } });
    expect(await keys("list")).toContain(id);
    await keys("revoke", id);
    const revoked = await call("verify", { code: "x = 1\n" });
    expect(revoked.status).toBe(401);
    expect(JSON.stringify(await revoked.json())).not.toContain(key);
    // An expired record, written as the CLI writes records, with an expiry in the past.
    const expiredKey = `sk-sprout-${"e".repeat(43)}`;
    const digest = createHash("sha256").update(expiredKey).digest("hex");
    const record = {
      id: digest.slice(0, 16),
      name: "old",
      scopes: ["verify"],
      created_at: 0,
      expires_at: 1,
      revoked_at: null,
      limits: { requests_per_minute: null, tokens_per_minute: null, concurrency: null },
    };
    const wrangler = join(root, "node_modules/.bin/wrangler");
    await run(
      wrangler,
      [
        "kv",
        "key",
        "put",
        `key:${digest}`,
        JSON.stringify(record),
        "--metadata",
        JSON.stringify(record),
      ].concat(["--binding", "API_KEYS", "--local"]),
      {
        cwd: root,
      },
    );
    const expired = await call("verify", { code: "x" }, expiredKey);
    expect(expired.status).toBe(401);
    expect(await expired.json()).toMatchObject({ error: { code: "expired_api_key" } });
  }, 60_000);

  it("limits a key's requests and streams per minute with 429 and Retry-After", async () => {
    const keys = async (...args: string[]) =>
      (await run(process.execPath, ["--import", "tsx", "scripts/keys.ts", ...args], { cwd: root })).stdout;
    const key = (text: string) => /sk-sprout-[\w-]{43}/.exec(text)?.[0] as string;
    const call = (bearer: string, body: object) =>
      fetch(`${edge}/v1/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "sprout-tiny", prompt: "x", max_tokens: 2, ...body }),
      });
    const perMinute = key(await keys("create", "--name", "rpm", "--rpm", "2"));
    expect((await call(perMinute, {})).status).toBe(200);
    expect((await call(perMinute, {})).status).toBe(200);
    const refused = await call(perMinute, {});
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toMatchObject({ error: { code: "rate_limited", type: "rate_limit_error" } });

    const oneAtATime = key(await keys("create", "--name", "concurrency", "--concurrency", "1"));
    const long = await call(oneAtATime, { max_tokens: 200, threshold: 1, block_size: 4, stream: true });
    const reader = long.body?.getReader();
    await reader?.read(); // streaming: it holds the key's one slot
    expect((await call(oneAtATime, {})).status).toBe(429);
    await reader?.cancel();
    await expect.poll(async () => (await call(oneAtATime, {})).status, { timeout: 10_000 }).toBe(200);

    const tokens = key(await keys("create", "--name", "tpm", "--tpm", "5"));
    expect((await call(tokens, { max_tokens: 8 })).status).toBe(200); // books ≥ 8 tokens
    expect((await call(tokens, {})).status).toBe(429);
  }, 60_000);

  it("runs a job on the queue and delivers a signed webhook, retrying a receiver that fails", async () => {
    const received: { headers: Record<string, string>; body: string; status: number }[] = [];
    const receiver = createHttpServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => {
        body += chunk;
      });
      request.on("end", () => {
        // The first delivery is refused with Retry-After: the queue must try again, same id.
        const status = received.length === 0 ? 503 : 204;
        received.push({ headers: request.headers as Record<string, string>, body, status });
        response.writeHead(status, status === 503 ? { "retry-after": "1" } : {}).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
    const api = (path: string, body?: object) =>
      fetch(`${edge}/v1/${path}`, {
        method: body ? "POST" : "GET",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: body ? JSON.stringify(body) : undefined,
      });
    try {
      for (const url of [
        "https://169.254.169.254/latest",
        "https://[::ffff:10.0.0.1]/",
        "http://example.com/hook",
        "https://2852039166/", // 169.254.169.254 spelled as one decimal number
      ]) {
        const refused = await api("webhooks", { url });
        expect(refused.status, url).toBe(400);
      }
      const registered = await api("webhooks", { url: receiverUrl, events: ["job.completed"] });
      expect(registered.status).toBe(201);
      const { secret } = (await registered.json()) as { secret: string };
      expect(secret).toMatch(/^whsec_/);

      const accepted = await api("jobs", {
        type: "completion",
        request: { prompt: "def f(x):\n", max_tokens: 8 },
      });
      expect(accepted.status).toBe(202);
      const { id } = (await accepted.json()) as { id: string };
      await expect
        .poll(() => received.filter((r) => r.status === 204).length, { timeout: 45_000, interval: 250 })
        .toBe(1);
      expect(received[0]?.headers["webhook-id"]).toBe(received[1]?.headers["webhook-id"]);
      const delivered = received[1] as { headers: Record<string, string>; body: string };
      const event = new Webhook(secret).verify(delivered.body, delivered.headers) as {
        type: string;
        data: { id: string; status: string; result: { text: string } };
      };
      expect(event).toMatchObject({ type: "job.completed", data: { id, status: "completed" } });
      const job = (await (await api(`jobs/${id}`)).json()) as { status: string; result: { text: string } };
      expect(job).toMatchObject({ status: "completed", result: { text: event.data.result.text } });
    } finally {
      receiver.close();
    }
  }, 90_000);

  it("reaches an OpenAI-compatible upstream through its adapter (this edge, as a real server)", async () => {
    const upstream = (apiKey: string) =>
      new OpenAiCompatibleBackend({ url: `${edge}/v1`, apiKey, model: "sprout-tiny" });
    const events = [];
    for await (const event of await upstream(API_KEY).doStream({
      prompt: "def fibonacci(n):\n",
      max_tokens: 24,
    })) {
      events.push(event);
    }
    expect(events[0]).toMatchObject({ type: "start", model: "sprout-tiny" });
    const done = events.at(-1);
    expect(done).toMatchObject({ type: "done", usage: { completion_tokens: expect.any(Number) } });
    const client = new OpenAI({ apiKey: API_KEY, baseURL: `${edge}/v1` });
    const whole = await client.completions.create({
      model: "sprout-tiny",
      prompt: "def fibonacci(n):\n",
      max_tokens: 24,
    });
    expect(events.map((e) => (e.type === "block" ? e.text : "")).join("")).toBe(whole.choices[0]?.text);
    await expect(upstream("sk-wrong").doStream({ prompt: "x", max_tokens: 1 })).rejects.toMatchObject({
      code: "backend_auth",
    });
    await expect(upstream(API_KEY).doStream({ prompt: "x", max_tokens: 4000 })).rejects.toMatchObject({
      code: "invalid_request",
    });
  });

  it("verifies code once, then answers from the verification cache", async () => {
    // Unique code: wrangler dev keeps its KV state in .wrangler/ between runs.
    const code = `def add_${Date.now()}(a, b):\n    return a + b\n`;
    const verify = () =>
      fetch(`${edge}/v1/verify`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "sprout-tiny", code }),
      });
    const first = await verify();
    expect(first.status).toBe(200);
    expect(first.headers.get("x-sprout-cache")).toBe("miss");
    const computed = (await first.json()) as { cached: boolean; score: number; syntax: { ok: boolean } };
    expect(computed).toMatchObject({ cached: false, syntax: { ok: true } });
    const second = await verify();
    expect(second.headers.get("x-sprout-cache")).toMatch(/^hit-(edge|kv)$/);
    expect(await second.json()).toEqual({ ...computed, cached: true });
  });

  it("sends only data: lines ending with [DONE] on the wire", async () => {
    const response = await fetch(`${edge}/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "sprout-tiny", prompt: "import ", max_tokens: 8, stream: true }),
    });
    const lines = (await response.text()).split("\n").filter((l) => l !== "");
    expect(lines.every((l) => l.startsWith("data: "))).toBe(true);
    expect(lines.at(-1)).toBe("data: [DONE]");
  });

  it("stops the node's work when a streaming client goes away", async () => {
    type Generations = { active: number; cancelled: number };
    const generations = async () =>
      ((await (await fetch(`http://127.0.0.1:${nodePort}/healthz`)).json()) as { generations: Generations })
        .generations;
    const before = await generations();
    const cancel = new AbortController();
    const request = fetch(`${edge}/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      // One token per step over most of the context: seconds of work if nobody stops it.
      body: JSON.stringify({
        model: "sprout-tiny",
        prompt: "x",
        max_tokens: 200,
        threshold: 1,
        block_size: 4,
        stream: true,
      }),
      signal: cancel.signal,
    }).then(async (response) => {
      await response.body?.getReader().read();
    });
    await expect.poll(async () => (await generations()).active, { timeout: 10_000, interval: 20 }).toBe(1);
    cancel.abort();
    await request.catch(() => {});
    await expect
      .poll(generations, { timeout: 5_000, interval: 100 })
      .toEqual({ ...before, active: 0, cancelled: before.cancelled + 1 });
  });

  it("refuses a wrong key with a 401 JSON error", async () => {
    const client = new OpenAI({ apiKey: "sk-wrong", baseURL: `${edge}/v1`, maxRetries: 0 });
    const error = await client.models.list().catch((e) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error.status).toBe(401);
    expect(error.error).toMatchObject({ code: "invalid_api_key" });
  });

  it("says clearly when a port is taken", async () => {
    const second = startWith(edgePort, await freePort());
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(new RegExp(`Port ${edgePort} \\(edge\\) is taken`));
  });

  it("stops everything on Ctrl-C", async () => {
    sprout.child.kill("SIGINT");
    expect(await sprout.exited).toBe(0);
    await expect(fetch(`${edge}/`)).rejects.toThrow();
    await expect(fetch(`http://127.0.0.1:${nodePort}/healthz`)).rejects.toThrow();
  });
});
