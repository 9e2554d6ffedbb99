/**
 * Starts a denoiser node. It listens at once (/healthz answers, /readyz says 503 until every
 * model is loaded and verified against its sha256), then loads the models.
 *   SPROUT_NODE_SECRET          shared secret the edge presents (required)
 *   SPROUT_MODELS               model directories, comma-separated (default: the shipped model);
 *                               a request names its model, the first serves requests naming none
 *   SPROUT_MODEL_DIR            one model directory (the older name; not with SPROUT_MODELS)
 *   SPROUT_MAX_CONTEXT          tokens of context a request may fill, capping every model's manifest
 *                               context_length (default: each manifest's); /readyz shows the effective one
 *   SPROUT_EXECUTION_PROVIDER   onnxruntime execution provider: cpu (default), cuda (needs the CUDA
 *                               build of onnxruntime-node) or webgpu (needs libvulkan.so.1 and a Vulkan
 *                               driver); a GPU provider that cannot start stops the node at startup
 *                               with one line saying what is missing (apps/denoiser/README.md)
 *   SPROUT_THREADS              intra-op threads for the CPU provider (default: onnxruntime's choice)
 *   SPROUT_MAX_BATCH            sequences in one forward pass, requests holding a slot (default 16; 1: no batching)
 *   SPROUT_MAX_BATCH_TOKENS     token slots per forward pass, padding included (default 512)
 *   SPROUT_MAX_QUEUE            requests waiting for a slot before 503 + Retry-After (default 32)
 *   SPROUT_PAST_BUFFER_MB       MiB of batched past keys/values each model keeps for reuse between
 *                               steps (default 256; models/src/kv.ts): bounds a large model's memory
 *   PORT / HOST                 where to listen (default 8788 on 127.0.0.1)
 */
import { serve } from "@hono/node-server";
import { loadModel, SHIPPED_MODEL_DIR } from "../../../models/src/index.ts";
import {
  checkExecutionProvider,
  type ExecutionProvider,
  parseExecutionProvider,
  sessionProviders,
} from "../../../models/src/providers.ts";
import { createDenoiserApp } from "./app.ts";
import { maxContext, modelDirs } from "./config.ts";

const env = process.env;
const secret = env.SPROUT_NODE_SECRET;
if (!secret) {
  console.error("SPROUT_NODE_SECRET is not set: the node refuses to start without the edge's shared secret");
  process.exit(2);
}
/** A positive integer from the environment, or undefined when unset; exits on anything else. */
function count(name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name} must be a positive integer, not ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}
function mebibytes(mib: number | undefined): number | undefined {
  return mib === undefined ? undefined : mib * 2 ** 20;
}
let provider: ExecutionProvider;
try {
  provider = parseExecutionProvider(env.SPROUT_EXECUTION_PROVIDER);
  // A GPU provider that cannot start here stops the node now, in one line (never a CPU fallback).
  await checkExecutionProvider(provider, env);
} catch (error) {
  console.error(`denoiser node: ${(error as Error).message}`);
  process.exit(2);
}
const port = Number(env.PORT ?? 8788);
const hostname = env.HOST ?? "127.0.0.1";
let dirs: string[];
let contextCap: number | undefined;
try {
  dirs = modelDirs(env, SHIPPED_MODEL_DIR);
  contextCap = maxContext(env);
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}
const loadOptions = {
  maxContext: contextCap,
  executionProviders: sessionProviders(provider),
  intraOpNumThreads: count("SPROUT_THREADS"),
  pastBufferBytes: mebibytes(count("SPROUT_PAST_BUFFER_MB")),
};
const loadings = dirs.map((dir) => loadModel(dir, loadOptions));
// Every loading is awaited (one failing must not leave another's session unreleased at exit).
const loaded = Promise.allSettled(loadings);
const app = createDenoiserApp({
  models: loadings,
  secret,
  scheduler: {
    maxBatch: count("SPROUT_MAX_BATCH"),
    maxBatchTokens: count("SPROUT_MAX_BATCH_TOKENS"),
    maxQueue: count("SPROUT_MAX_QUEUE"),
  },
});
const server = serve({ fetch: app.fetch, port, hostname }, (info) => {
  console.log(
    `denoiser node: listening on http://${hostname}:${info.port} (${provider}), loading ${dirs.join(", ")}`,
  );
});
server.on("error", (error) => {
  console.error(`denoiser node could not listen on ${hostname}:${port}: ${error.message}`);
  process.exit(1);
});
Promise.all(loadings).then(
  async (models) => {
    await app.ready; // the app has capped each model's context by now
    console.log(
      `denoiser node: ${models.map((m) => `${m.manifest.name} (context ${m.manifest.context_length})`).join(", ")} loaded and verified; ready`,
    );
  },
  () => {}, // reported by the app's /readyz and log
);
// Stop accepting, end what is in flight, then release the model (never under a running forward).
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), 10_000).unref();
    const closed = new Promise((resolve) => server.close(resolve)); // resolves once every response has ended
    await app.drain();
    await closed;
    for (const outcome of await loaded) {
      if (outcome.status === "fulfilled") await outcome.value.close().catch(() => {});
    }
    process.exit(0);
  });
}
