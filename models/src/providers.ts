/**
 * Which onnxruntime execution provider runs a node's graphs (`SPROUT_EXECUTION_PROVIDER`), and
 * the check, at startup, that it can start here.
 *
 * - `cpu`: the default; onnxruntime-node's package carries it.
 * - `cuda`: NVIDIA GPUs. onnxruntime-node's CUDA 12 provider (`libonnxruntime_providers_cuda.so`,
 *   `libonnxruntime_providers_shared.so`) is not in its npm package: its install script fetches it
 *   when `ONNXRUNTIME_NODE_INSTALL=cuda12` (the Dockerfile's CUDA build), and it needs the CUDA 12
 *   and cuDNN 9 runtime libraries.
 * - `webgpu`: any GPU with a Vulkan driver. onnxruntime-node's Linux x64 binary holds this
 *   provider (Dawn on Vulkan); it needs the Vulkan loader (`libvulkan.so.1`, Debian's
 *   `libvulkan1`) and a Vulkan driver that offers an adapter (NVIDIA's own, Mesa's).
 *
 * A GPU provider that cannot start is an error the node reports at startup in one line, naming
 * the provider and what is missing, never a silent fall back to the CPU. The GPU provider comes
 * first in the session's list with the CPU after it: that CPU entry only runs the operators the
 * GPU provider has no kernel for (onnxruntime's placement), it is not a fallback for a provider
 * that failed to start (onnxruntime refuses to create such a session).
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const EXECUTION_PROVIDERS = ["cpu", "cuda", "webgpu"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** A provider that cannot be used here; the message is one line for the operator. */
export class ExecutionProviderError extends Error {
  override name = "ExecutionProviderError";
}

/** `SPROUT_EXECUTION_PROVIDER`'s value (unset or empty: cpu). */
export function parseExecutionProvider(raw: string | undefined): ExecutionProvider {
  const value = raw === undefined || raw === "" ? "cpu" : raw;
  if ((EXECUTION_PROVIDERS as readonly string[]).includes(value)) return value as ExecutionProvider;
  throw new ExecutionProviderError(
    `SPROUT_EXECUTION_PROVIDER must be one of ${EXECUTION_PROVIDERS.join(", ")}, not ${JSON.stringify(raw)}`,
  );
}

/** The session's provider list: the GPU provider, then the CPU for operators it has no kernel for. */
export function sessionProviders(provider: ExecutionProvider): string[] {
  return provider === "cpu" ? ["cpu"] : [provider, "cpu"];
}

const require = createRequire(import.meta.url);
/** The pick graph: small, shipped, and run once by the check. */
const PROBE_GRAPH = fileURLToPath(new URL("./pick.onnx", import.meta.url));
const PROBE_TIMEOUT_MS = 90_000;

/** onnxruntime-node's native folder for this platform (where the CUDA provider must lie). */
export function onnxruntimeBinaryDir(): string {
  const root = dirname(dirname(require.resolve("onnxruntime-node")));
  return join(root, "bin", "napi-v6", process.platform, process.arch);
}

/** The child that starts the provider: a session on the pick graph, run once, "ok" on stdout. */
const PROBE = `
const ort = require(process.argv[1]);
(async () => {
  const session = await ort.InferenceSession.create(process.argv[2], { executionProviders: [process.argv[3]] });
  const vocab = 8;
  await session.run({
    logits: new ort.Tensor("float32", new Float32Array(2 * vocab).fill(1), [2, vocab]),
    bias: new ort.Tensor("float32", new Float32Array(vocab), [vocab]),
  });
  await session.release();
  process.stdout.write("ok\\n");
})().catch((error) => {
  process.stdout.write("error: " + String(error && error.message ? error.message : error).split("\\n")[0] + "\\n");
  process.exitCode = 1;
});
`;

/**
 * Starts `provider` in a child process (its native libraries and the GPU's driver print to
 * stderr, and a failed start can leave native state behind: neither reaches this process) and
 * runs one small graph on it. Resolves when it works; rejects with an ExecutionProviderError
 * naming what is missing. The CPU provider needs no check.
 */
export async function checkExecutionProvider(
  provider: ExecutionProvider,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  if (provider === "cpu") return;
  const output = await new Promise<{ ok: boolean; text: string; timedOut: boolean }>((resolve) => {
    const child = spawn(
      process.execPath,
      ["-e", PROBE, require.resolve("onnxruntime-node"), PROBE_GRAPH, provider],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    let text = "";
    child.stdout.on("data", (chunk) => {
      text += chunk;
    });
    child.stderr.on("data", (chunk) => {
      text += chunk;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, PROBE_TIMEOUT_MS);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0 && /^ok$/m.test(text), text, timedOut });
    });
  });
  if (output.ok) return;
  throw new ExecutionProviderError(
    output.timedOut
      ? `SPROUT_EXECUTION_PROVIDER=${provider}: the ${provider} provider did not start within ${PROBE_TIMEOUT_MS / 1000} s`
      : describeProviderFailure(provider, output.text, {
          cudaProviderInstalled: cudaProviderInstalled(),
          vulkanLoaderFound: vulkanLoaderFound(env),
        }),
  );
}

export interface ProviderFacts {
  /** libonnxruntime_providers_cuda.so lies beside onnxruntime-node's binary. */
  cudaProviderInstalled: boolean;
  /** libvulkan.so.1 is on the library path (LD_LIBRARY_PATH or the linker's cache). */
  vulkanLoaderFound: boolean;
}

/** What onnxruntime's (and Dawn's) output says went wrong, as one line for the operator. */
export function describeProviderFailure(
  provider: ExecutionProvider,
  output: string,
  facts: ProviderFacts,
): string {
  const prefix = `SPROUT_EXECUTION_PROVIDER=${provider}:`;
  const missingLibrary = /([\w.+-]+\.so(?:\.\d+)*): cannot open shared object file/.exec(output)?.[1];
  const reported = /^error: (.*)$/m.exec(output)?.[1]?.trim() ?? output.trim().split("\n").at(-1) ?? "";
  const detail = reported.length > 300 ? `${reported.slice(0, 300)}…` : reported;
  if (provider === "cuda") {
    if (!facts.cudaProviderInstalled) {
      return `${prefix} onnxruntime-node's CUDA provider is not installed (no libonnxruntime_providers_cuda.so in ${onnxruntimeBinaryDir()}); build the CUDA image (apps/denoiser/Dockerfile, --build-arg EP=cuda12) or install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12`;
    }
    if (missingLibrary && !missingLibrary.startsWith("libonnxruntime_providers")) {
      return `${prefix} the CUDA provider cannot load ${missingLibrary} (it needs the CUDA 12 and cuDNN 9 runtime libraries on the library path)`;
    }
    if (
      /no CUDA-capable device|cudaErrorNoDevice|CUDA driver version is insufficient|cudaErrorInsufficientDriver/i.test(
        output,
      )
    ) {
      return `${prefix} no usable CUDA device (is the GPU passed to the container, e.g. docker run --gpus all, and is its driver new enough?): ${detail}`;
    }
    return `${prefix} the CUDA provider did not start: ${detail}`;
  }
  if (provider === "webgpu") {
    if (!facts.vulkanLoaderFound || /libvulkan\.so\.1: cannot open shared object file/.test(output)) {
      return `${prefix} libvulkan.so.1 (the Vulkan loader) is missing: install it (Debian/Ubuntu: libvulkan1) and the GPU's Vulkan driver`;
    }
    if (/No supported adapters|Failed to get a WebGPU adapter/.test(output)) {
      // Dawn says why it turned an adapter down, in a warning of its own.
      const why = /Warning: (?!.*artificially reduced)(.*required.*)$/m.exec(output)?.[1]?.trim();
      return `${prefix} no WebGPU adapter: the Vulkan loader is there but no Vulkan driver offers a usable GPU (install the GPU's Vulkan driver: NVIDIA's ICD, or Mesa's; VK_DRIVER_FILES names driver manifests)${why ? `; Dawn: ${why}` : ""}`;
    }
    return `${prefix} the WebGPU provider did not start: ${detail}`;
  }
  return `${prefix} ${detail}`;
}

function cudaProviderInstalled(): boolean {
  try {
    return existsSync(join(onnxruntimeBinaryDir(), "libonnxruntime_providers_cuda.so"));
  } catch {
    return false;
  }
}

/** Whether the dynamic linker would find libvulkan.so.1: LD_LIBRARY_PATH, then the usual folders. */
function vulkanLoaderFound(env: NodeJS.ProcessEnv): boolean {
  const folders = [
    ...(env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
    "/usr/local/lib",
  ];
  if (folders.some((folder) => existsSync(join(folder, "libvulkan.so.1")))) return true;
  // Folders the linker's configuration adds (/etc/ld.so.conf.d/*.conf), one level deep.
  try {
    for (const file of readdirSync("/etc/ld.so.conf.d")) {
      if (!file.endsWith(".conf")) continue;
      for (const line of readFileSync(join("/etc/ld.so.conf.d", file), "utf8").split("\n")) {
        const folder = line.trim();
        if (folder.startsWith("/") && existsSync(join(folder, "libvulkan.so.1"))) return true;
      }
    }
  } catch {
    // no /etc/ld.so.conf.d
  }
  return false;
}
