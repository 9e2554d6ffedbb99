/**
 * What a newcomer meets, through `npm start`: the playground in real Chromium (Debian's
 * `chromium`, driven by playwright-core) and the `sprout` command line, both against the real
 * edge in workerd and a denoiser node with the shipped model.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../apps/cli/src/main.ts";
import { freePort, type Started, startSprout, whenReady } from "./support/sprout.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const API_KEY = "sk-product-test-key";

function chromiumPath(): string {
  try {
    return execFileSync("which", ["chromium"], { encoding: "utf8" }).trim();
  } catch {
    // npm test runs scripts/chromium.sh before the tests: it installs chromium or stops saying how.
    throw new Error("Debian's chromium is needed for the playground test: run scripts/chromium.sh");
  }
}

let sprout: Started;
let edge: string;

beforeAll(async () => {
  const edgePort = await freePort();
  edge = `http://127.0.0.1:${edgePort}`;
  sprout = startSprout({
    SPROUT_API_KEY: API_KEY,
    SPROUT_EDGE_PORT: String(edgePort),
    SPROUT_NODE_PORT: String(await freePort()),
  });
  await whenReady(sprout);
});

afterAll(async () => {
  if (sprout?.child.exitCode === null) {
    sprout.child.kill("SIGINT");
    await sprout.exited;
  }
});

describe("the playground, in Chromium", () => {
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ["--no-sandbox"],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  afterAll(async () => {
    await browser?.close();
  });

  /** Counts, inside the page, placeholder tokens seen in the output while it changes. */
  const watchMasks = () =>
    page.evaluate(() => {
      const w = window as unknown as { masksSeen: number };
      w.masksSeen = 0;
      new MutationObserver(() => {
        w.masksSeen += document.querySelectorAll('[data-testid="output"] .mask').length;
      }).observe(document.querySelector('[data-testid="output"]') as Node, {
        childList: true,
        subtree: true,
      });
    });

  it("shows code growing out of placeholders, with the speed figures and a verdict", async () => {
    await page.goto(`${edge}/#key=${API_KEY}`);
    expect(page.url()).toBe(`${edge}/`); // the key leaves the address bar at once
    await page.getByTestId("prompt").fill("def add(a, b):\n");
    await page.getByTestId("max-tokens").fill("48");
    await page.getByTestId("block-size").selectOption("16");
    await watchMasks();
    await page.getByTestId("generate").click();
    await expect.poll(() => page.getByTestId("verdict").isVisible(), { timeout: 60_000 }).toBe(true);
    await expect.poll(() => page.getByTestId("generate").isEnabled()).toBe(true);

    const output = (await page.getByTestId("output").textContent()) ?? "";
    expect(output.startsWith("def add(a, b):\n")).toBe(true);
    expect(output.length).toBeGreaterThan("def add(a, b):\n".length);
    expect(output).not.toContain("▒"); // every placeholder resolved
    expect(await page.evaluate(() => (window as unknown as { masksSeen: number }).masksSeen)).toBeGreaterThan(
      0,
    );
    expect(await page.getByTestId("verdict").textContent()).toMatch(/plausible|doubtful|syntax error/);
    expect(Number(await page.locator("#stat-steps").textContent())).toBeGreaterThan(0);
    expect(Number(await page.locator("#stat-tpf").textContent())).toBeGreaterThan(0);
    expect(await page.getByTestId("error").isHidden()).toBe(true);

    // The screenshot: the output box is on screen and drawn with text, not blank.
    const shot = await page.getByTestId("output").screenshot();
    const inkShare = await page.evaluate(async (png) => {
      const image = new Image();
      image.src = `data:image/png;base64,${png}`;
      await image.decode();
      const canvas = Object.assign(document.createElement("canvas"), {
        width: image.width,
        height: image.height,
      });
      const context = canvas.getContext("2d") as CanvasRenderingContext2D;
      context.drawImage(image, 0, 0);
      const { data } = context.getImageData(0, 0, image.width, image.height);
      let ink = 0;
      for (let i = 0; i < data.length; i += 4)
        if ((data[i] ?? 0) + (data[i + 1] ?? 0) + (data[i + 2] ?? 0) > 300) ink++;
      return ink / (data.length / 4);
    }, shot.toString("base64"));
    expect(inkShare).toBeGreaterThan(0.002); // light glyphs on the dark background
  });

  it("infills between a prompt and a suffix", async () => {
    await page.getByTestId("prompt").fill("def area(r):\n");
    await page.getByTestId("suffix").fill("    return pi * r * r\n");
    await page.getByTestId("verify").uncheck();
    await page.getByTestId("generate").click();
    await expect
      .poll(async () => (await page.locator("#stat-tpf").textContent()) !== "–", { timeout: 60_000 })
      .toBe(true);
    await expect.poll(() => page.getByTestId("generate").isEnabled()).toBe(true);
    const output = (await page.getByTestId("output").textContent()) ?? "";
    expect(output.startsWith("def area(r):\n")).toBe(true);
    expect(output.endsWith("    return pi * r * r\n")).toBe(true);
    await page.getByTestId("suffix").fill("");
  });

  it("edits: repairs code, or rewrites the selected range", async () => {
    await page.getByTestId("mode-edit").click();
    const code = "def area(r):\n    pi = 3.14159\n    return pi * r * r\n";
    await page.getByTestId("prompt").fill(code);
    const start = code.indexOf("pi = 3.14159");
    await page
      .getByTestId("prompt")
      .evaluate(
        (element, [from, to]) =>
          (element as HTMLTextAreaElement).setSelectionRange(from as number, to as number),
        [start, start + "pi = 3.14159".length],
      );
    await page.getByTestId("generate").click();
    await expect
      .poll(() => page.locator("#edit-summary").textContent(), { timeout: 60_000 })
      .toMatch(/edit.*forwards/);
    const output = (await page.getByTestId("output").textContent()) ?? "";
    expect(output.startsWith("def area(r):\n    ")).toBe(true);
    expect(output.endsWith("\n    return pi * r * r\n")).toBe(true);
    await page.getByTestId("mode-generate").click();
  });

  it("says why when the key is wrong", async () => {
    await page.getByTestId("key").fill("sk-wrong");
    await page.getByTestId("key").dispatchEvent("change");
    await page.getByTestId("generate").click();
    await expect
      .poll(() => page.getByTestId("error").textContent(), { timeout: 20_000 })
      .toMatch(/^401 invalid_api_key/);
    await page.getByTestId("key").fill(API_KEY);
    await page.getByTestId("key").dispatchEvent("change");
  });
});

describe("the sprout command line", () => {
  const cli = (args: string[], options: { env?: Record<string, string>; input?: string } = {}) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ["--import", "tsx", join(root, "apps/cli/src/bin.ts"), ...args],
        { cwd: root, env: { ...process.env, SPROUT_URL: edge, SPROUT_API_KEY: API_KEY, ...options.env } },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      );
      child.stdin?.end(options.input ?? "");
    });
  const dir = mkdtempSync(join(tmpdir(), "sprout-cli-"));

  it("streams a completion to stdout and a summary to stderr", async () => {
    const result = await cli(["complete", "--max-tokens", "24", "--progress", "def add(a, b):\n"]);
    expect(result.code).toBe(EXIT.ok);
    expect(result.stdout.length).toBeGreaterThan(0);
    expect(result.stderr).toMatch(/block 1 · step 1/); // progress, as the block denoises
    expect(result.stderr).toMatch(/\d+ tokens, \d+ forwards \([\d.]+ tokens\/forward\)/);
  });

  it("reads the prompt from stdin, and infills a file at its marker", async () => {
    const piped = await cli(["complete", "--max-tokens", "8", "--quiet"], { input: "import os\n" });
    expect(piped.code).toBe(EXIT.ok);
    expect(piped.stderr).toBe("");
    const file = join(dir, "area.py");
    writeFileSync(file, "def area(r):\n<FILL>    return pi * r * r\n");
    const filled = await cli(["infill", file, "--max-tokens", "16", "--quiet"]);
    expect(filled.code).toBe(EXIT.ok);
    expect(filled.stdout.startsWith("def area(r):\n")).toBe(true);
    expect(filled.stdout.endsWith("    return pi * r * r\n")).toBe(true);
  });

  it("edits the lines asked for, in place", async () => {
    const file = join(dir, "edit.py");
    const code = "def area(r):\n    pi = 3.14159\n    return pi * r * r\n";
    writeFileSync(file, code);
    const result = await cli(["edit", file, "--lines", "2", "--in-place"]);
    expect(result.code).toBe(EXIT.ok);
    const edited = readFileSync(file, "utf8");
    expect(edited.startsWith("def area(r):\n")).toBe(true);
    expect(edited.endsWith("    return pi * r * r\n")).toBe(true);
    expect(result.stderr).toMatch(/1 edit\(s\)/);
  });

  it("verifies: exit 1 for code that does not parse, with where", async () => {
    const file = join(dir, "broken.py");
    writeFileSync(file, "def f(:\n    return 1\n");
    const result = await cli(["verify", file]);
    expect(result.code).toBe(EXIT.notPlausible);
    expect(result.stdout).toMatch(/^syntax_error at line 1/);
  });

  it("exits with a code scripts can tell apart", async () => {
    expect((await cli(["complete", "x"], { env: { SPROUT_API_KEY: "sk-wrong" } })).code).toBe(EXIT.auth);
    const refused = await cli(["complete", "x", "--threshold", "7"]);
    expect(refused.code).toBe(EXIT.refused);
    expect(refused.stderr).toMatch(/400 invalid_request/);
    expect((await cli(["complete", "x"], { env: { SPROUT_URL: "http://127.0.0.1:9" } })).code).toBe(
      EXIT.failed,
    );
    expect((await cli(["frobnicate"])).code).toBe(EXIT.usage);
    expect((await cli(["verify", join(dir, "missing.py")])).code).toBe(EXIT.usage);
    expect((await cli(["complete", "x"], { env: { SPROUT_API_KEY: "" } })).code).toBe(EXIT.usage);
  });
});
