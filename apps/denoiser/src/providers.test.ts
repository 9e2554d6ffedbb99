/**
 * The node with a GPU execution provider that cannot start here: it stops at startup, status 2,
 * with one line naming the provider and what is missing (never a stack trace, never the CPU).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { onnxruntimeBinaryDir } from "../../../models/src/providers.ts";

const root = fileURLToPath(new URL("../../..", import.meta.url));

function startNode(env: Record<string, string>) {
  return spawnSync(process.execPath, ["--import", "tsx", "apps/denoiser/src/main.ts"], {
    cwd: root,
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, SPROUT_NODE_SECRET: "node-secret", PORT: "0", ...env },
  });
}

describe("denoiser node: execution provider at startup", () => {
  it("stops in one line when WebGPU finds no adapter (no Vulkan driver, or no loader)", () => {
    const run = startNode({
      SPROUT_EXECUTION_PROVIDER: "webgpu",
      VK_DRIVER_FILES: "/nonexistent/icd.json",
      VK_ICD_FILENAMES: "/nonexistent/icd.json",
    });
    expect(run.status).toBe(2);
    expect(run.stdout).not.toMatch(/listening/);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(
      /^denoiser node: SPROUT_EXECUTION_PROVIDER=webgpu: (libvulkan\.so\.1 \(the Vulkan loader\) is missing|no WebGPU adapter)/,
    );
  });

  it.skipIf(existsSync(join(onnxruntimeBinaryDir(), "libonnxruntime_providers_cuda.so")))(
    "stops in one line when onnxruntime-node's CUDA provider is not installed",
    () => {
      const run = startNode({ SPROUT_EXECUTION_PROVIDER: "cuda" });
      expect(run.status).toBe(2);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toMatch(
        /^denoiser node: SPROUT_EXECUTION_PROVIDER=cuda: onnxruntime-node's CUDA provider is not installed/,
      );
    },
  );

  it("refuses an unknown provider", () => {
    const run = startNode({ SPROUT_EXECUTION_PROVIDER: "tpu" });
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toBe(
      'denoiser node: SPROUT_EXECUTION_PROVIDER must be one of cpu, cuda, webgpu, not "tpu"',
    );
  });
});
