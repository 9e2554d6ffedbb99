/**
 * Starts a denoiser node.
 *   SPROUT_NODE_SECRET  shared secret the edge presents (required)
 *   SPROUT_MODEL_DIR    model directory (default: the shipped model)
 *   PORT / HOST         where to listen (default 8788 on 127.0.0.1)
 */
import { serve } from "@hono/node-server";
import { loadModel, SHIPPED_MODEL_DIR } from "../../../models/src/index.ts";
import { createDenoiserApp } from "./app.ts";

const secret = process.env.SPROUT_NODE_SECRET;
if (!secret) {
  console.error("SPROUT_NODE_SECRET is not set: the node refuses to start without the edge's shared secret");
  process.exit(2);
}
const port = Number(process.env.PORT ?? 8788);
const hostname = process.env.HOST ?? "127.0.0.1";
const model = await loadModel(process.env.SPROUT_MODEL_DIR ?? SHIPPED_MODEL_DIR);
const app = createDenoiserApp({ model, secret });
const server = serve({ fetch: app.fetch, port, hostname }, (info) => {
  console.log(`denoiser node: ${model.manifest.name} on http://${hostname}:${info.port}`);
});
server.on("error", (error) => {
  console.error(`denoiser node could not listen on ${hostname}:${port}: ${error.message}`);
  process.exit(1);
});
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
    await model.close();
    process.exit(0);
  });
}
