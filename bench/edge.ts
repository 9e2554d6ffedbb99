/**
 * `npm run bench:edge` (also the last part of `npm run bench`): what the edge adds. Starts the
 * whole system as `npm start` does (the edge in workerd under wrangler dev, one denoiser node),
 * then sends the same native generation to the node directly and through the edge, alternating,
 * and compares the time to the first block and to the end of the stream (p50, p99). Prints a
 * table, writes bench/results/edge.json and puts the table into the README.
 */
import { randomBytes } from "node:crypto";
import { createParser } from "eventsource-parser";
import { quantiles } from "../test/support/load.ts";
import { startSprout, whenReady } from "../test/support/sprout.ts";
import { stamp, writeReadmeSection, writeResult } from "./report.ts";

const ROUNDS = 60;
const key = `sk-sprout-${randomBytes(24).toString("base64url")}`;
const secret = randomBytes(32).toString("hex");
const [edgePort, nodePort] = [18787, 18788];

const sprout = startSprout({
  SPROUT_API_KEY: key,
  SPROUT_NODE_SECRET: secret,
  SPROUT_EDGE_PORT: String(edgePort),
  SPROUT_NODE_PORT: String(nodePort),
});
await whenReady(sprout);

const body = { prompt: "def add(a, b):\n", max_tokens: 16, block_size: 8 };
/** One generation: ms to the first block event and to the end of the stream. */
async function timed(url: string, bearer: string, extra: object): Promise<{ first: number; total: number }> {
  const t0 = performance.now();
  const response = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify({ ...body, ...extra }),
  });
  if (!response.ok || !response.body) throw new Error(`${url} answered ${response.status}`);
  let first = 0;
  const parser = createParser({
    onEvent: (event) => {
      if (event.event === "block" && first === 0) first = performance.now() - t0;
    },
  });
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    parser.feed(decoder.decode(read.value, { stream: true }));
  }
  return { first, total: performance.now() - t0 };
}

const direct: { first: number; total: number }[] = [];
const viaEdge: { first: number; total: number }[] = [];
const nodeUrl = `http://127.0.0.1:${nodePort}/v1/generate`;
const edgeUrl = `http://127.0.0.1:${edgePort}/v1/generate`;
for (let round = -3; round < ROUNDS; round++) {
  const a = await timed(nodeUrl, secret, {});
  const b = await timed(edgeUrl, key, { model: "sprout-tiny" });
  if (round < 0) continue; // warm-up
  direct.push(a);
  viaEdge.push(b);
}
sprout.child.kill("SIGINT");

const summary = (runs: { first: number; total: number }[]) => {
  const first = quantiles(runs.map((r) => r.first));
  const total = quantiles(runs.map((r) => r.total));
  return {
    first_block_p50_ms: first.p50,
    first_block_p99_ms: first.p99,
    total_p50_ms: total.p50,
    total_p99_ms: total.p99,
  };
};
const rows = { node: summary(direct), edge: summary(viaEdge) };
const added = {
  first_block_p50_ms: rows.edge.first_block_p50_ms - rows.node.first_block_p50_ms,
  total_p50_ms: rows.edge.total_p50_ms - rows.node.total_p50_ms,
  total_p99_ms: rows.edge.total_p99_ms - rows.node.total_p99_ms,
};
console.log(
  `\nThe same native generation (${body.max_tokens} tokens, blocks of ${body.block_size}), ${ROUNDS} rounds, alternating`,
);
console.table(
  Object.entries(rows).map(([path, r]) => ({
    path: path === "node" ? "node directly" : "through the edge (wrangler dev)",
    "first block p50 ms": r.first_block_p50_ms.toFixed(1),
    "first block p99 ms": r.first_block_p99_ms.toFixed(1),
    "stream p50 ms": r.total_p50_ms.toFixed(1),
    "stream p99 ms": r.total_p99_ms.toFixed(1),
  })),
);
console.log(
  `The edge adds ${added.total_p50_ms.toFixed(1)} ms at p50 (${added.total_p99_ms.toFixed(1)} ms at p99).`,
);

const result = {
  ...stamp(),
  request: body,
  rounds: ROUNDS,
  ...rows,
  added,
};
writeResult("edge", result);
const markdown = [
  `Measured ${result.date.slice(0, 10)} (\`bench/results/edge.json\`): the same native generation (${body.max_tokens} tokens, blocks of ${body.block_size}), ${ROUNDS} rounds, alternating.`,
  "",
  "| path | first block p50 (ms) | first block p99 (ms) | whole stream p50 (ms) | whole stream p99 (ms) |",
  "|---|---|---|---|---|",
  ...Object.entries(rows).map(
    ([path, r]) =>
      `| ${path === "node" ? "node directly" : "through the edge (workerd, wrangler dev)"} | ${r.first_block_p50_ms.toFixed(1)} | ${r.first_block_p99_ms.toFixed(1)} | ${r.total_p50_ms.toFixed(1)} | ${r.total_p99_ms.toFixed(1)} |`,
  ),
  "",
  `Through wrangler dev the edge adds ${added.total_p50_ms.toFixed(1)} ms at p50 and ${added.total_p99_ms.toFixed(1)} ms at p99: its proxy's share and the edge's own work (auth, validation, the pool, SSE re-encoding) together; the edge's own work alone is measured below.`,
].join("\n");
writeReadmeSection("bench-edge", markdown);
