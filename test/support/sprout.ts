/** `npm start` as a child process, for the end-to-end tests and the edge benchmark. */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

export interface Started {
  child: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output: () => string;
  exited: Promise<number | null>;
}

/** A port free on loopback right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Starts `scripts/start.ts` with these environment variables added (ports, key, secret). */
export function startSprout(env: Record<string, string>): Started {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d) => {
    output += d;
  });
  child.stderr?.on("data", (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Resolves once it printed that it is ready; throws with its output if it exits or takes too long. */
export async function whenReady(sprout: Started, seconds = 150): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!sprout.output().includes("Sprout is ready")) {
    if (Date.now() > deadline || sprout.child.exitCode !== null) {
      throw new Error(`npm start did not become ready:\n${sprout.output()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
