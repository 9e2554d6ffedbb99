import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT, lineRange, main } from "./main.ts";

/** Runs the CLI in-process with captured output (no edge: these fail before any request). */
async function run(args: string[], env: Record<string, string> = { SPROUT_API_KEY: "sk-test" }) {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    env,
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
    readStdin: async () => "",
  });
  return { code, stdout, stderr };
}

describe("the sprout command line, before it calls anything", () => {
  it("maps 1-based inclusive line numbers to character ranges, newlines included", () => {
    const code = "a = 1\nbb = 2\nccc = 3\n";
    expect(lineRange(code, "2")).toEqual({ start: 6, end: 13 });
    expect(code.slice(lineRange(code, "2-3").start, lineRange(code, "2-3").end)).toBe("bb = 2\nccc = 3\n");
    expect(lineRange("x\ny", "2")).toEqual({ start: 2, end: 3 }); // a last line without a newline
    for (const bad of ["0", "3-2", "5", "a-b", "1-9", ""])
      expect(() => lineRange(code, bad), bad).toThrow(/--lines/);
  });

  it("prints its usage on --help (exit 0) and for a missing or unknown command (exit 2)", async () => {
    const help = await run(["--help"]);
    expect(help).toMatchObject({ code: EXIT.ok, stderr: "" });
    expect(help.stdout).toMatch(/^usage: sprout/);
    expect((await run([])).code).toBe(EXIT.usage);
    const unknown = await run(["frobnicate"]);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    expect((await run(["complete", "--no-such-flag"])).code).toBe(EXIT.usage);
  });

  it("refuses what it cannot send, and says why", async () => {
    expect((await run(["complete", "x"], {})).stderr).toMatch(/no API key/);
    expect((await run(["complete", "x", "--max-tokens", "many"])).stderr).toMatch(
      /--max-tokens takes a number/,
    );
    expect((await run(["complete"])).stderr).toMatch(/needs a PROMPT/);
    expect((await run(["infill"])).stderr).toMatch(/needs a FILE, or --prefix and --suffix/);
    const dir = mkdtempSync(join(tmpdir(), "sprout-cli-unit-"));
    const twice = join(dir, "twice.py");
    writeFileSync(twice, "<FILL>\n<FILL>\n");
    const result = await run(["infill", twice]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toMatch(/exactly once \(it holds it 2 times\)/);
    expect((await run(["edit", join(dir, "missing.py")])).stderr).toMatch(/cannot read .*ENOENT/);
  });
});
