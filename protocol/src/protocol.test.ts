import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  GenerateBody,
  GenerateEvent,
  GenerateRequest,
  NativeEvent,
  NodeEvent,
  parseNodeEvent,
} from "./index.ts";

const verification = {
  syntax: { ok: true },
  score: 0.5,
  bits_per_token: 1,
  tokens: 3,
  verdict: "plausible",
  forward_passes: 2,
} as const;

describe("the protocol", () => {
  it("takes a node's events as backend events, and requires of a node what only it can give", () => {
    const block = { type: "block", index: 0, text: "x", tokens: 1, steps: 1, ids: [7] };
    expect(GenerateEvent.parse(NodeEvent.parse(block))).toEqual(block);
    // An OpenAI-compatible upstream has no ids or steps: a backend may leave them out, a node not.
    expect(GenerateEvent.safeParse({ type: "block", index: 0, text: "x" }).success).toBe(true);
    expect(NodeEvent.safeParse({ type: "block", index: 0, text: "x" }).success).toBe(false);
    expect(NodeEvent.safeParse({ type: "start", model: "m" }).success).toBe(false);
  });

  it("keeps the version out of the events", () => {
    const start = { type: "start", model: "m", prompt_tokens: 1, block_size: 4, v: 1 };
    expect(NodeEvent.parse(start)).not.toHaveProperty("v");
  });

  it("gives every native event its type, the verify event too", () => {
    expect(NativeEvent.parse({ type: "verify", ...verification, cached: true })).toMatchObject({
      type: "verify",
      cached: true,
    });
    expect(NativeEvent.safeParse({ ...verification, cached: true }).success).toBe(false);
    const error = { type: "error", error: { message: "m", type: "api_error", code: "c", param: null } };
    expect(NativeEvent.parse(error)).toEqual(error);
  });

  it("allows at most one unmasking policy in a request", () => {
    expect(GenerateRequest.safeParse({ prompt: "x", max_tokens: 1, threshold: 0.5 }).success).toBe(true);
    const both = GenerateRequest.safeParse({ prompt: "x", max_tokens: 1, threshold: 0.5, steps: 2 });
    expect(both.error?.issues[0]?.message).toMatch(/at most one/);
  });

  it("takes a conversation instead of a prompt, never both", () => {
    const messages = [{ role: "user", content: "Add two numbers." }];
    expect(GenerateRequest.parse({ messages, max_tokens: 1 })).toEqual({
      prompt: "",
      messages,
      max_tokens: 1,
    });
    const resumed = { messages, max_tokens: 4, committed: [7, 8] };
    expect(GenerateRequest.safeParse(resumed).success).toBe(true);
    for (const both of [
      { prompt: "x", messages, max_tokens: 1 },
      { suffix: "y", messages, max_tokens: 1 },
    ]) {
      const parsed = GenerateRequest.safeParse(both);
      expect(parsed.error?.issues[0]).toMatchObject({
        path: ["messages"],
        message: expect.stringMatching(/not both/),
      });
    }
    expect(GenerateRequest.safeParse({ messages: [], max_tokens: 1 }).success).toBe(false);
    expect(
      GenerateRequest.safeParse({ messages: [{ role: "tool", content: "x" }], max_tokens: 1 }).success,
    ).toBe(false);
    expect(GenerateBody.safeParse({ model: "m", prompt: "x", messages }).success).toBe(false);
    expect(GenerateBody.parse({ model: "m", messages })).toMatchObject({ prompt: "", max_tokens: 128 });
  });

  describe("parseNodeEvent, the adapter's cheap check of a node's events", () => {
    const block = { type: "block", index: 3, text: "x = 1", tokens: 2, steps: 1, ids: [5, 0] };
    const step = { type: "step", block: 0, step: 1, committed: 1, remaining: 1, state: ["x", null] };
    const start = { type: "start", model: "m", prompt_tokens: 0, block_size: 4 };
    const usage = { prompt_tokens: 1, completion_tokens: 2, forward_passes: 3 };
    const done = { type: "done", finish_reason: "length", usage };
    /** Values near the events: every field of a block or a step replaced by something else, some dropped, some added. */
    const odd = fc.oneof(
      fc.constantFrom(-1, 0, 1, 1.5, 2 ** 53, -0, "1", null, true, [], [1], [-1], [1.5], ["a"], [null], {}),
      fc.jsonValue({ maxDepth: 2 }),
    );
    const near = (base: Record<string, unknown>) =>
      fc
        .tuple(
          fc.subarray(Object.keys(base)),
          fc.dictionary(fc.constantFrom(...Object.keys(base), "extra"), odd, { maxKeys: 3 }),
        )
        .map(([dropped, changed]) => {
          const value: Record<string, unknown> = { ...base, ...changed };
          for (const key of dropped) if (key !== "type") delete value[key];
          return value;
        });

    it("gives the schema's answer, for the events it checks itself and every other", () => {
      fc.assert(
        fc.property(
          fc.oneof(
            near(block),
            near(step),
            near(start),
            near(done),
            near(usage).map((u) => ({ ...done, usage: u })),
            fc.jsonValue(),
          ),
          (value) => {
            const parsed = NodeEvent.safeParse(value);
            expect(parseNodeEvent(value)).toEqual(parsed.success ? parsed.data : undefined);
          },
        ),
        { numRuns: 3000 },
      );
    });

    it("keeps the fields of the protocol only, as the schema does", () => {
      expect(parseNodeEvent({ ...block, secret: 1 })).toEqual(block);
      expect(parseNodeEvent({ ...step, secret: 1 })).toEqual(step);
      expect(parseNodeEvent({ ...block, ids: [1, -2] })).toBeUndefined();
      expect(parseNodeEvent({ ...step, step: 0 })).toBeUndefined();
      expect(parseNodeEvent({ ...done, usage: { ...usage, extra: 1 } })).toEqual(done);
      expect(parseNodeEvent({ ...done, finish_reason: "eos" })).toBeUndefined();
      expect(parseNodeEvent({ ...start, block_size: 0 })).toBeUndefined();
    });
  });
});
