/**
 * Aggregate tokens/s through the node's Scheduler at several concurrency levels, batching on and
 * off, for this tree's runtime and (optionally) another checkout's, alternating run by run in one
 * process so that a noisy machine weighs on both alike. 16 MBPP prompts, ≤ 64 tokens, greedy
 * (τ 0.9), as bench/engine.ts's concurrency table; batching on = each tree's own scheduler
 * defaults, off = maxBatch 1 (one request at a time, the others queued).
 *
 *   npx tsx bench/batching.ts [--base /path/to/other/checkout] [--levels 1,8,16] [--rounds 3]
 *
 * Besides wall-clock tokens/s, tokens per CPU-second of this process (onnxruntime's threads
 * included): less swayed by other processes on a shared machine. Prints the medians (and, with a base, whether every completion came out the same in both) and
 * writes bench/results/batching.json.
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Scheduler as SchedulerClass } from "../apps/denoiser/src/scheduler.ts";
import type { loadModel as loadModelFn } from "../models/src/index.ts";
import { mbppTasks } from "./quality.ts";
import { stamp, writeResult } from "./report.ts";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const { values } = parseArgs({
  options: {
    base: { type: "string" },
    levels: { type: "string", default: "1,8,16" },
    rounds: { type: "string", default: "3" },
  },
});
const levels = (values.levels as string).split(",").map(Number);
const rounds = Number(values.rounds);
const MAX_TOKENS = 64;
const prompts = mbppTasks(16).map((task) => task.prompt);

interface Runtime {
  name: string;
  model: Awaited<ReturnType<typeof loadModelFn>>;
  Scheduler: typeof SchedulerClass;
}

async function runtime(name: string, root: string): Promise<Runtime> {
  const models = (await import(join(root, "models/src/index.ts"))) as { loadModel: typeof loadModelFn };
  const scheduler = (await import(join(root, "apps/denoiser/src/scheduler.ts"))) as {
    Scheduler: typeof SchedulerClass;
  };
  const model = await models.loadModel(join(root, "models/sprout-tiny"));
  return { name, model, Scheduler: scheduler.Scheduler };
}

/** `prompts`, `level` at a time, through a scheduler of `maxBatch`: tokens/s and each completion's text. */
async function run({ model, Scheduler }: Runtime, level: number, maxBatch: number | undefined) {
  const scheduler = new Scheduler({
    forward: (inputs, options) => model.session.forwardBatch(inputs, options),
    // A checkout from before the session counted its slots gets the scheduler's own default.
    ...(typeof model.session.slots === "function" ? { slots: model.session.slots.bind(model.session) } : {}),
    ...(maxBatch === undefined ? {} : { maxBatch }),
    maxQueue: 64,
  });
  const texts: string[] = new Array(prompts.length).fill("");
  let tokens = 0;
  let next = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const worker = async () => {
    while (next < prompts.length) {
      const at = next++;
      for await (const event of scheduler.submit(
        model.start({ prompt: prompts[at] as string, maxTokens: MAX_TOKENS }),
      )) {
        if (event.type === "block") texts[at] += event.text;
        if (event.type === "done") tokens += event.usage.completion_tokens;
      }
    }
  };
  await Promise.all(Array.from({ length: level }, worker));
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    tokensPerS: tokens / ((performance.now() - t0) / 1000),
    tokensPerCpuS: tokens / cpuSeconds,
    texts,
  };
}

const runtimes = [await runtime("this tree", resolve(here("..")))];
if (values.base) runtimes.push(await runtime("base", resolve(values.base)));
const configs = levels.flatMap((level) => [undefined, 1].map((maxBatch) => ({ level, maxBatch })));
const speeds = new Map<string, number[]>();
const perCpu = new Map<string, number[]>();
let sameText = true;
await run(runtimes[0] as Runtime, 1, 1); // warm-up
for (let round = 0; round < rounds; round++) {
  for (const { level, maxBatch } of configs) {
    const texts: string[][] = [];
    for (const rt of round % 2 === 0 ? runtimes : [...runtimes].reverse()) {
      const { tokensPerS, tokensPerCpuS, texts: t } = await run(rt, level, maxBatch);
      const key = `${rt.name}|${level}|${maxBatch}`;
      speeds.set(key, [...(speeds.get(key) ?? []), tokensPerS]);
      perCpu.set(key, [...(perCpu.get(key) ?? []), tokensPerCpuS]);
      texts.push(t);
    }
    if (texts.some((t) => JSON.stringify(t) !== JSON.stringify(texts[0]))) sameText = false;
  }
}
const rows = configs.map(({ level, maxBatch }) => {
  const row: Record<string, string | number> = { concurrent: level, batching: maxBatch === 1 ? "off" : "on" };
  const of = (map: Map<string, number[]>, name: string) =>
    median(map.get(`${name}|${level}|${maxBatch}`) ?? []);
  for (const rt of runtimes) row[`${rt.name} tokens/s`] = Math.round(of(speeds, rt.name));
  if (runtimes.length > 1) row["× base"] = (of(speeds, "this tree") / of(speeds, "base")).toFixed(2);
  for (const rt of runtimes) row[`${rt.name} tokens/CPU-s`] = Math.round(of(perCpu, rt.name));
  if (runtimes.length > 1) row["× base (CPU)"] = (of(perCpu, "this tree") / of(perCpu, "base")).toFixed(2);
  return row;
});
console.log(
  `aggregate tokens/s, median of ${rounds} alternating rounds (16 MBPP prompts, ≤ ${MAX_TOKENS} tokens, greedy)`,
);
console.table(rows);
if (runtimes.length > 1) console.log(`every completion the same in both: ${sameText}`);
writeResult("batching", {
  ...stamp(),
  rounds,
  max_tokens: MAX_TOKENS,
  same_text: sameText,
  rows,
  tokens_per_s: Object.fromEntries(speeds),
  tokens_per_cpu_s: Object.fromEntries(perCpu),
});
for (const rt of runtimes) await rt.model.close();
