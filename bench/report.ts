/**
 * Where a benchmark's results go: its JSON under bench/results/ (stamped with the date and the
 * machine), and its latest table in the README between markers of its own
 * (`<!-- NAME:start -->` … `<!-- NAME:end -->`): a benchmark replaces its section, nothing else.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";

const README = fileURLToPath(new URL("../README.md", import.meta.url));
const RESULTS = fileURLToPath(new URL("./results/", import.meta.url));

/** The machine a result was measured on. */
export function machine(): { cpus: number; cpu: string | undefined; node: string } {
  return { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version };
}

/** When and where: the fields every result file starts with. */
export function stamp(): { date: string; machine: ReturnType<typeof machine> } {
  return { date: new Date().toISOString(), machine: machine() };
}

/** Writes bench/results/NAME.json; returns its path. */
export function writeResult(name: string, result: object): string {
  mkdirSync(RESULTS, { recursive: true });
  const path = `${RESULTS}${name}.json`;
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function writeReadmeSection(name: string, markdown: string): void {
  const text = readFileSync(README, "utf8");
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to < from) throw new Error(`README.md has no ${start} … ${end} section`);
  writeFileSync(README, `${text.slice(0, from)}${start}\n${markdown}\n${text.slice(to)}`);
}
