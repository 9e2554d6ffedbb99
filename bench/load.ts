/**
 * `npm run bench:load` (also part of `npm run bench`): the whole system under load, over
 * loopback. For batching on (SPROUT_MAX_BATCH=8) and off (=1), starts it as `npm start` does and
 * runs STREAMS concurrent streaming generations through the edge for SECONDS (test/support/
 * load.ts): failures, time to first block and to the end of the stream (p50/p95/p99), tokens/s,
 * and the resident memory of the whole process tree over time. Then times the edge's refusal of
 * keys that are wrong in the last character against keys wrong in the first (a timing leak in
 * the comparison would show as a difference). Prints tables, writes bench/results/load.json;
 * `npm run reliability` puts the figures into docs/RELIABILITY.md.
 */
import { randomBytes } from "node:crypto";
import { type LoadResult, quantiles, runLoad } from "../test/support/load.ts";
import { freePort, startSprout, whenReady } from "../test/support/sprout.ts";
import { stamp, writeResult } from "./report.ts";

const STREAMS = Number(process.env.LOAD_STREAMS ?? 8);
const SECONDS = Number(process.env.LOAD_SECONDS ?? 30);
const AUTH_ROUNDS = 300;
const key = `sk-sprout-${randomBytes(32).toString("base64url").slice(0, 43)}`;

const runs: (LoadResult & { batching: string })[] = [];
let authTiming: { near_miss_p50_ms: number; far_miss_p50_ms: number; rounds: number } | undefined;
for (const [batching, maxBatch] of [
  ["on", "8"],
  ["off", "1"],
] as const) {
  const [edgePort, nodePort] = [await freePort(), await freePort()];
  const sprout = startSprout({
    SPROUT_API_KEY: key,
    SPROUT_EDGE_PORT: String(edgePort),
    SPROUT_NODE_PORT: String(nodePort),
    SPROUT_MAX_BATCH: maxBatch,
  });
  await whenReady(sprout);
  const url = `http://127.0.0.1:${edgePort}`;
  await runLoad({ url, key, streams: 2, seconds: 2 }); // warm-up
  const result = await runLoad({ url, key, streams: STREAMS, seconds: SECONDS, rootPid: sprout.child.pid });
  runs.push({ batching, ...result });
  console.log(
    `batching ${batching}: ${result.completed}/${result.requests} streams, errors ${JSON.stringify(result.errors)}`,
  );

  if (!authTiming) {
    const refusal = async (presented: string) => {
      const t0 = performance.now();
      const response = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${presented}` } });
      await response.body?.cancel();
      if (response.status !== 401) throw new Error(`a wrong key got ${response.status}`);
      return performance.now() - t0;
    };
    const near = `${key.slice(0, -1)}${key.endsWith("A") ? "B" : "A"}`;
    const far = `${key.startsWith("x") ? "y" : "x"}${key.slice(1)}`;
    const nearMs: number[] = [];
    const farMs: number[] = [];
    for (let i = 0; i < AUTH_ROUNDS; i++) {
      nearMs.push(await refusal(near));
      farMs.push(await refusal(far));
    }
    authTiming = {
      near_miss_p50_ms: quantiles(nearMs).p50,
      far_miss_p50_ms: quantiles(farMs).p50,
      rounds: AUTH_ROUNDS,
    };
  }
  sprout.child.kill("SIGINT");
  await sprout.exited;
}

console.log(
  `\n${STREAMS} concurrent streaming generations through the edge for ${SECONDS} s (32 tokens, blocks of 8)`,
);
console.table(
  runs.map((r) => ({
    batching: r.batching,
    streams: `${r.completed}/${r.requests}`,
    errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
    "first block p50/p95/p99 ms": `${r.first_block_ms.p50.toFixed(0)} / ${r.first_block_ms.p95.toFixed(0)} / ${r.first_block_ms.p99.toFixed(0)}`,
    "stream p50/p95/p99 ms": `${r.stream_ms.p50.toFixed(0)} / ${r.stream_ms.p95.toFixed(0)} / ${r.stream_ms.p99.toFixed(0)}`,
    "tokens/s": r.tokens_per_s.toFixed(0),
    "memory MB start/peak/end": `${r.memory_mb.start} / ${r.memory_mb.peak} / ${r.memory_mb.end}`,
  })),
);
console.log(
  `Refusing a key wrong in its last character: ${authTiming?.near_miss_p50_ms.toFixed(2)} ms p50; in its first: ${authTiming?.far_miss_p50_ms.toFixed(2)} ms (${AUTH_ROUNDS} each, alternating).`,
);

writeResult("load", {
  ...stamp(),
  request: { max_tokens: 32, block_size: 8 },
  runs,
  auth_timing: authTiming,
});
