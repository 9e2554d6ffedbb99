/**
 * docs/RELIABILITY.md is written by `npm run reliability` (scripts/reliability.ts) from a run of
 * the reliability suite. This keeps it current: every test of the suite with a literal title
 * must appear in it, so a test added or renamed without regenerating the document fails here.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { AREAS } from "../scripts/reliability.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

describe("docs/RELIABILITY.md", () => {
  it("lists every test of the reliability suite, each passed", () => {
    const doc = readFileSync(`${root}docs/RELIABILITY.md`, "utf8");
    for (const { tests } of AREAS) {
      for (const [file, filter] of tests) {
        const source = readFileSync(`${root}${file}`, "utf8");
        // Literal titles only (it.each titles are templates, filled in by the run).
        const titles = [...source.matchAll(/\bit\(\s*"((?:[^"\\]|\\.)*)"/g)].map((m) =>
          (m[1] as string).replaceAll('\\"', '"'),
        );
        for (const title of titles) {
          const row = doc
            .split("\n")
            .find((line) => line.startsWith("| ") && line.includes(title.replaceAll("|", "\\|")));
          if (filter && !row && !filter.test(title)) continue; // not part of this area's selection
          expect(
            row,
            `"${title}" (${file}) is not in docs/RELIABILITY.md: run npm run reliability`,
          ).toBeDefined();
          expect(row).toContain("| passed |");
        }
      }
    }
  });
});
