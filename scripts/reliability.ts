/**
 * `npm run reliability`: runs the reliability suite (the tests below, all part of `npm test`)
 * with vitest's JSON reporter and writes docs/RELIABILITY.md from the results and from the last
 * load benchmark (bench/results/load.json, `npm run bench:load`): each test, its bounds, its
 * outcome and time, and the load figures. The document is the record of one dated run; the
 * suite's own run in `npm test` is what catches a regression. scripts/reliability.test.ts checks
 * the generator on a small synthetic run.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/** One area of the document: its bounds and the tests (file, and a title filter) that prove it. */
export interface Area {
  area: string;
  bounds: string;
  tests: [file: string, title?: RegExp][];
}

/** What the document covers. */
export const AREAS: Area[] = [
  {
    area: "Fuzzing: every public route, any input",
    bounds:
      "fast-check, fixed seed 8. Edge (workerd, the real node behind it): 40 bodies per POST route (a valid body with one field replaced by a hostile value — wrong types, ±1e308, 2^53, lone surrogates, control-token spellings, 100 kB strings — or removed, or an extra field, or any JSON), 60 non-UTF-8 bodies, 40 content types, deep JSON (100,000 nested arrays, 50,000 nested objects), bodies over 1 MiB, 60 ids on GET/DELETE routes; 25 prompts spelling control tokens. Node: 120 bodies on its three routes. Every answer read to its end within 30 s (a hang fails), never a 5xx, every error JSON with a code and a message.",
    tests: [
      ["apps/edge/src/fuzz.test.ts"],
      ["apps/denoiser/src/reliability.test.ts", /any body/],
      ["models/src/tokenizer.test.ts", /control token/],
    ],
  },
  {
    area: "Auth attacks",
    bounds:
      "No key, malformed headers (empty, `Bearer` alone, Basic, two keys, 64 KiB), the key's own sha256, 50 forged keys of the issued shape, revoked, expired, a key in the query string under four names (refused even beside a valid header), missing scopes; no error repeats the key. The node: 80 requests with anything but its secret in the header, on every work route. Keys are compared as sha256 digests in constant time; `npm run bench:load` measures refusal time for near and far misses (below).",
    tests: [
      ["apps/edge/src/attacks.test.ts"],
      ["apps/denoiser/src/reliability.test.ts", /secret/],
      ["test/e2e.test.ts", /keys in KV|wrong key|never prints/],
    ],
  },
  {
    area: "Webhook URL abuse",
    bounds:
      "Private, loopback, link-local, metadata, CGNAT, IPv6 unique/link/site-local and multicast, IPv4-mapped/-compatible/-translated, NAT64, 6to4, Teredo, decimal/octal/hex/shortened/full-width spellings, trailing dots, credentials, non-https; 500 random private addresses in 7 spellings, 300 public ones. Deliveries: redirects not followed, a silent receiver cut at the timeout (15 s in production, 0.3 s in the test), line breaks in a URL, oversized registrations.",
    tests: [
      ["apps/edge/src/webhook-url.test.ts"],
      ["apps/edge/src/webhooks.test.ts", /redirect|never answers|headers|refuses/],
    ],
  },
  {
    area: "Faults",
    bounds:
      "A node killed after the second block of a seeded, sampled generation (the pool resumes on another); a node sending garbage, off-protocol events or a cut stream; a silent node (failover); every node down (fast 503); a full node (503 + Retry-After); draining; the queue consumer dying after a job ran and after a receiver's 2xx, with the receiver down for 6 attempts per delivery (over 5 minutes of simulated backoff); a model file with one flipped bit.",
    tests: [
      ["adapters/src/pool.test.ts"],
      ["adapters/src/denoiser-node.test.ts", /broken|garbage|off-protocol|cut|overloaded|nobody/],
      ["apps/edge/src/webhooks.test.ts", /dying consumer|delivers each job/],
      ["apps/denoiser/src/reliability.test.ts", /corrupted|flipped|sha256/],
      ["apps/denoiser/src/app.test.ts", /ready|Retry-After|drains/],
      ["apps/edge/src/app.test.ts", /down|mid-stream|cancellation/],
    ],
  },
  {
    area: "Metering and limits",
    bounds:
      "A key limited to 20 tokens per minute gets 429 with Retry-After on completions, chat, generate, edits (regions and repair) and verify once its minute is spent (a cached verification books nothing); a key limited to one request at once holds its lease while a stream runs and gets it back when the stream ends, when the client leaves and when the backend fails before the stream starts; the limiter (a Durable Object) keeps its windows in storage, so a fresh instance over the same storage still refuses; the node's queue bound holds for 64 concurrent edits and 64 concurrent verifications (some 503 with Retry-After, the rest 200).",
    tests: [
      ["apps/edge/src/limits.test.ts"],
      ["apps/edge/src/limiter.test.ts"],
      ["apps/edge/src/metered.test.ts"],
      ["apps/denoiser/src/app.test.ts", /queue bound|client goes away/],
    ],
  },
  {
    area: "Load (CI form)",
    bounds:
      "6 concurrent streaming generations through the edge (workerd) for 8 s after a 3 s warm-up: no failure, every stream complete, process-tree memory growth under 100 MB (the local runtime's warm-up alone is about 100 MB, hence the warm-up first). The full run is `npm run bench:load` (figures below).",
    tests: [["test/e2e.test.ts", /load/]],
  },
];

export interface AssertionResult {
  ancestorTitles: string[];
  title: string;
  fullName: string;
  status: string;
  duration?: number;
}

/** What vitest's JSON reporter writes (the parts used here). */
export interface Report {
  testResults: { name: string; assertionResults: AssertionResult[] }[];
}

/** Each test file's results, by its path relative to the repository (as `AREAS` names it). */
export function resultsByFile(report: Report, base = root): Map<string, AssertionResult[]> {
  return new Map(
    report.testResults.map((r) => [r.name.replace(base, "").replace(/^\//, ""), r.assertionResults]),
  );
}

function runSuite(): Report {
  const out = join(mkdtempSync(join(tmpdir(), "sprout-reliability-")), "results.json");
  const files = [...new Set(AREAS.flatMap((a) => a.tests.map(([file]) => file)))];
  const run = spawnSync("npx", ["vitest", "run", ...files, "--reporter=json", `--outputFile=${out}`], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (!existsSync(out)) throw new Error(`vitest wrote no results (exit ${run.status})`);
  return JSON.parse(readFileSync(out, "utf8")) as Report;
}

function loadSection(): string {
  const path = join(root, "bench/results/load.json");
  if (!existsSync(path)) return "No load benchmark on record yet: run `npm run bench:load`.";
  const load = JSON.parse(readFileSync(path, "utf8"));
  const rows = load.runs.map(
    (r: {
      batching: string;
      streams: number;
      seconds: number;
      completed: number;
      requests: number;
      errors: Record<string, number>;
      first_block_ms: Record<string, number>;
      stream_ms: Record<string, number>;
      tokens_per_s: number;
      memory_mb: Record<string, number>;
    }) =>
      `| ${r.batching} | ${r.streams} × ${r.seconds} s | ${r.completed}/${r.requests} | ${Object.values(r.errors).reduce((a, b) => a + b, 0)} | ${r.first_block_ms.p50?.toFixed(0)} / ${r.first_block_ms.p95?.toFixed(0)} / ${r.first_block_ms.p99?.toFixed(0)} | ${r.stream_ms.p50?.toFixed(0)} / ${r.stream_ms.p95?.toFixed(0)} / ${r.stream_ms.p99?.toFixed(0)} | ${r.tokens_per_s.toFixed(0)} | ${r.memory_mb.start} / ${r.memory_mb.peak} / ${r.memory_mb.end} |`,
  );
  const auth = load.auth_timing;
  return [
    `Measured ${load.date.slice(0, 10)} on ${load.machine.cpus} × ${load.machine.cpu} (\`bench/results/load.json\`): concurrent streaming generations of ${load.request.max_tokens} tokens (blocks of ${load.request.block_size}) through the edge, back to back, loopback only.`,
    "",
    "| batching | load | streams completed | failures | first block p50 / p95 / p99 (ms) | stream p50 / p95 / p99 (ms) | tokens/s | memory MB start / peak / end |",
    "|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    auth
      ? `Key refusal time, ${auth.rounds} rounds alternating: a key wrong only in its last character ${auth.near_miss_p50_ms.toFixed(2)} ms p50, wrong in its first ${auth.far_miss_p50_ms.toFixed(2)} ms: no measurable difference (the edge compares sha256 digests, in constant time).`
      : "",
  ].join("\n");
}

/**
 * The document, from a run's results. An area's entry that selects no test of the run (a file
 * renamed, a filter that matches nothing) is an error: the area would claim what no test showed.
 */
export function document(
  results: Map<string, AssertionResult[]>,
  { areas = AREAS, date = new Date().toISOString().slice(0, 10), load = loadSection() } = {},
): string {
  let passed = 0;
  let total = 0;
  const sections = areas.map(({ area, bounds, tests }) => {
    const rows: string[] = [];
    for (const [file, filter] of tests) {
      const selected = (results.get(file) ?? []).filter((t) => !filter || filter.test(t.fullName));
      if (selected.length === 0) {
        throw new Error(`${area}: no test of ${file}${filter ? ` matching ${filter}` : ""} ran`);
      }
      for (const t of selected) {
        total++;
        if (t.status === "passed") passed++;
        const outcome = t.status === "passed" ? "passed" : `**${t.status}**`;
        rows.push(
          `| ${[...t.ancestorTitles, t.title].join(" › ").replaceAll("|", "\\|")} | \`${file}\` | ${outcome} | ${((t.duration ?? 0) / 1000).toFixed(2)} |`,
        );
      }
    }
    return [`## ${area}`, "", bounds, "", "| test | file | outcome | s |", "|---|---|---|---|", ...rows].join(
      "\n",
    );
  });
  return [
    "# Reliability",
    "",
    "What Sprout was shown to survive, by tests that try. Written by `npm run reliability` from a run of",
    "the tests below (all of them also run in `npm test`, in CI) and the last `npm run bench:load`; do not",
    "edit by hand.",
    "",
    `Last run ${date}: **${passed} of ${total} passed**.`,
    "",
    ...sections.flatMap((s) => [s, ""]),
    "## Load (benchmark)",
    "",
    load,
    "",
    "Memory by process, from one 90 s run of 8 streams by hand (2026-11-27): the denoiser node stayed",
    "flat at about 335 MB; wrangler's Node process grew 234 → 297 MB and fell to 212 MB once idle (its",
    "garbage collector); the two workerd processes grew 83 → 168 and 121 → 191 MB, the growth slowing",
    "over the last 20 s and stopping at idle. The whole-tree growth in the table is that: the local",
    "Workers runtime and its dev proxy, not the node. The CI bound (100 MB over 8 s, after warm-up) catches a fast leak,",
    "not a slow one.",
    "",
    "## Not covered",
    "",
    "- DNS: a webhook host name that resolves to a private address cannot be checked in a Worker (no DNS",
    "  lookup); Cloudflare does not route a Worker's fetch into private networks.",
    "- A queued job books its tokens against its key when it runs, but is not refused for them (it was admitted",
    "  when posted).",
    "- `/healthz`, `/readyz` and `/metrics` on a node are open by design (counts, never request content);",
    "  keep the node's port private.",
    "- Load here is one CPU node on 2 cores over loopback, not a fleet; the soak is minutes, not days.",
    "",
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(join(root, "docs/RELIABILITY.md"), document(resultsByFile(runSuite())));
  console.log("wrote docs/RELIABILITY.md");
}
