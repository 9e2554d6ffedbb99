/** The `sprout` command: runs main.ts's `main` on this process's arguments and streams. */
import { main } from "./main.ts";

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return "";
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const controller = new AbortController();
process.once("SIGINT", () => controller.abort()); // a second Ctrl-C kills as usual
process.exitCode = await main(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  readStdin,
  signal: controller.signal,
});
