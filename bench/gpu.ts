/**
 * bench/gpu.sh's measurement (run it through that script): a model served through the runtime and
 * the node's batching scheduler on a GPU execution provider, beside the CPU, in one process.
 *
 *   GPU_PROVIDER=webgpu|cuda   the GPU provider (bench/gpu.sh picks it); `none`: the CPU alone
 *   BENCH_MODEL_DIR            the model (default models/sprout-tiny)
 *   BENCH_OUT                  where the JSON goes (default bench/results/gpu.json)
 *   BENCH_REQUESTS, BENCH_MAX_TOKENS   16 requests of at most 64 tokens (blocks of 32, τ 0.9)
 *
 * For each provider: the cost of one denoising step against the tokens in it (1 … 256 at 128
 * cached: on a GPU it should stay nearly flat, on the CPU it grows), tokens per forward and
 * tokens/s with 1 and with 8 requests at a time through the scheduler (bench/concurrency.ts, the
 * code bench/engine.ts measures the CPU with), and whether each request's greedy text equals
 * the CPU's. Prints a table and writes the JSON.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { DecodeOptions, Model } from "../models/src/index.ts";
import { loadModel } from "../models/src/index.ts";
import {
  checkExecutionProvider,
  type ExecutionProvider,
  parseExecutionProvider,
  sessionProviders,
} from "../models/src/providers.ts";
import { KvCache } from "../models/src/session.ts";
import { type ConcurrencyResult, concurrency } from "./concurrency.ts";
import { machine } from "./report.ts";

const env = process.env;
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const modelDir = resolve(env.BENCH_MODEL_DIR ?? here("../models/sprout-tiny/"));
const out = resolve(env.BENCH_OUT ?? here("./results/gpu.json"));
const REQUESTS = Number(env.BENCH_REQUESTS ?? 16);
const MAX_TOKENS = Number(env.BENCH_MAX_TOKENS ?? 64);
const gpu = env.GPU_PROVIDER === "none" ? undefined : parseExecutionProvider(env.GPU_PROVIDER ?? "webgpu");
if (env.GPU_BENCH_CHECK_ONLY) {
  // bench/gpu.sh asks first whether the GPU provider starts: one line and status 3 when not.
  try {
    if (gpu) await checkExecutionProvider(gpu);
    console.error(`gpu.ts: ${gpu ?? "no GPU provider"} starts`);
    process.exit(0);
  } catch (error) {
    console.error((error as Error).message);
    process.exit(3);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** Python function headers with docstrings: the prompts sprout-tiny was trained to complete. */
const HEADS = [
  ["fibonacci(n)", "Return the n-th Fibonacci number."],
  ["is_prime(n)", "Return True if n is a prime number."],
  ["reverse_words(text)", "Return the words of text in reverse order."],
  ["flatten(items)", "Flatten a list of lists into one list."],
  ["count_vowels(s)", "Count the vowels in a string."],
  ["merge_sorted(a, b)", "Merge two sorted lists into one sorted list."],
  ["gcd(a, b)", "Return the greatest common divisor of a and b."],
  ["unique(items)", "Return the items without duplicates, in order."],
  ["read_lines(path)", "Read a file and return its lines without newlines."],
  ["factorial(n)", "Return n factorial."],
  ["chunks(items, size)", "Split a list into chunks of the given size."],
  ["word_count(text)", "Return a dict mapping each word to its count."],
  ["is_palindrome(s)", "Return True if s reads the same backwards."],
  ["transpose(matrix)", "Transpose a matrix given as a list of rows."],
  ["binary_search(items, target)", "Return the index of target in sorted items, or -1."],
  ["to_snake_case(name)", "Convert a CamelCase name to snake_case."],
];
const requests: DecodeOptions[] = Array.from({ length: REQUESTS }, (_, i) => {
  const [signature, doc] = HEADS[i % HEADS.length] as [string, string];
  return { prompt: `def ${signature}:\n    """${doc}"""\n`, maxTokens: MAX_TOKENS, threshold: 0.9 };
});

/** Median ms of one denoising step (forward + greedy statistics) of `tokens` masks at 128 cached tokens. */
async function stepCosts(model: Model): Promise<{ tokens: number; ms: number }[]> {
  const ids = Array.from({ length: 128 }, (_, i) => 100 + (i % 500));
  const prefill = await model.session.forward(ids, [], KvCache.empty(model.manifest));
  const cache = KvCache.empty(model.manifest).append(prefill.newKey, prefill.newValue);
  const mask = model.manifest.special_tokens.mask;
  const points = [];
  for (const tokens of [1, 8, 32, 128, 256]) {
    const input = [{ context: [], block: new Array(tokens).fill(mask), cache }];
    await model.session.forwardBatch(input, { stats: true });
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await model.session.forwardBatch(input, { stats: true });
      times.push(performance.now() - t0);
    }
    points.push({ tokens, ms: median(times) });
  }
  return points;
}

async function texts(model: Model): Promise<string[]> {
  const all: string[] = [];
  for (const request of requests) {
    let text = "";
    for await (const event of model.generate(request)) if (event.type === "block") text += event.text;
    all.push(text);
  }
  return all;
}

interface ProviderRun {
  provider: ExecutionProvider;
  load_s: number;
  step_ms: { tokens: number; ms: number }[];
  concurrency: ConcurrencyResult[];
  same_text_as_cpu?: number;
}

async function measure(provider: ExecutionProvider, cpuTexts?: string[]): Promise<[ProviderRun, string[]]> {
  const t0 = performance.now();
  const model = await loadModel(modelDir, { executionProviders: sessionProviders(provider) });
  const load = (performance.now() - t0) / 1000;
  console.log(`${provider}: ${model.manifest.name} loaded in ${load.toFixed(1)} s`);
  for await (const _ of model.generate(requests[0] as DecodeOptions)); // warm-up (shaders, kernels)
  const steps = await stepCosts(model);
  const levels = [await concurrency(model, requests, 1, 8), await concurrency(model, requests, 8, 8)];
  const own = await texts(model);
  await model.close();
  const same = cpuTexts && own.filter((text, i) => text === cpuTexts[i]).length / own.length;
  return [
    {
      provider,
      load_s: load,
      step_ms: steps,
      concurrency: levels,
      ...(same === undefined ? {} : { same_text_as_cpu: same }),
    },
    own,
  ];
}

const [cpu, cpuTexts] = await measure("cpu");
const runs = [cpu];
if (gpu) runs.push((await measure(gpu, cpuTexts))[0]);

console.log(`\n${REQUESTS} requests of ≤ ${MAX_TOKENS} tokens (blocks of 32, τ 0.9), ${modelDir}`);
console.table(
  runs.flatMap((run) =>
    run.concurrency.map((c) => ({
      provider: run.provider,
      concurrent: c.concurrency,
      "tokens/forward": c.tokens_per_forward.toFixed(2),
      "tokens/s": c.tokens_per_s.toFixed(0),
      "mean batch": c.mean_batch.toFixed(1),
      "in forward": `${(100 * c.forward_share).toFixed(0)}%`,
      "same text as CPU":
        run.same_text_as_cpu === undefined ? "" : `${(100 * run.same_text_as_cpu).toFixed(0)}%`,
    })),
  ),
);
console.log("One step (forward + greedy statistics) at 128 cached tokens, median ms:");
console.table(
  Object.fromEntries(
    runs.map((run) => [
      run.provider,
      Object.fromEntries(run.step_ms.map((p) => [`${p.tokens} tokens`, p.ms.toFixed(2)])),
    ]),
  ),
);
const result = {
  date: new Date().toISOString(),
  machine: machine(),
  model_dir: modelDir,
  requests: { count: REQUESTS, max_tokens: MAX_TOKENS, block_size: 32, threshold: 0.9 },
  gpu_provider: gpu ?? null,
  runs,
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
console.log(`wrote ${out}`);
