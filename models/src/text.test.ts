/** How much decoded text may be shown yet (text.ts): held-back tails, stop sequences, finish reasons. */
import { describe, expect, it } from "vitest";
import { visibleText } from "./text.ts";

describe("visibleText", () => {
  it("holds back a tail that may start a stop sequence, and releases it when it does not", () => {
    expect(visibleText("x = a", ["ab"], false, false)).toEqual({ text: "x = ", final: null });
    expect(visibleText("x = ac", ["ab"], false, false)).toEqual({ text: "x = ac", final: null });
    expect(visibleText("x = ab c", ["ab"], false, false)).toEqual({ text: "x = ", final: "stop" });
  });

  it("cuts at the earliest of several stops, even in the last block", () => {
    expect(visibleText("a;b\nc", ["\n", ";"], false, true)).toEqual({ text: "a", final: "stop" });
  });

  it("holds back an unfinished multi-byte character until its last byte", () => {
    expect(visibleText("s = '\uFFFD", [], false, false)).toEqual({ text: "s = '", final: null });
    expect(visibleText("s = '\uFFFD", [], true, false)).toEqual({ text: "s = '\uFFFD", final: "stop" });
  });

  it("ends with length at the token limit and with stop at an end token", () => {
    expect(visibleText("abc", [], false, true)).toEqual({ text: "abc", final: "length" });
    expect(visibleText("abc", [], true, false)).toEqual({ text: "abc", final: "stop" });
  });
});
