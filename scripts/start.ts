/**
 * `npm start`: the whole system on this machine — a denoiser node serving the models
 * `SPROUT_MODELS` names (comma-separated model directories; default: the shipped
 * models/sprout-tiny) and the edge worker in workerd (wrangler dev) in front of it, which serves
 * every model the node serves. Prints the models, the URL and an API key, and stops everything on
 * Ctrl-C. The node reads the rest of its settings from this environment too (SPROUT_MAX_CONTEXT,
 * SPROUT_THREADS…: apps/denoiser/src/main.ts).
 *
 *   SPROUT_MODELS     model directories to serve, comma-separated (SPROUT_MODEL_DIR: one)
 *   SPROUT_API_KEY    use this key instead of a fresh random one
 *   SPROUT_EDGE_PORT  edge port (default 8787); SPROUT_NODE_PORT  node port (default 8788)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { modelDirs } from "../apps/denoiser/src/config.ts";
import { NodeReadiness } from "../protocol/src/index.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const host = "127.0.0.1";
const edgePort = Number(process.env.SPROUT_EDGE_PORT ?? 8787);
const nodePort = Number(process.env.SPROUT_NODE_PORT ?? 8788);
const givenKey = process.env.SPROUT_API_KEY;
const apiKey = givenKey || `sk-sprout-${randomBytes(24).toString("base64url")}`;
// The secret the edge presents to the node; set SPROUT_NODE_SECRET to call the node yourself (bench/edge.ts).
const nodeSecret = process.env.SPROUT_NODE_SECRET || randomBytes(32).toString("hex");

const children: ChildProcess[] = [];
const secretsDir = mkdtempSync(join(tmpdir(), "sprout-"));
let stopping = false;

/** Stops both children (each leads its own process group: wrangler runs workerd beneath it),
 * waits up to 5 s for them to exit, then ends this process with `code`. */
function stop(code: number): void {
  if (stopping) return;
  stopping = true;
  process.exitCode = code;
  // Signal whole groups even when their leader has exited: workerd may outlive wrangler.
  const signalGroups = (signal: NodeJS.Signals) => {
    for (const child of children) {
      if (child.pid) {
        try {
          process.kill(-child.pid, signal);
        } catch {} // ESRCH: that group is gone
      }
    }
  };
  signalGroups("SIGTERM");
  rmSync(secretsDir, { recursive: true, force: true });
  const exited = children.map((child) =>
    !child.pid || child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise((r) => child.once("exit", r)),
  );
  const timeout = new Promise((r) => setTimeout(r, 5000).unref());
  void Promise.race([Promise.all(exited), timeout]).then(() => {
    signalGroups("SIGKILL");
    process.exit(code);
  });
}

function launch(name: string, command: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ["ignore", "inherit", "inherit"],
  });
  child.on("error", (error) => {
    console.error(`\ncould not start ${name}: ${error.message}`);
    stop(1);
  });
  child.on("exit", (code, signal) => {
    if (stopping) return;
    console.error(`\n${name} stopped unexpectedly (${signal ?? `exit ${code}`}); shutting down.`);
    stop(1);
  });
  children.push(child);
  return child;
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
      .once("error", () => resolve(false))
      .once("listening", () => server.close(() => resolve(true)))
      .listen(port, host);
  });
}

/** Waits until `url` answers 200 (an error page while the worker builds does not count). */
async function waitFor(url: string, what: string, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline && !stopping) {
    try {
      const response = await fetch(url);
      await response.body?.cancel();
      if (response.status === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  if (!stopping) throw new Error(`${what} did not answer at ${url} within ${seconds} s`);
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => stop(0));

for (const [port, what, variable] of [
  [edgePort, "edge", "SPROUT_EDGE_PORT"],
  [nodePort, "denoiser node", "SPROUT_NODE_PORT"],
] as const) {
  if (!(await portIsFree(port))) {
    console.error(`Port ${port} (${what}) is taken. Stop what uses it, or set ${variable} to another port.`);
    process.exit(1);
  }
}

// What the node will serve: the directories SPROUT_MODELS (or SPROUT_MODEL_DIR) names, else the
// shipped model; a wrong setting stops here, with the node's own message.
let dirs: string[];
try {
  dirs = modelDirs(process.env, join(root, "models/sprout-tiny"));
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}

const started = performance.now();
launch("denoiser node", process.execPath, ["--import", "tsx", "apps/denoiser/src/main.ts"], {
  SPROUT_NODE_SECRET: nodeSecret,
  // The node's default is the shipped model too; named here so that both read one list.
  ...(process.env.SPROUT_MODEL_DIR ? {} : { SPROUT_MODELS: dirs.join(",") }),
  PORT: String(nodePort),
  HOST: host,
});
// Secrets reach wrangler through a private file, never through its command line.
const envFile = join(secretsDir, "edge.env");
const keyHash = createHash("sha256").update(apiKey).digest("hex");
// The edge names no model: it serves what the node's /readyz lists (and keys its verification
// cache by each model's graph sha256, so a new model never gets old verdicts).
const denoiserUrl = `http://${host}:${nodePort}`;
writeFileSync(
  envFile,
  // Local development only: webhooks may point at loopback receivers over http.
  `DENOISER_SECRET=${nodeSecret}\nAPI_KEY_HASHES=${keyHash}\nDENOISER_URL=${denoiserUrl}\nALLOW_LOOPBACK_WEBHOOKS=1\n`,
  {
    mode: 0o600,
  },
);
launch(
  "edge (wrangler dev)",
  join(root, "node_modules/.bin/wrangler"),
  [
    "dev",
    "--ip",
    host,
    "--port",
    String(edgePort),
    "--env-file",
    envFile,
    "--show-interactive-dev-session=false",
  ],
  // No telemetry, and no fetch of the `request.cf` placeholder from the internet.
  { WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
);

try {
  await waitFor(`${denoiserUrl}/readyz`, "the denoiser node", 120);
  await waitFor(`http://${host}:${edgePort}/openapi.json`, "the edge", 120);
} catch (error) {
  console.error((error as Error).message);
  stop(1);
}
/** The models the node serves, as its /readyz lists them (what the edge's /v1/models lists too). */
async function servedModels(): Promise<{ name: string; context_length?: number }[]> {
  const ready = NodeReadiness.safeParse(
    await (await fetch(`${denoiserUrl}/readyz`)).json().catch(() => null),
  );
  return ready.success ? ready.data.models : dirs.map((dir) => ({ name: dir }));
}

if (!stopping) {
  const edge = `http://${host}:${edgePort}`;
  const models = await servedModels();
  const first = models[0]?.name ?? "sprout-tiny";
  const modelLines = models
    .map(
      (m, i) =>
        `    ${m.name}${m.context_length ? ` (context ${m.context_length})` : ""}${i === 0 ? "   default" : ""}`,
    )
    .join("\n");
  const keyLine = givenKey ? "the key in SPROUT_API_KEY" : `${apiKey}   (set SPROUT_API_KEY to keep one key)`;
  const exportLine = givenKey ? 'export KEY="$SPROUT_API_KEY"' : `export KEY=${apiKey}`;
  console.log(`
Sprout is ready (${((performance.now() - started) / 1000).toFixed(1)} s).
  playground:               ${edge}/${givenKey ? "" : `#key=${apiKey}`}
  edge (OpenAI-compatible): ${edge}/v1
  denoiser node:            ${denoiserUrl}
  API key:                  ${keyLine}
  models (GET /v1/models):
${modelLines}

  ${exportLine}
  curl ${edge}/v1/completions -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
    -d '{"model": "${first}", "prompt": "def fibonacci(n):", "max_tokens": 64, "stream": true}'

Ctrl-C stops everything.`);
}
