import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EditResult } from "./edit.ts";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "./index.ts";

const CODE = `def area(r):
    pi = 3.14159
    return pi * r * r


def perimeter(r):
    return 2 * 3.14159 * r
`;

/** The original with each edit's range replaced by its text after: must give the result's code. */
const applyEdits = (code: string, { edits }: EditResult) =>
  [...edits].reverse().reduce((text, e) => text.slice(0, e.start) + e.after + text.slice(e.end), code);

describe("editing given code", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
  });
  afterAll(() => model.close());

  it("rewrites a marked region by infilling between the text around it", async () => {
    const start = CODE.indexOf("pi = 3.14159");
    const end = start + "pi = 3.14159".length;
    const result = await model.rewrite({ code: CODE, regions: [{ start, end }], maxTokens: 16 });
    expect(result.edits).toEqual([{ start, end, before: "pi = 3.14159", after: expect.any(String) }]);
    let infilled = "";
    for await (const event of model.generate({
      prompt: CODE.slice(0, start),
      suffix: CODE.slice(end),
      maxTokens: 16,
    })) {
      if (event.type === "block") infilled += event.text;
    }
    expect(result.edits[0]?.after).toBe(infilled);
    expect(result.code).toBe(applyEdits(CODE, result));
    expect(result.forward_passes).toBeGreaterThan(0);
  });

  it("repairs nothing it is not sure of, and reports what it revises as ranges of the original", async () => {
    const untouched = await model.repair({ code: CODE, threshold: 1 });
    expect(untouched.edits).toEqual([]);
    expect(untouched.code).toBe(CODE);
    const broken = "for i in range(10):\n    print(i))\n"; // one bracket too many
    const eager = await model.repair({ code: broken, threshold: 0.05, rounds: 2, blockSize: 16 });
    expect(eager.edits.length).toBeGreaterThan(0);
    for (const edit of eager.edits) expect(broken.slice(edit.start, edit.end)).toBe(edit.before);
    expect(eager.code).toBe(applyEdits(broken, eager));
    // One forward per block while nothing changes; at most `rounds` per block.
    const { tokens } = await model.verify({ code: CODE });
    expect(untouched.forward_passes).toBe(Math.ceil(tokens / 32));
    const brokenTokens = (await model.verify({ code: broken })).tokens;
    expect(eager.forward_passes).toBeLessThanOrEqual(2 * Math.ceil(brokenTokens / 16));
  });
});
