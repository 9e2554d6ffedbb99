/**
 * `sprout`: Sprout from the command line, against any Sprout edge.
 *
 *   npm run cli -- complete "def fibonacci(n):"          (or the prompt on stdin)
 *   npm run cli -- infill app.py                          (the file holds one <FILL> marker)
 *   npm run cli -- infill --prefix "def f(x):\n" --suffix "    return y\n"
 *   npm run cli -- edit app.py --lines 3-4                (rewrite those lines; none: repair)
 *   npm run cli -- verify app.py
 *
 * The edge is SPROUT_URL (default http://127.0.0.1:8787) and the key SPROUT_API_KEY (or --url,
 * --key). Generated text streams to stdout as each block is final; progress (blocks, steps,
 * tokens per forward) goes to stderr when it is a terminal, or always with --progress. --json
 * prints the native events (or the JSON answer) instead, one per line.
 *
 * Exit codes, for scripts: 0 done; 1 verify found the code not plausible; 2 usage (bad flags,
 * unreadable file, no key); 3 the key was refused (401/403); 4 the request was refused (another
 * 4xx, e.g. 400 invalid or 429 rate-limited); 5 the service failed or could not be reached;
 * 130 interrupted.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type Connection, edit, generate, SproutApiError, verify } from "../../client/src/index.ts";

export const EXIT = {
  ok: 0,
  notPlausible: 1,
  usage: 2,
  auth: 3,
  refused: 4,
  failed: 5,
  interrupted: 130,
} as const;

export class UsageError extends Error {}

const USAGE = `usage: sprout <complete|infill|edit|verify> [options]

  complete [PROMPT]            continue PROMPT (default: stdin)
  infill FILE                  fill the <FILL> marker in FILE (--marker to change it)
  infill --prefix P --suffix S write the middle between P and S
  edit FILE [--lines A-B]      rewrite lines A..B by infilling; without --lines: repair
  verify FILE                  syntax check and the model's score; exit 1 unless plausible

options:
  --url URL          the edge (SPROUT_URL, default http://127.0.0.1:8787)
  --key KEY          API key (SPROUT_API_KEY)
  --model ID         model id (default sprout-tiny)
  --max-tokens N     tokens to write (default 128)
  --threshold T      commit tokens at least this probable (0..1]: lower is faster
  --block-size N     tokens denoised together
  --verify           self-verify a completion (verdict on stderr)
  --in-place         edit: write the result back to FILE
  --json             print the raw events / answer as JSON lines
  --progress         progress on stderr even when it is not a terminal
  --quiet            no progress or summary on stderr
  -h, --help         this text`;

const OPTIONS = {
  url: { type: "string" },
  key: { type: "string" },
  model: { type: "string" },
  "max-tokens": { type: "string" },
  threshold: { type: "string" },
  "block-size": { type: "string" },
  prefix: { type: "string" },
  suffix: { type: "string" },
  marker: { type: "string", default: "<FILL>" },
  lines: { type: "string" },
  verify: { type: "boolean" },
  "in-place": { type: "boolean" },
  json: { type: "boolean" },
  progress: { type: "boolean" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

export interface Io {
  env: Record<string, string | undefined>;
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  readStdin: () => Promise<string>;
  signal?: AbortSignal;
}

function number(values: Values, name: "max-tokens" | "threshold" | "block-size"): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new UsageError(`--${name} takes a number, not ${JSON.stringify(raw)}`);
  return value;
}

function readFile(path: string | undefined, what: string): string {
  if (!path) throw new UsageError(`${what} needs a FILE`);
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

/** "3-5" (1-based, inclusive) → the character range of those lines, their newline included. */
export function lineRange(code: string, spec: string): { start: number; end: number } {
  const match = /^(\d+)(?:-(\d+))?$/.exec(spec);
  const first = Number(match?.[1]);
  const last = Number(match?.[2] ?? match?.[1]);
  const lines = code.split(/(?<=\n)/);
  if (!match || first < 1 || last < first || last > lines.length) {
    throw new UsageError(`--lines takes A-B within 1-${lines.length}, not ${JSON.stringify(spec)}`);
  }
  const start = lines.slice(0, first - 1).join("").length;
  return { start, end: start + lines.slice(first - 1, last).join("").length };
}

/** Streams one generation to stdout; progress and a summary to stderr. */
async function stream(
  connection: Connection,
  request: Parameters<typeof generate>[1],
  values: Values,
  io: Io,
): Promise<number> {
  const progress = !values.quiet && (values.progress || io.stderr.isTTY === true);
  const started = performance.now();
  let plausible = true;
  let line = "";
  const status = (text: string) => {
    if (!progress) return;
    io.stderr.write(`\r\x1b[2K${text}`);
    line = text;
  };
  const clear = () => {
    if (line) io.stderr.write("\r\x1b[2K");
    line = "";
  };
  for await (const event of generate(connection, { ...request, emit_steps: progress }, io.signal)) {
    if (values.json) {
      io.stdout.write(`${JSON.stringify(event)}\n`);
    }
    if (event.type === "step") {
      status(`block ${event.block + 1} · step ${event.step} · ${event.remaining} masked`);
    } else if (event.type === "block") {
      clear();
      if (!values.json) io.stdout.write(event.text);
    } else if (event.type === "verify") {
      plausible = event.verdict === "plausible";
      if (!values.quiet && !values.json) {
        io.stderr.write(
          `\nverify: ${event.verdict} (score ${event.score.toFixed(3)}${event.cached ? ", cached" : ""})`,
        );
      }
    } else if (event.type === "done" && !values.quiet && !values.json) {
      const { completion_tokens: tokens, forward_passes: forwards } = event.usage;
      const seconds = (performance.now() - started) / 1000;
      io.stderr.write(
        `\n${tokens} tokens, ${forwards} forwards (${(tokens / Math.max(1, forwards)).toFixed(2)} tokens/forward), ` +
          `${seconds.toFixed(2)} s, ${event.finish_reason}\n`,
      );
    }
  }
  clear();
  return plausible ? EXIT.ok : EXIT.notPlausible;
}

export async function main(argv: string[], io: Io): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    io.stderr.write(`sprout: ${(error as Error).message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    (values.help ? io.stdout : io.stderr).write(`${USAGE}\n`);
    return values.help ? EXIT.ok : EXIT.usage;
  }
  try {
    const key = values.key ?? io.env.SPROUT_API_KEY;
    if (!key) throw new UsageError("no API key: set SPROUT_API_KEY or pass --key (npm start prints one)");
    const connection: Connection = {
      url: (values.url ?? io.env.SPROUT_URL ?? "http://127.0.0.1:8787").replace(/\/+$/, ""),
      key,
      model: values.model,
    };
    const dial = {
      max_tokens: number(values, "max-tokens") ?? 128,
      threshold: number(values, "threshold"),
      block_size: number(values, "block-size"),
      verify: values.verify,
    };
    switch (command) {
      case "complete": {
        const prompt = rest.length ? rest.join(" ") : await io.readStdin();
        if (!prompt) throw new UsageError("complete needs a PROMPT (an argument or stdin)");
        return await stream(connection, { prompt, ...dial }, values, io);
      }
      case "infill": {
        let prefix = values.prefix;
        let suffix = values.suffix;
        if (rest[0]) {
          const text = readFile(rest[0], "infill");
          const parts = text.split(values.marker);
          if (parts.length !== 2) {
            throw new UsageError(
              `${rest[0]} must hold the marker ${values.marker} exactly once (it holds it ${parts.length - 1} times)`,
            );
          }
          [prefix, suffix] = parts;
          if (!values.json) io.stdout.write(prefix ?? "");
          const code = await stream(connection, { prompt: prefix ?? "", suffix, ...dial }, values, io);
          if (!values.json) io.stdout.write(suffix ?? "");
          return code;
        }
        if (prefix === undefined || suffix === undefined)
          throw new UsageError("infill needs a FILE, or --prefix and --suffix");
        return await stream(connection, { prompt: prefix, suffix, ...dial }, values, io);
      }
      case "edit": {
        const code = readFile(rest[0], "edit");
        const regions = values.lines ? [lineRange(code, values.lines)] : undefined;
        const result = await edit(
          connection,
          {
            code,
            regions,
            threshold: dial.threshold,
            max_tokens: number(values, "max-tokens"),
          },
          io.signal,
        );
        if (values.json) io.stdout.write(`${JSON.stringify(result)}\n`);
        else if (values["in-place"]) writeFileSync(rest[0] as string, result.code);
        else io.stdout.write(result.code);
        if (!values.quiet && !values.json) {
          io.stderr.write(`${result.edits.length} edit(s), ${result.usage.forward_passes} forwards\n`);
          for (const change of result.edits) {
            io.stderr.write(`  ${JSON.stringify(change.before)} → ${JSON.stringify(change.after)}\n`);
          }
        }
        return EXIT.ok;
      }
      case "verify": {
        const code = readFile(rest[0], "verify");
        const result = await verify(connection, { code }, io.signal);
        if (values.json) io.stdout.write(`${JSON.stringify(result)}\n`);
        else {
          const where = result.syntax.ok
            ? ""
            : ` at line ${result.syntax.error.line}: ${result.syntax.error.message}`;
          io.stdout.write(
            `${result.verdict}${where} (score ${result.score.toFixed(3)}, ${result.bits_per_token.toFixed(2)} bits/token)\n`,
          );
        }
        return result.verdict === "plausible" ? EXIT.ok : EXIT.notPlausible;
      }
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (error) {
    if (io.signal?.aborted) return EXIT.interrupted;
    if (error instanceof UsageError) {
      io.stderr.write(`sprout: ${error.message}\n`);
      return EXIT.usage;
    }
    if (error instanceof SproutApiError) {
      io.stderr.write(`\nsprout: ${error.status || "network"} ${error.code}: ${error.message}\n`);
      if (error.status === 401 || error.status === 403) return EXIT.auth;
      if (error.status >= 400 && error.status < 500) return EXIT.refused;
      return EXIT.failed;
    }
    throw error;
  }
}
