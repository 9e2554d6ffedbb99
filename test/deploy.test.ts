/**
 * Deployment, checked offline: `wrangler deploy --dry-run` builds the worker (and the playground
 * assets, through wrangler.toml's [build]) exactly as a real deploy would, and lists the bindings
 * it would attach. Nothing is uploaded.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("..", import.meta.url));

describe("wrangler deploy --dry-run", () => {
  it("builds the worker with every binding, small enough for Workers", async () => {
    const out = mkdtempSync(join(tmpdir(), "sprout-deploy-"));
    const { stdout } = await promisify(execFile)(
      join(root, "node_modules/.bin/wrangler"),
      ["deploy", "--dry-run", "--outdir", out],
      {
        cwd: root,
        env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
      },
    );
    for (const binding of ["KEY_LIMITER", "VERIFY_CACHE", "API_KEYS", "JOBS", "JOBS_QUEUE", "DENOISER_URL"]) {
      expect(stdout).toContain(`env.${binding}`);
    }
    expect(stdout).toMatch(/Read \d+ files from the assets directory/);
    const bundle = join(out, "index.js");
    expect(statSync(bundle).size).toBeGreaterThan(10_000);
    // Workers refuse scripts over 3 MB compressed on the free plan (10 MB paid).
    expect(gzipSync(readFileSync(bundle)).length).toBeLessThan(3 * 1024 * 1024);
  }, 120_000);
});
