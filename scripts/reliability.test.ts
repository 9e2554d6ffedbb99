/**
 * The generator of docs/RELIABILITY.md, on a small synthetic run: the document is a record of one
 * run, so what can break is the generator (a test left out, a failure shown as passed, a count
 * off), not the committed text. The suite itself runs in `npm test`.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { AREAS, type Area, type AssertionResult, document, resultsByFile } from "./reliability.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

const result = (ancestors: string[], title: string, status: string, duration = 1500): AssertionResult => ({
  ancestorTitles: ancestors,
  title,
  fullName: [...ancestors, title].join(" "),
  status,
  duration,
});

const areas: Area[] = [
  {
    area: "Faults",
    bounds: "A node killed mid-stream.",
    tests: [["adapters/src/pool.test.ts"], ["apps/denoiser/src/app.test.ts", /Retry-After|drains/]],
  },
  { area: "Fuzzing", bounds: "Any body.", tests: [["apps/edge/src/fuzz.test.ts"]] },
];

/** A run as vitest's JSON reporter writes it: absolute file names, one result per test. */
const report = {
  testResults: [
    {
      name: `${root}adapters/src/pool.test.ts`,
      assertionResults: [
        result(["the backend pool"], "fails over mid-stream", "passed"),
        result(["the backend pool"], "answers a | in a title", "failed", 20),
      ],
    },
    {
      name: `${root}apps/denoiser/src/app.test.ts`,
      assertionResults: [
        result(["the node"], "answers 503 with Retry-After when full", "passed"),
        result(["the node"], "serves /metrics", "passed"), // not selected by the area's filter
      ],
    },
    { name: `${root}apps/edge/src/fuzz.test.ts`, assertionResults: [result([], "any body", "skipped", 0)] },
  ],
};

describe("the reliability document's generator", () => {
  const doc = document(resultsByFile(report), { areas, date: "2026-12-01", load: "no load run" });
  const rows = doc.split("\n").filter((line) => line.startsWith("| ") && !line.startsWith("| test "));

  it("lists each selected test of each area once, with its file, outcome and seconds", () => {
    expect(rows).toEqual([
      "| the backend pool › fails over mid-stream | `adapters/src/pool.test.ts` | passed | 1.50 |",
      "| the backend pool › answers a \\| in a title | `adapters/src/pool.test.ts` | **failed** | 0.02 |",
      "| the node › answers 503 with Retry-After when full | `apps/denoiser/src/app.test.ts` | passed | 1.50 |",
      "| any body | `apps/edge/src/fuzz.test.ts` | **skipped** | 0.00 |",
    ]);
    expect(doc.indexOf("## Faults")).toBeLessThan(doc.indexOf("## Fuzzing"));
    expect(doc.indexOf("## Fuzzing")).toBeLessThan(doc.indexOf("any body"));
  });

  it("counts only passed tests as passed, and dates the run", () => {
    expect(doc).toContain("Last run 2026-12-01: **2 of 4 passed**.");
    expect(doc).toContain("no load run");
  });

  it("refuses to write an area that no test of the run shows", () => {
    const renamed = { ...report, testResults: report.testResults.slice(1) };
    expect(() => document(resultsByFile(renamed), { areas, date: "x", load: "" })).toThrow(
      /Faults: no test of adapters\/src\/pool.test.ts ran/,
    );
    const unmatched: Area[] = [
      { area: "Faults", bounds: "", tests: [["apps/denoiser/src/app.test.ts", /never/]] },
    ];
    expect(() => document(resultsByFile(report), { areas: unmatched, date: "x", load: "" })).toThrow(
      /matching \/never\//,
    );
  });

  it("names only test files that exist", () => {
    for (const { tests } of AREAS)
      for (const [file] of tests) expect(existsSync(`${root}${file}`), file).toBe(true);
  });
});
