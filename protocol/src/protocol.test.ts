import { describe, expect, it } from "vitest";
import { GenerateBody, GenerateEvent, GenerateRequest, NativeEvent, NodeEvent } from "./index.ts";

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
});
