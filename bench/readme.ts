/**
 * The README quotes each benchmark's latest run between markers of its own
 * (`<!-- NAME:start -->` … `<!-- NAME:end -->`): a benchmark replaces its section, nothing else.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const README = fileURLToPath(new URL("../README.md", import.meta.url));

export function writeReadmeSection(name: string, markdown: string): void {
  const text = readFileSync(README, "utf8");
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to < from) throw new Error(`README.md has no ${start} … ${end} section`);
  writeFileSync(README, `${text.slice(0, from)}${start}\n${markdown}\n${text.slice(to)}`);
}
