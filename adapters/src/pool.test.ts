import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerateEvent, GenerateRequest } from "../../protocol/src/index.ts";
import { type RunningNode, startDenoiserNode } from "../../test/support/servers.ts";
import { type Backend, BackendError } from "./backend.ts";
import { DenoiserNodeBackend } from "./denoiser-node.ts";
import { BackendPool } from "./pool.ts";

async function collect(stream: AsyncIterable<GenerateEvent>): Promise<GenerateEvent[]> {
  const events: GenerateEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}
const text = (events: GenerateEvent[]) => events.map((e) => (e.type === "block" ? e.text : "")).join("");
const START: GenerateEvent = { type: "start", model: "m", prompt_tokens: 1, block_size: 2 };
const usage = { prompt_tokens: 1, completion_tokens: 2, forward_passes: 2 };

/** Test doubles: backends scripted to answer, fail to connect, hang, or die mid-stream. */
function scripted(
  id: string,
  behave: (request: GenerateRequest) => GenerateEvent[] | "down" | "silent" | "invalid",
) {
  const seen: GenerateRequest[] = [];
  const backend: Backend = {
    id,
    async doStream(request, { signal } = {}) {
      seen.push(request);
      const plan = behave(request);
      if (plan === "down") throw new BackendError("backend_unavailable", "down", 503, `${id} down`);
      if (plan === "invalid") throw new BackendError("invalid_request", "bad prompt", 400);
      return (async function* () {
        if (plan === "silent") {
          await new Promise((_, reject) =>
            signal?.addEventListener("abort", () => reject(new Error("aborted"))),
          );
        }
        for (const event of plan as GenerateEvent[]) {
          if (event.type === "error" && event.code === "die") throw new TypeError("connection reset");
          yield event;
        }
      })();
    },
  };
  return { backend, seen };
}
const ok = (id: string): GenerateEvent[] => [
  START,
  { type: "block", index: 0, text: id, tokens: 2, steps: 2, ids: [7, 8] },
  { type: "done", finish_reason: "stop", usage },
];

describe("the backend pool", () => {
  it("spreads concurrent streams over the least loaded members", async () => {
    const a = scripted("a", () => ok("a"));
    const b = scripted("b", () => ok("b"));
    const pool = new BackendPool({ members: [{ backend: a.backend }, { backend: b.backend }] });
    const first = await pool.doStream({ prompt: "x", max_tokens: 2 });
    const second = await pool.doStream({ prompt: "x", max_tokens: 2 });
    expect(pool.status().map((m) => m.inFlight)).toEqual([1, 1]);
    expect([text(await collect(first)), text(await collect(second))].sort()).toEqual(["a", "b"]);
    expect(pool.status().map((m) => m.inFlight)).toEqual([0, 0]);
  });

  it("retries another member before the first event, and opens a failing member's circuit until its cooldown", async () => {
    let now = 0;
    const a = scripted("a", () => "down");
    const b = scripted("b", () => ok("b"));
    const failures: string[] = [];
    const pool = new BackendPool({
      members: [{ backend: a.backend }, { backend: b.backend }],
      failureThreshold: 2,
      cooldownMs: 1_000,
      now: () => now,
      onFailure: (id) => failures.push(id),
    });
    for (let i = 0; i < 4; i++)
      expect(text(await collect(await pool.doStream({ prompt: "x", max_tokens: 2 })))).toBe("b");
    expect(failures).toEqual(["a", "a"]); // tried twice (round robin), then skipped: its circuit is open
    expect(pool.status()[0]).toMatchObject({ open: true, failures: 2 });
    now = 1_500; // cooldown over: one trial goes to it again
    await collect(await pool.doStream({ prompt: "x", max_tokens: 2 }));
    await collect(await pool.doStream({ prompt: "x", max_tokens: 2 }));
    expect(a.seen.length).toBe(3);
  });

  it("asks a member whose cooldown has passed for its health before sending it a request", async () => {
    let now = 0;
    let ready = false;
    const a = scripted("a", () => "down");
    const healthy = { ...a.backend, health: async () => ready, doStream: a.backend.doStream };
    const b = scripted("b", () => ok("b"));
    const pool = new BackendPool({
      members: [{ backend: healthy }, { backend: b.backend }],
      failureThreshold: 1,
      cooldownMs: 1_000,
      now: () => now,
    });
    await collect(await pool.doStream({ prompt: "x", max_tokens: 2 })); // a fails once: open
    expect(a.seen.length).toBe(1);
    now = 1_500;
    for (let i = 0; i < 3; i++) await collect(await pool.doStream({ prompt: "x", max_tokens: 2 }));
    expect(a.seen.length).toBe(1); // not ready: no request spent on it, open for another cooldown
    expect(pool.status()[0]?.open).toBe(true);
    now = 3_000;
    ready = true;
    await collect(await pool.doStream({ prompt: "x", max_tokens: 2 }));
    await collect(await pool.doStream({ prompt: "x", max_tokens: 2 }));
    expect(a.seen.length).toBe(2); // ready again: tried
  });

  it("does not retry a request the backend calls invalid, and answers a fast 503 when every member is down", async () => {
    const invalid = scripted("a", () => "invalid");
    const other = scripted("b", () => ok("b"));
    const pool = new BackendPool({ members: [{ backend: invalid.backend }, { backend: other.backend }] });
    await expect(pool.doStream({ prompt: "x", max_tokens: 2 })).rejects.toMatchObject({
      code: "invalid_request",
    });
    expect(other.seen.length).toBe(0);

    const down = new BackendPool({
      members: [
        { backend: scripted("a", () => "down").backend },
        { backend: scripted("b", () => "down").backend },
      ],
    });
    const started = Date.now();
    await expect(down.doStream({ prompt: "x", max_tokens: 2 })).rejects.toMatchObject({ status: 503 });
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("gives up on a member that stays silent, and moves on", async () => {
    const silent = scripted("a", () => "silent");
    const b = scripted("b", () => ok("b"));
    const pool = new BackendPool({
      members: [{ backend: silent.backend }, { backend: b.backend }],
      firstEventMs: 100,
    });
    expect(text(await collect(await pool.doStream({ prompt: "x", max_tokens: 2 })))).toBe("b");
    expect(silent.seen.length).toBe(1);
  });

  it("fails over mid-stream by resuming from the ids already streamed", async () => {
    const dying = scripted("a", () => [
      START,
      { type: "block", index: 0, text: "ab", tokens: 2, steps: 3, ids: [1, 2] },
      { type: "error", code: "die", message: "" },
    ]);
    const rescuer = scripted("b", (request) => [
      { ...START, model: "b" },
      { type: "block", index: 1, text: `+${request.committed?.join(",")}`, tokens: 2, steps: 2, ids: [3, 4] },
      {
        type: "done",
        finish_reason: "length",
        usage: { prompt_tokens: 1, completion_tokens: 2, forward_passes: 2 },
      },
    ]);
    const pool = new BackendPool({ members: [{ backend: dying.backend }, { backend: rescuer.backend }] });
    const events = await collect(await pool.doStream({ prompt: "x", max_tokens: 4 }));
    expect(events.map((e) => e.type)).toEqual(["start", "block", "block", "done"]);
    expect(text(events)).toBe("ab+1,2");
    expect(rescuer.seen[0]?.committed).toEqual([1, 2]);
    expect(events.at(-1)).toMatchObject({ usage: { completion_tokens: 4, forward_passes: 5 } });
  });
});

describe("failing over past a member that cannot resume", () => {
  it("skips it and resumes on the next", async () => {
    const dying = scripted("a", () => [
      START,
      { type: "block", index: 0, text: "ab", tokens: 2, steps: 2, ids: [1, 2] },
      { type: "error", code: "die", message: "" },
    ]);
    const noResume = scripted("b", (request) => (request.committed ? "invalid" : ok("b")));
    const rescuer = scripted("c", () => [
      START,
      { type: "block", index: 1, text: "cd", tokens: 2, steps: 2, ids: [3, 4] },
      { type: "done", finish_reason: "length", usage },
    ]);
    const pool = new BackendPool({
      // Round robin: the first stream goes to a, the failover to b (the second of b and c here).
      members: [{ backend: dying.backend }, { backend: rescuer.backend }, { backend: noResume.backend }],
    });
    expect(text(await collect(await pool.doStream({ prompt: "x", max_tokens: 4 })))).toBe("abcd");
    expect(noResume.seen.map((r) => r.committed)).toEqual([[1, 2]]);
  });
});

describe("the backend pool over real denoiser nodes", () => {
  let a: RunningNode;
  let b: RunningNode;
  beforeAll(async () => {
    a = await startDenoiserNode();
    b = await startDenoiserNode();
  });
  afterAll(async () => {
    await a.close().catch(() => {});
    await b.close();
  });

  it("loses and repeats nothing when a node is killed mid-stream: the text of an uninterrupted run with the same seed", async () => {
    const request = {
      prompt: "def parse(line):\n",
      max_tokens: 40,
      block_size: 8,
      temperature: 0.8,
      seed: 11,
    };
    const node = (n: RunningNode) => new DenoiserNodeBackend({ url: n.url, secret: n.secret });
    const uninterrupted = await collect(await node(b).doStream(request));
    expect(uninterrupted.filter((e) => e.type === "block").length).toBeGreaterThan(3);

    const pool = new BackendPool({ members: [{ backend: node(a) }, { backend: node(b) }] });
    const events: GenerateEvent[] = [];
    let blocks = 0;
    for await (const event of await pool.doStream(request)) {
      events.push(event);
      if (event.type === "block" && ++blocks === 2) await a.close(); // the first member serves first
    }
    expect(events.filter((e) => e.type === "start")).toHaveLength(1);
    expect(text(events)).toBe(text(uninterrupted));
    expect(events.filter((e) => e.type === "block").map((e) => (e.type === "block" ? e.index : -1))).toEqual(
      uninterrupted.filter((e) => e.type === "block").map((e) => (e.type === "block" ? e.index : -1)),
    );
    const done = (list: GenerateEvent[]) => list.at(-1) as Extract<GenerateEvent, { type: "done" }>;
    expect(done(events).usage.completion_tokens).toBe(done(uninterrupted).usage.completion_tokens);
    expect(pool.status()[0]?.failures).toBe(1);
  });
});

describe("the pool's other paths", () => {
  const verification = {
    syntax: { ok: true as const },
    score: 0.5,
    bits_per_token: 1,
    tokens: 3,
    verdict: "plausible" as const,
    forward_passes: 1,
  };

  it("sends a verification only to members that can verify, and retries it on another", async () => {
    const asked: string[] = [];
    const verifier = (id: string, answer: () => Promise<typeof verification>): Backend => ({
      ...scripted(id, () => ok(id)).backend,
      verify: async () => {
        asked.push(id);
        return answer();
      },
    });
    const pool = new BackendPool({
      members: [
        { backend: scripted("plain", () => ok("plain")).backend },
        {
          backend: verifier("down", () => Promise.reject(new BackendError("backend_unavailable", "x", 503))),
        },
        { backend: verifier("up", async () => verification) },
      ],
    });
    for (let i = 0; i < 3; i++)
      await expect(pool.verify({ code: "x = 1", language: "python" })).resolves.toEqual(verification);
    expect(asked).not.toContain("plain");
    expect(asked.filter((id) => id === "up")).toHaveLength(3);
    expect(pool.status().map((m) => m.inFlight)).toEqual([0, 0, 0]);
    const none = new BackendPool({ members: [{ backend: scripted("plain", () => ok("plain")).backend }] });
    await expect(none.verify({ code: "x = 1", language: "python" })).rejects.toMatchObject({ status: 503 });
  });

  it("counts the tries before the stream started and its failovers in one maxAttempts", async () => {
    const dies = (id: string) =>
      scripted(id, () => [
        START,
        { type: "block", index: 0, text: id, tokens: 1, steps: 1, ids: [1] },
        { type: "error", code: "die", message: "" },
      ]);
    const members = [scripted("a", () => "down"), dies("b"), dies("c"), dies("d")];
    const pool = new BackendPool({ members: members.map((m) => ({ backend: m.backend })), maxAttempts: 2 });
    await expect(collect(await pool.doStream({ prompt: "x", max_tokens: 8 }))).rejects.toThrow();
    // The first pick (a) is down, the second dies mid-stream: no third member, though two are up.
    expect(members.map((m) => m.seen.length).reduce((a, b) => a + b)).toBe(2);
  });

  it("frees the member's slot when the client stops reading mid-stream", async () => {
    const a = scripted("a", () => ok("a"));
    const pool = new BackendPool({ members: [{ backend: a.backend }] });
    for await (const event of await pool.doStream({ prompt: "x", max_tokens: 2 })) {
      if (event.type === "block") break;
    }
    expect(pool.status()[0]).toMatchObject({ inFlight: 0, failures: 0 });
  });
});
