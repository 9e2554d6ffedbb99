/**
 * The node's Prometheus metrics (prom-client), one registry per node so that several nodes in one
 * process (tests) keep their own counts. Names follow Prometheus conventions: `_total` counters,
 * `_seconds` histograms.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ForwardStats } from "./scheduler.ts";

export type Outcome = "finished" | "cancelled" | "failed";
/** Work that answers once (generations have their own metrics). */
export type WorkKind = "edit" | "verification";

export class NodeMetrics {
  private readonly registry = new Registry();
  private readonly forwards = new Counter({
    name: "sprout_forward_passes_total",
    help: "Forward passes of the graph (each may batch several generations, edits and verifications)",
    registers: [this.registry],
  });
  private readonly forwardSeconds = new Histogram({
    name: "sprout_forward_seconds",
    help: "Wall time of one batched forward pass",
    buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
    registers: [this.registry],
  });
  private readonly batchSize = new Histogram({
    name: "sprout_batch_sequences",
    help: "Sequences (rows: of generations, edits, verifications) in one forward pass",
    buckets: [1, 2, 4, 8, 16, 32],
    registers: [this.registry],
  });
  private readonly inputTokens = new Counter({
    name: "sprout_forward_tokens_total",
    help: "Tokens fed to forward passes: real (context and block) or padded",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  // Per model: the counters above sum every model the node serves.
  private readonly modelForwards = new Counter({
    name: "sprout_model_forward_passes_total",
    help: "Forward passes by model (a forward runs one model's session: batches never mix models)",
    labelNames: ["model"],
    registers: [this.registry],
  });
  private readonly modelGenerations = new Counter({
    name: "sprout_model_generations_total",
    help: "Generations that ended, by model and outcome",
    labelNames: ["model", "outcome"],
    registers: [this.registry],
  });
  private readonly generated = new Counter({
    name: "sprout_generated_tokens_total",
    help: "Tokens generated (committed) by finished and cancelled generations",
    registers: [this.registry],
  });
  private readonly generations = new Counter({
    name: "sprout_generations_total",
    help: "Generations that ended, by outcome",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  private readonly edits = new Counter({
    name: "sprout_edits_total",
    help: "Edits (rewrites and repairs) that ended, by outcome",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  private readonly verifications = new Counter({
    name: "sprout_verifications_total",
    help: "Verifications that ended (of /v1/verify, and of generations asking for one), by outcome",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  // The names below predate edits and verifications in the scheduler: they count all its work.
  private readonly refused = new Counter({
    name: "sprout_generations_rejected_total",
    help: "Requests (generations, edits, verifications) refused with 503 because every slot and the queue were full",
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: "sprout_generation_seconds",
    help: "Time from request to the end of the stream",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly firstBlockSeconds = new Histogram({
    name: "sprout_time_to_first_block_seconds",
    help: "Time from request to its first committed block",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  private readonly active = new Gauge({
    name: "sprout_active_generations",
    help: "Units of work (generations, edits, verifications) holding a batch slot",
    registers: [this.registry],
  });
  private readonly queued = new Gauge({
    name: "sprout_queued_generations",
    help: "Units of work (generations, edits, verifications) waiting for a slot",
    registers: [this.registry],
  });

  readonly contentType = this.registry.contentType;

  forward({ sequences, tokens, paddedTokens, seconds }: ForwardStats, model: string): void {
    this.forwards.inc();
    this.modelForwards.inc({ model });
    this.forwardSeconds.observe(seconds);
    this.batchSize.observe(sequences);
    this.inputTokens.inc({ kind: "real" }, tokens);
    this.inputTokens.inc({ kind: "padded" }, paddedTokens);
  }

  generation(model: string, outcome: Outcome, seconds: number, tokens: number): void {
    this.generations.inc({ outcome });
    this.modelGenerations.inc({ model, outcome });
    this.latency.observe(seconds);
    this.generated.inc(tokens);
  }

  work(kind: WorkKind, outcome: Outcome): void {
    (kind === "edit" ? this.edits : this.verifications).inc({ outcome });
  }

  firstBlock(seconds: number): void {
    this.firstBlockSeconds.observe(seconds);
  }

  rejected(): void {
    this.refused.inc();
  }

  load({ active, queued }: { active: number; queued: number }): void {
    this.active.set(active);
    this.queued.set(queued);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
