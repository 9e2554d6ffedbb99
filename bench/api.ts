/**
 * `npm run bench:api` (also part of `npm run bench`): batching through the public API, the way
 * issue 18 measures it. Starts the whole system as `npm start` does (edge in workerd, one node),
 * then sends MBPP prompts (held out) to `/v1/completions`, greedy (temperature 0), at most
 * MAX_TOKENS tokens each, not streamed:
 *
 *  - the same 8 prompts one at a time, then all 8 at once;
 *  - 16 prompts kept 8 in flight, then all 16 at once;
 *
 * for ROUNDS rounds, the shapes alternating within each round so that the machine's drift falls
 * on all of them alike. Every completion must equal the same prompt's completion alone (batching
 * changes the speed, never the text). Reports aggregate completion tokens per second (all the
 * completion tokens over the wall time from the first request to the last answer), medians over
 * the rounds and the ratios of each round, for batching on (the node's defaults) and off
 * (SPROUT_MAX_BATCH=1). Prints a table, writes bench/results/api.json and puts the table into
 * the README.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { freePort, startSprout, whenReady } from "../test/support/sprout.ts";
import { mbppTasks } from "./quality.ts";
import { stamp, writeReadmeSection, writeResult } from "./report.ts";

const ROUNDS = Number(process.env.API_ROUNDS ?? 3);
const MAX_TOKENS = 128;
const key = `sk-sprout-${randomBytes(32).toString("base64url").slice(0, 43)}`;
const prompts = mbppTasks(16).map((task) => task.prompt);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

interface Answer {
  text: string;
  tokens: number;
}

async function complete(url: string, prompt: string): Promise<Answer> {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "sprout-tiny", prompt, max_tokens: MAX_TOKENS, temperature: 0 }),
  });
  const body = (await response.json()) as {
    choices?: { text: string }[];
    usage?: { completion_tokens: number };
  };
  if (response.status !== 200 || !body.choices?.[0] || !body.usage) {
    throw new Error(`a completion failed: ${response.status} ${JSON.stringify(body)}`);
  }
  return { text: body.choices[0].text, tokens: body.usage.completion_tokens };
}

/** Sends `which` prompts, `inFlight` at a time; aggregate completion tokens/s and the answers. */
async function shape(url: string, which: string[], inFlight: number) {
  const answers: Answer[] = new Array(which.length);
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    while (next < which.length) {
      const at = next++;
      answers[at] = await complete(url, which[at] as string);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, client));
  const seconds = (performance.now() - t0) / 1000;
  const tokens = answers.reduce((a, b) => a + b.tokens, 0);
  return { tokens_per_s: tokens / seconds, tokens, seconds, answers };
}

const SHAPES = [
  { name: "8 prompts, one at a time", prompts: 8, inFlight: 1 },
  { name: "8 prompts, all at once", prompts: 8, inFlight: 8 },
  { name: "16 prompts, 8 in flight", prompts: 16, inFlight: 8 },
  { name: "16 prompts, all at once", prompts: 16, inFlight: 16 },
] as const;

const runs = [];
for (const [batching, env] of [
  ["on", {}],
  ["off", { SPROUT_MAX_BATCH: "1" }],
] as const) {
  const [edgePort, nodePort] = [await freePort(), await freePort()];
  const sprout = startSprout({
    SPROUT_API_KEY: key,
    SPROUT_EDGE_PORT: String(edgePort),
    SPROUT_NODE_PORT: String(nodePort),
    ...env,
  });
  await whenReady(sprout);
  const url = `http://127.0.0.1:${edgePort}`;
  // Each prompt's completion alone: the text every other shape must give (and a warm-up).
  const alone = await Promise.all(prompts.map(async (p) => (await complete(url, p)).text));
  const rounds: Record<string, number>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? SHAPES : [...SHAPES].reverse();
    const figures: Record<string, number> = {};
    for (const s of order) {
      const run = await shape(url, prompts.slice(0, s.prompts), s.inFlight);
      run.answers.forEach((answer, i) => {
        if (answer.text !== alone[i]) throw new Error(`${s.name}: prompt ${i} came back different`);
      });
      figures[s.name] = run.tokens_per_s;
      console.log(
        `batching ${batching}, round ${round + 1}: ${s.name}: ${run.tokens} tokens in ${run.seconds.toFixed(2)} s, ${run.tokens_per_s.toFixed(0)} tokens/s`,
      );
    }
    rounds.push(figures);
  }
  sprout.child.kill("SIGINT");
  await sprout.exited;
  const ratio = (a: string, b: string) => rounds.map((r) => (r[a] as number) / (r[b] as number));
  runs.push({
    batching,
    env,
    tokens_per_s: Object.fromEntries(
      SHAPES.map((s) => [s.name, median(rounds.map((r) => r[s.name] as number))]),
    ),
    rounds,
    eight_at_once_over_one_at_a_time: ratio(SHAPES[1].name, SHAPES[0].name),
    sixteen_at_once_over_eight_in_flight: ratio(SHAPES[3].name, SHAPES[2].name),
  });
}

const fmt = (xs: number[]) => `${median(xs).toFixed(2)} (${xs.map((x) => x.toFixed(2)).join(", ")})`;
console.log(
  `\nThrough the API (/v1/completions, ${prompts.length} MBPP prompts, ≤ ${MAX_TOKENS} tokens, greedy), aggregate completion tokens/s, median of ${ROUNDS} rounds`,
);
console.table(
  runs.map((r) => ({
    batching: r.batching,
    ...Object.fromEntries(Object.entries(r.tokens_per_s).map(([k, v]) => [k, v.toFixed(0)])),
    "8 at once / one at a time": fmt(r.eight_at_once_over_one_at_a_time),
    "16 at once / 8 in flight": fmt(r.sixteen_at_once_over_eight_in_flight),
  })),
);

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
writeResult("api", {
  ...stamp(),
  request: {
    endpoint: "/v1/completions",
    max_tokens: MAX_TOKENS,
    temperature: 0,
    prompts: "MBPP test 11-26",
  },
  runs,
});
console.log(`wrote ${here("./results/api.json")}`);

writeReadmeSection(
  "bench-api",
  [
    `Measured ${new Date().toISOString().slice(0, 10)} (\`bench/api.ts\`, \`bench/results/api.json\`): \`npm start\`'s system (the edge in workerd, one node), \`/v1/completions\`, MBPP prompts, ≤ ${MAX_TOKENS} tokens, greedy, not streamed; aggregate completion tokens/s, median of ${ROUNDS} rounds (the ratios: median, then each round's). Every completion equal to its prompt's alone.`,
    "",
    `| batching | ${SHAPES.map((s) => s.name).join(" | ")} | 8 at once ÷ one at a time | 16 at once ÷ 8 in flight |`,
    `|---|${SHAPES.map(() => "---|").join("")}---|---|`,
    ...runs.map(
      (r) =>
        `| ${r.batching} | ${SHAPES.map((s) => (r.tokens_per_s[s.name] as number).toFixed(0)).join(" | ")} | ${fmt(r.eight_at_once_over_one_at_a_time)} | ${fmt(r.sixteen_at_once_over_eight_in_flight)} |`,
    ),
  ].join("\n"),
);
