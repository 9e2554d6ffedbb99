/**
 * For an imported model, a step's time grows with the masked rows decoding reads, not with
 * vocabulary × (block + context) (issue 18). The model: Qwen3's 151,936-token tied head on a
 * body of 2 layers 256 wide (random weights, transformers' own Qwen3ForCausalLM, imported with
 * `npm run model:import` by `bench/large_import.py --shape qwen3-wide-head --build-only`, built
 * once under --root, never in the repository), so the head is most of a step, as it is for a
 * 1.5B-class checkpoint's block step (issue 16).
 *
 *   npx tsx bench/rows.ts [--root DIR] [--repeats 7] [--batch 1,8] [--threads N]
 *
 * One forward with greedy statistics (`DenoiserSession.forwardBatch(…, { stats: true })`) of a
 * block of 32 with 1, 4, 8, 16 or 32 of its tokens still masked (spread over the block), over a
 * 64-token cache, with 0 or 64 committed tokens riding along as context (not yet cached): asking
 * only the masked rows (`rows`, what decode.ts asks) against asking every row (no `rows`: the
 * head and the statistics over context + block); one sequence, and 8 of that shape in one forward
 * (`--batch`, the node's default most). Median of `repeats` after a warm-up of each shape, the two ways alternating (and which
 * goes first alternating too).
 *
 * Then uneven asks in one batch of 8 (issue 18): one sequence asks all 32 rows of its block, seven
 * ask 1 (`UNEVEN`). The import's graph takes flat `logit_positions`, so its head computes the 39
 * rows asked; a per-sequence `logit_rows` graph would pad every sequence to 32 (256 rows). The
 * padded figure is measured by asking every sequence for 32 rows, which costs the graph exactly
 * what that padding does (head and output alike); this case runs without greedy statistics, so
 * the pick graph reading 256 rows rather than 39 is not charged to padding.
 *
 * Prints tables; writes bench/results/rows.json and puts the tables into the README.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadManifest } from "../models/src/manifest.ts";
import { DenoiserSession, type ForwardInput, KvCache, newStepProfile } from "../models/src/session.ts";
import { stamp, writeReadmeSection, writeResult } from "./report.ts";

const { values } = parseArgs({
  options: {
    root: { type: "string", default: join(tmpdir(), "sprout-bench-rows") },
    repeats: { type: "string", default: "7" },
    batch: { type: "string", default: "1,8" },
    threads: { type: "string" },
  },
});
const SHAPE = "qwen3-wide-head";
const BLOCK = 32;
const CACHED = 64;
const MASKED = [1, 4, 8, 16, 32];
const CONTEXT = [0, 64];
/** Rows asked per sequence in the uneven batch. */
const UNEVEN = [32, 1, 1, 1, 1, 1, 1, 1];
const repeats = Number(values.repeats);
const batches = values.batch.split(",").map(Number);
const repo = fileURLToPath(new URL("..", import.meta.url));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const round = (x: number) => Number(x.toFixed(2));

const modelDir = join(values.root, `${SHAPE}-sprout`);
const manifestPath = join(modelDir, "manifest.json");
if (
  existsSync(manifestPath) &&
  !("logit_positions" in JSON.parse(readFileSync(manifestPath, "utf8")).graph.inputs)
) {
  console.log(`${modelDir} was imported under the per-sequence logit_rows contract: importing it again`);
  rmSync(modelDir, { recursive: true });
}
if (!existsSync(manifestPath)) {
  console.log(`building and importing a random ${SHAPE} model into ${values.root} (once; about 20 s)`);
  const run = (command: string, args: string[]) =>
    spawnSync(command, args, { cwd: repo, stdio: "inherit" }).status === 0;
  const built =
    run("scripts/python-env.sh", []) &&
    run(".venv/bin/python", [
      "bench/large_import.py",
      "--shape",
      SHAPE,
      "--root",
      values.root,
      "--build-only",
    ]);
  if (!built) throw new Error("bench/large_import.py --build-only failed (its output is above)");
}
const manifest = await loadManifest(modelDir);
const session = await DenoiserSession.create(join(modelDir, manifest.graph.file), manifest, {
  ...(values.threads !== undefined && { intraOpNumThreads: Number(values.threads) }),
});
const { mask } = manifest.special_tokens;
const { vocab_size: vocab } = manifest.architecture;
/** Ordinary token ids (below Qwen's special tokens), varied. */
const tokens = (count: number, seed: number) =>
  Array.from({ length: count }, (_, i) => 100 + ((i * 7919 + seed * 104729) % 150000));

// Each sequence's cache: 64 prompt tokens, prefilled once (only the last row's logits asked for).
const caches: KvCache[] = [];
for (let b = 0; b < Math.max(...batches); b++) {
  const [prefill] = await session.forwardBatch([
    { context: tokens(CACHED, b), block: [], cache: KvCache.empty(manifest), rows: [CACHED - 1] },
  ]);
  if (!prefill) throw new Error("no prefill came back");
  caches.push(KvCache.empty(manifest).append(prefill.newKey, prefill.newValue));
}

/** A block of 32 with `masked` of its tokens still masked, spread over it, and where they are. */
function block(masked: number, seed: number): { ids: number[]; at: number[] } {
  const at = Array.from({ length: masked }, (_, k) => Math.floor((k * BLOCK) / masked));
  const ids = tokens(BLOCK, seed);
  for (const t of at) ids[t] = mask;
  return { ids, at };
}

function inputs(batch: number, masked: number, context: number, askRows: boolean): ForwardInput[] {
  return caches.slice(0, batch).map((cache, b) => {
    const { ids, at } = block(masked, b + 1);
    return {
      context: tokens(context, b + 2),
      block: ids,
      cache,
      ...(askRows && { rows: at.map((t) => context + t) }),
    };
  });
}

async function stepMs(step: ForwardInput[]): Promise<number> {
  const t0 = performance.now();
  const results = await session.forwardBatch(step, { stats: true });
  const ms = performance.now() - t0;
  const rows = step[0]?.rows?.length ?? (step[0]?.context.length ?? 0) + BLOCK;
  if (results[0]?.stats?.topId.length !== rows) throw new Error(`the step did not read its ${rows} rows`);
  return ms;
}

const cases = batches.flatMap((batch) =>
  CONTEXT.flatMap((context) => MASKED.map((masked) => ({ batch, masked, context }))),
);
const times = cases.map(() => ({ asked: [] as number[], every: [] as number[] }));
for (const { batch, masked, context } of cases) {
  await stepMs(inputs(batch, masked, context, true)); // warm-up: onnxruntime's first run of a shape
  await stepMs(inputs(batch, masked, context, false));
}
const started = performance.now();
for (let r = 0; r < repeats; r++) {
  for (const [i, { batch, masked, context }] of cases.entries()) {
    const t = times[i] as (typeof times)[number];
    const ways = [true, false] as const;
    for (const askRows of r % 2 === 0 ? ways : [...ways].reverse()) {
      (askRows ? t.asked : t.every).push(await stepMs(inputs(batch, masked, context, askRows)));
    }
  }
}

/** The uneven batch: sequence b asks UNEVEN[b] masked rows of its block, or (`padded`) all 32. */
function unevenInputs(padded: boolean): ForwardInput[] {
  return UNEVEN.map((masked, b) => {
    const { ids, at } = block(masked, b + 1);
    return { context: [], block: ids, cache: caches[b] as KvCache, rows: padded ? range(BLOCK) : at };
  });
}
async function unevenMs(padded: boolean): Promise<{ ms: number; headRows: number }> {
  const profile = newStepProfile();
  const t0 = performance.now();
  await session.forwardBatch(unevenInputs(padded), { profile });
  return { ms: performance.now() - t0, headRows: profile.headRows };
}
const uneven = caches.length >= UNEVEN.length;
const unevenTimes = { flat: [] as number[], padded: [] as number[], flatRows: 0, paddedRows: 0 };
if (uneven) {
  await unevenMs(false); // warm-up
  await unevenMs(true);
  for (let r = 0; r < repeats; r++) {
    for (const padded of r % 2 === 0 ? [false, true] : [true, false]) {
      const { ms, headRows } = await unevenMs(padded);
      unevenTimes[padded ? "padded" : "flat"].push(ms);
      unevenTimes[padded ? "paddedRows" : "flatRows"] = headRows;
    }
  }
}
const measuredS = (performance.now() - started) / 1000;
await session.release();

const results = cases.map(({ batch, masked, context }, i) => {
  const t = times[i] as (typeof times)[number];
  return {
    batch,
    masked_rows: masked,
    context,
    rows_asked: masked,
    rows_every: context + BLOCK,
    asked_ms: round(median(t.asked)),
    every_ms: round(median(t.every)),
    asked_runs_ms: t.asked.map(round),
    every_runs_ms: t.every.map(round),
  };
});
console.log(
  `\nOne forward + greedy statistics per sequence: a block of ${BLOCK} over a ${CACHED}-token cache, ` +
    `vocabulary ${vocab} (median of ${repeats}, ms)`,
);
console.table(
  results.map((r) => ({
    batch: r.batch,
    "masked rows": r.masked_rows,
    "context riding along": r.context,
    "asked rows: ms": r.asked_ms.toFixed(1),
    "every row: rows": r.rows_every,
    "every row: ms": r.every_ms.toFixed(1),
    "every / asked": (r.every_ms / r.asked_ms).toFixed(1),
  })),
);
// Per batch: one line through every point, both ways, against the rows the head computed per
// sequence; if time follows those rows, context riding along adds little beyond them.
const fits = batches.map((batch) => {
  const mine = results.filter((r) => r.batch === batch);
  const points = mine.flatMap((r) => [
    [r.rows_asked, r.asked_ms],
    [r.rows_every, r.every_ms],
  ]) as [number, number][];
  const fit = lineThrough(points);
  const contextAddsMs = median(
    MASKED.map((masked) => {
      const at = (context: number) => mine.find((r) => r.masked_rows === masked && r.context === context);
      return (at(64)?.asked_ms ?? 0) - (at(0)?.asked_ms ?? 0);
    }),
  );
  console.log(
    `batch ${batch}: ms ≈ ${fit.intercept.toFixed(1)} + ${fit.slope.toFixed(2)} × head rows per sequence ` +
      `(r² ${fit.r2.toFixed(3)}); 64 tokens of context riding along add ${contextAddsMs.toFixed(1)} ms ` +
      "to a step asking only its masked rows (median over the masked counts)",
  );
  return { batch, ...fit, context_64_adds_ms_when_asked: round(contextAddsMs) };
});
const unevenResult = uneven
  ? {
      rows_asked: UNEVEN,
      stats: false,
      flat_head_rows: unevenTimes.flatRows,
      padded_head_rows: unevenTimes.paddedRows,
      padded_measured_as: "every sequence asking all 32 rows (the head cost of per-sequence padding)",
      flat_ms: round(median(unevenTimes.flat)),
      padded_ms: round(median(unevenTimes.padded)),
      flat_runs_ms: unevenTimes.flat.map(round),
      padded_runs_ms: unevenTimes.padded.map(round),
    }
  : undefined;
if (unevenResult) {
  console.log(
    `\nUneven asks in one batch of 8 (rows ${UNEVEN.join(",")}), one forward without statistics (median of ${repeats}, ms)`,
  );
  console.table([
    { contract: "flat logit_positions", "head rows": unevenResult.flat_head_rows, ms: unevenResult.flat_ms },
    {
      contract: "per-sequence padding (every sequence asks 32)",
      "head rows": unevenResult.padded_head_rows,
      ms: unevenResult.padded_ms,
    },
  ]);
}
const result = {
  ...stamp(),
  command: `npx tsx bench/rows.ts --repeats ${repeats} --batch ${batches.join(",")}${values.threads ? ` --threads ${values.threads}` : ""}`,
  model: {
    shape: SHAPE,
    name: manifest.name,
    vocab_size: vocab,
    d_model: manifest.architecture.d_model,
    n_layers: manifest.architecture.n_layers,
    parameters: manifest.architecture.parameters,
    row_contract: session.rowContract,
  },
  step: { block: BLOCK, cached: CACHED, stats: true, masked_spread_over_block: true },
  repeats,
  measured_s: round(measuredS),
  fits,
  results,
  uneven: unevenResult,
};
const out = writeResult("rows", result);
console.log(`wrote ${out} (${measuredS.toFixed(0)} s measuring)`);

writeReadmeSection(
  "bench-rows",
  [
    `Measured ${result.date.slice(0, 10)} (\`bench/rows.ts\`, \`bench/results/rows.json\`): a random-weight import with Qwen3's ${vocab.toLocaleString("en")}-token head on ${manifest.architecture.n_layers} layers ${manifest.architecture.d_model} wide; one step with greedy statistics, a block of ${BLOCK} over a ${CACHED}-token cache, median ms of ${repeats}:`,
    "",
    "| batch | masked rows | context riding along | only the masked rows asked (ms) | every row asked (rows, ms) |",
    "|---|---|---|---|---|",
    ...results.map(
      (r) =>
        `| ${r.batch} | ${r.masked_rows} | ${r.context} | ${r.asked_ms.toFixed(1)} | ${r.rows_every}, ${r.every_ms.toFixed(1)} |`,
    ),
    "",
    ...fits.map(
      (f) =>
        `Batch ${f.batch}: ms ≈ ${f.intercept} + ${f.slope} × head rows per sequence (r² ${f.r2}); 64 tokens of context riding along add ${f.context_64_adds_ms_when_asked} ms to a step asking only its masked rows.`,
    ),
    ...(unevenResult
      ? [
          "",
          `Uneven asks in one batch of 8 (one sequence ${UNEVEN[0]} rows, seven 1), one forward without statistics: the flat \`logit_positions\` contract computes ${unevenResult.flat_head_rows} head rows in ${unevenResult.flat_ms.toFixed(1)} ms; per-sequence padding (measured as every sequence asking 32 rows, the same head cost) ${unevenResult.padded_head_rows} rows in ${unevenResult.padded_ms.toFixed(1)} ms (${(unevenResult.padded_ms / unevenResult.flat_ms).toFixed(1)}×).`,
        ]
      : []),
  ].join("\n"),
);

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Least squares `y ≈ intercept + slope · x`, and the share of y's variance it explains. */
function lineThrough(points: readonly [number, number][]): { intercept: number; slope: number; r2: number } {
  const n = points.length;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  const residual = points.reduce((a, [x, y]) => a + (y - intercept - slope * x) ** 2, 0);
  const total = points.reduce((a, [, y]) => a + (y - my) ** 2, 0);
  return { intercept: round(intercept), slope: round(slope), r2: Number((1 - residual / total).toFixed(4)) };
}
