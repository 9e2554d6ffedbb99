/**
 * The model router (router.ts): one pool per model, learnt from what each member says it serves;
 * with scripted members, then with real denoiser nodes serving different models.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GenerateEvent, GenerateRequest } from "../../protocol/src/index.ts";
import { type RunningNode, startDenoiserNode, TWO_MODEL_DIRS } from "../../test/support/servers.ts";
import { type Backend, BackendError, type ServedModel } from "./backend.ts";
import { DenoiserNodeBackend } from "./denoiser-node.ts";
import { ModelRouter } from "./router.ts";

async function collect(stream: AsyncIterable<GenerateEvent>): Promise<GenerateEvent[]> {
  const events: GenerateEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}
const text = (events: GenerateEvent[]) => events.map((e) => (e.type === "block" ? e.text : "")).join("");
const usage = { prompt_tokens: 1, completion_tokens: 2, forward_passes: 2 };

/**
 * A member serving `models` (or unable to say: "down"), answering each generation with its id
 * and the model asked, one token per block; `dieAfter` blocks, it dies mid-stream.
 */
function member(id: string, models: string[] | (() => string[] | "down"), dieAfter?: number) {
  const seen: GenerateRequest[] = [];
  const verified: (string | undefined)[] = [];
  const edited: (string | undefined)[] = [];
  const backend: Backend = {
    id,
    async models(): Promise<ServedModel[]> {
      const now = typeof models === "function" ? models() : models;
      if (now === "down") throw new BackendError("backend_unavailable", "down", 503, `${id} down`);
      return now.map((m) => ({ id: m, version: `v-${m}` }));
    },
    async doStream(request) {
      seen.push(request);
      return (async function* () {
        yield { type: "start", model: request.model ?? "?", prompt_tokens: 1, block_size: 1 };
        const first = request.committed?.length ?? 0;
        for (let k = first; k < request.max_tokens; k++) {
          if (dieAfter !== undefined && k >= dieAfter) throw new TypeError("connection reset");
          yield { type: "block", index: k, text: `${id}${k} `, tokens: 1, steps: 1, ids: [k] };
        }
        yield { type: "done", finish_reason: "length", usage };
      })() as AsyncIterable<GenerateEvent>;
    },
    async verify(request) {
      verified.push(request.model);
      return {
        syntax: { ok: true },
        score: 0.5,
        bits_per_token: 1,
        tokens: 1,
        verdict: "plausible",
        forward_passes: 1,
      };
    },
    async edit(request) {
      edited.push(request.model);
      return { code: request.code, edits: [], tokens: 1, forward_passes: 1 };
    },
  };
  return { backend, seen, verified, edited };
}

describe("the model router", () => {
  it("lists every model its members serve, in order, each once, the default first", async () => {
    const a = member("a", ["tiny", "twin"]);
    const b = member("b", ["twin", "big"]);
    const router = new ModelRouter({ members: [{ backend: a.backend }, { backend: b.backend }] });
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny", "twin", "big"]);
    expect((await router.models())[0]).toEqual({ id: "tiny", version: "v-tiny" });
  });

  it("sends each request only to members serving its model, naming it; none named: the default", async () => {
    const a = member("a", ["tiny"]);
    const b = member("b", ["twin"]);
    const c = member("c", ["twin"]);
    const router = new ModelRouter({
      members: [{ backend: a.backend }, { backend: b.backend }, { backend: c.backend }],
    });
    for (let i = 0; i < 4; i++)
      await collect(await router.doStream({ model: "twin", prompt: "x", max_tokens: 1 }));
    expect(a.seen).toEqual([]);
    expect(b.seen.length).toBe(2); // spread over the twin's pool
    expect(c.seen.length).toBe(2);
    expect(b.seen[0]?.model).toBe("twin");
    const unnamed = await collect(await router.doStream({ prompt: "x", max_tokens: 1 }));
    expect(unnamed[0]).toMatchObject({ type: "start", model: "tiny" });
    expect(a.seen).toEqual([{ model: "tiny", prompt: "x", max_tokens: 1 }]);

    await router.verify({ model: "twin", code: "x", language: "python" });
    await router.edit({ code: "x" });
    expect([...b.verified, ...c.verified]).toEqual(["twin"]);
    expect(a.edited).toEqual(["tiny"]);
  });

  it("answers 404 model_not_found for an unknown model, naming the available ones", async () => {
    const router = new ModelRouter({
      members: [{ backend: member("a", ["tiny"]).backend }, { backend: member("b", ["twin"]).backend }],
    });
    const error = await router.doStream({ model: "gpt-4", prompt: "x", max_tokens: 1 }).catch((e) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect(error).toMatchObject({ code: "model_not_found", status: 404 });
    expect(error.message).toBe("The model 'gpt-4' does not exist. Available models: tiny, twin.");
    await expect(router.verify({ model: "gpt-4", code: "x", language: "python" })).rejects.toMatchObject({
      code: "model_not_found",
    });
  });

  it("fails over within a model's pool, resuming on another member of it, never on another model's", async () => {
    const dying = member("a", ["tiny"], 2);
    const other = member("b", ["twin"]);
    const rescuer = member("c", ["tiny"]);
    const router = new ModelRouter({
      members: [{ backend: dying.backend }, { backend: other.backend }, { backend: rescuer.backend }],
    });
    const events = await collect(await router.doStream({ model: "tiny", prompt: "x", max_tokens: 4 }));
    // One of the two tiny members served first; if the dying one did, the rescuer resumed it.
    const blocks = events.filter((e) => e.type === "block").map((e) => (e.type === "block" ? e.text : ""));
    expect(blocks).toHaveLength(4);
    expect(events.at(-1)?.type).toBe("done");
    expect(other.seen).toEqual([]);
    if (dying.seen.length > 0) {
      expect(text(events)).toBe("a0 a1 c2 c3 ");
      expect(rescuer.seen[0]).toMatchObject({ model: "tiny", committed: [0, 1] });
    }
    // Again until the dying member has served (round robin within tiny's pool).
    const again = await collect(await router.doStream({ model: "tiny", prompt: "x", max_tokens: 4 }));
    expect(dying.seen.length).toBeGreaterThan(0);
    expect(again.at(-1)?.type).toBe("done");
    expect(other.seen).toEqual([]);
  });

  it("keeps what a member said when it cannot say now, and asks again for an unknown model", async () => {
    let now = 0;
    let aSays: string[] | "down" = ["tiny"];
    let bSays: string[] | "down" = "down";
    const a = member("a", () => aSays);
    const b = member("b", () => bSays);
    const router = new ModelRouter({
      members: [{ backend: a.backend }, { backend: b.backend }],
      refreshMs: 1_000,
      retryMs: 100,
      now: () => now,
    });
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny"]);
    aSays = "down"; // it died: it stays in tiny's pool (the pool's circuit deals with it)
    now = 2_000;
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny"]);
    bSays = ["twin"]; // came up since: found when a request names its model
    now = 2_050; // within retryMs of the last round: not asked again yet
    await expect(router.doStream({ model: "twin", prompt: "x", max_tokens: 1 })).rejects.toMatchObject({
      code: "model_not_found",
    });
    now = 2_200;
    await collect(await router.doStream({ model: "twin", prompt: "x", max_tokens: 1 }));
    expect(b.seen.map((r) => r.model)).toEqual(["twin"]);
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny", "twin"]);
  });

  it("refreshes the models in the background: no request waits on a member that is slow to answer", async () => {
    let now = 0;
    let hang = false;
    const a = member("a", ["tiny"]);
    const slow = {
      ...a.backend,
      models: () => (hang ? new Promise<never>(() => {}) : (a.backend.models?.() ?? Promise.resolve([]))),
    };
    const router = new ModelRouter({ members: [{ backend: slow }], refreshMs: 1_000, now: () => now });
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny"]);
    hang = true;
    now = 5_000; // stale: a refresh starts, and never answers
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny"]);
    await collect(await router.doStream({ model: "tiny", prompt: "x", max_tokens: 1 }));
    hang = false;
    now = 7_000; // the hung round is given up on after refreshMs: the next one answers
    await router.models();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny"]);
  });

  it("answers 503 while no member can say what it serves, and serves once one can", async () => {
    let now = 0;
    let says: string[] | "down" = "down";
    const a = member("a", () => says);
    const router = new ModelRouter({ members: [{ backend: a.backend }], retryMs: 100, now: () => now });
    await expect(router.doStream({ model: "tiny", prompt: "x", max_tokens: 1 })).rejects.toMatchObject({
      code: "backend_unavailable",
      status: 503,
    });
    await expect(router.models()).rejects.toMatchObject({ status: 503 });
    says = ["tiny"];
    now = 200; // an empty catalog is asked again after retryMs, not refreshMs
    expect((await router.models()).map((m) => m.id)).toEqual(["tiny"]);
  });

  it("keeps a model's pool, and its circuits, while its members stay the same", async () => {
    let now = 0;
    const a = member("a", ["tiny"]);
    const router = new ModelRouter({ members: [{ backend: a.backend }], refreshMs: 10, now: () => now });
    await router.models();
    const before = router.status();
    now = 100;
    await router.models();
    expect(router.status()).toEqual(before);
    expect(router.status()).toEqual([{ model: "tiny", members: [expect.objectContaining({ id: "a" })] }]);
  });
});

describe("the model router over real denoiser nodes", () => {
  const secret = "router-secret";
  let both: RunningNode;
  let twinOnly: RunningNode;
  beforeAll(async () => {
    both = await startDenoiserNode(secret, TWO_MODEL_DIRS);
    twinOnly = await startDenoiserNode(secret, [both.models[1] as RunningNode["model"]]);
  });
  afterAll(async () => {
    await twinOnly.close();
    await both.close();
  });

  it("learns each node's models from its /readyz and routes to nodes serving the model asked", async () => {
    const router = new ModelRouter({
      members: [
        { backend: new DenoiserNodeBackend({ url: twinOnly.url, secret }) },
        { backend: new DenoiserNodeBackend({ url: both.url, secret }) },
      ],
    });
    const models = await router.models();
    expect(models).toEqual([
      { id: "sprout-tiny-ar", version: expect.stringMatching(/^[0-9a-f]{64}$/), context_length: 512 },
      { id: "sprout-tiny", version: expect.stringMatching(/^[0-9a-f]{64}$/), context_length: 512 },
    ]);
    for (const model of ["sprout-tiny", "sprout-tiny-ar"]) {
      const events = await collect(await router.doStream({ model, prompt: "def f(x):\n", max_tokens: 4 }));
      expect(events[0]).toMatchObject({ type: "start", model });
      expect(events.at(-1)?.type).toBe("done");
    }
    expect(router.status().map((s) => [s.model, s.members.length])).toEqual([
      ["sprout-tiny-ar", 2],
      ["sprout-tiny", 1],
    ]);
  });
});
