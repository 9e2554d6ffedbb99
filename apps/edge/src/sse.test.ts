import { createParser, type EventSourceMessage } from "eventsource-parser";
import { describe, expect, it } from "vitest";
import { PING, sseText } from "./sse.ts";

const parse = (text: string) => {
  const messages: EventSourceMessage[] = [];
  createParser({ onEvent: (m) => messages.push(m) }).feed(text);
  return messages;
};

describe("SSE written by hand", () => {
  it("writes what an SSE parser reads back, line breaks in the data included", () => {
    for (const data of ['{"a":1}', "one\ntwo", "a\r\nb\rc", "", "[DONE]"]) {
      const [message] = parse(sseText({ event: "block", data }) + PING + sseText({ data }));
      expect(message).toMatchObject({ event: "block", data: data.replace(/\r\n|\r/g, "\n") });
      expect(parse(sseText({ data }))[0]).toMatchObject({
        event: undefined,
        data: data.replace(/\r\n|\r/g, "\n"),
      });
    }
    expect(sseText({ event: "done", data: "{}" })).toBe("event: done\ndata: {}\n\n");
  });

  it("refuses an event name that would break the stream", () => {
    expect(() => sseText({ event: "a\nb", data: "x" })).toThrow();
  });
});
