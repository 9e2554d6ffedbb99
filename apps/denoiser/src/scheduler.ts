/**
 * Continuous batching: all model work in flight (generations, edits, verifications: step
 * machines, models/src/work.ts) advances in shared forward passes.
 *
 * Each loop turn takes the active work that waited longest, as much as fits the batch limits
 * (sequences, and token slots: what the forward computes, padding included, as the session
 * plans its graph runs), runs one batched forward and hands each its rows
 * (session.forwardBatch pads and masks so each row computes what it would alone). A step's rows stay together in one forward; a step bigger than the limits runs in a
 * forward of its own. Work joins and leaves between forwards, at any step; work whose client
 * went away is dropped before the next forward, freeing its slot at once. Beyond the active
 * slots a bounded queue waits in arrival order; when that is full, `submit` refuses with a
 * QueueFullError carrying a Retry-After estimate. The scheduler knows nothing of what the work
 * computes: it only moves rows and results.
 */
import type { ForwardInput, ForwardResult, Work } from "../../../models/src/index.ts";

/**
 * The node's defaults (SPROUT_MAX_BATCH, SPROUT_MAX_BATCH_TOKENS), from bench/batch-shape.ts on
 * this 2-core CPU (README, "Under load"; the policy in apps/denoiser/README.md, "Batch limits"):
 * steps of 32 side by side stop getting cheaper per token at about 256 tokens a forward (8
 * sequences: 1.90× one at a time; 12 and 16: 1.84× and 1.82×), while steps of 8 keep gaining up
 * to 16 sequences (2.83× at 8, 3.06× at 16). So up to 16 sequences, within 512 token slots: twice
 * the knee, so that 8 blocks of 32 still fit beside commits and a prefill, and 16 small blocks
 * share a forward.
 */
export const DEFAULT_MAX_BATCH = 16;
export const DEFAULT_MAX_BATCH_TOKENS = 512;

export interface SchedulerOptions {
  /** Runs one batched forward: the model session's `forwardBatch` (with greedy row statistics when asked). */
  forward: (inputs: readonly ForwardInput[], options: { stats: boolean }) => Promise<ForwardResult[]>;
  /** Sequences in one forward, and units of work holding a slot (1: no batching, round robin). */
  maxBatch?: number;
  /** Token slots in one forward (`slots`); one step always fits. */
  maxBatchTokens?: number;
  /**
   * The token slots a forward of these inputs computes, padding included: the session's
   * `slots`, which knows how it splits a batch into graph runs. Default: sequences × the
   * longest input (one padded run).
   */
  slots?: (inputs: readonly ForwardInput[]) => number;
  /** Units of work waiting for a slot beyond the active ones. */
  maxQueue?: number;
  /** Called after every forward (metrics). */
  onForward?: (stats: ForwardStats) => void;
}

export interface SubmitOptions {
  /**
   * The work continues a request that was admitted already (a generation's verification): it is
   * never refused, and waits first in the queue.
   */
  admitted?: boolean;
}

export interface ForwardStats {
  sequences: number;
  /** Real input tokens (context and block) across the batch, and the slots computed (with padding). */
  tokens: number;
  paddedTokens: number;
  seconds: number;
}

export class QueueFullError extends Error {
  override name = "QueueFullError";
  constructor(readonly retryAfterSeconds: number) {
    super("the node is at capacity: every slot and the queue are full");
  }
}

interface Entry {
  work: Work<unknown>;
  channel: OutputChannel<unknown>;
  signal: AbortSignal | undefined;
  /** Loop turn in which it last took part in a forward (-1: never): oldest first. */
  servedAt: number;
  startedAt: number;
}

export class Scheduler {
  private readonly active: Entry[] = [];
  private readonly queue: Entry[] = [];
  private readonly maxBatch: number;
  private readonly maxBatchTokens: number;
  private readonly maxQueue: number;
  private readonly slots: (inputs: readonly ForwardInput[]) => number;
  private turn = 0;
  private running = false;
  /** Mean seconds a unit of work takes, for Retry-After (exponential moving average). */
  private meanSeconds = 1;

  constructor(private readonly options: SchedulerOptions) {
    this.maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    this.maxBatchTokens = options.maxBatchTokens ?? DEFAULT_MAX_BATCH_TOKENS;
    this.maxQueue = options.maxQueue ?? 32;
    this.slots = options.slots ?? paddedRun;
  }

  get load(): { active: number; queued: number } {
    return { active: this.active.length, queued: this.queue.length };
  }

  /**
   * Schedules work; its outputs arrive through the returned iterable, which ends when the work
   * is done. Work whose `signal` aborts is cancelled (its `cancel()` outputs come last) and leaves
   * its slot at once. Throws QueueFullError when every slot and the queue are taken.
   */
  submit<Output>(
    work: Work<Output>,
    signal?: AbortSignal,
    { admitted = false }: SubmitOptions = {},
  ): AsyncIterable<Output> {
    if (!admitted && this.active.length >= this.maxBatch && this.queue.length >= this.maxQueue) {
      const waves = Math.ceil((this.queue.length + 1) / this.maxBatch);
      throw new QueueFullError(Math.max(1, Math.ceil(waves * this.meanSeconds)));
    }
    const channel = new OutputChannel<Output>();
    const entry: Entry = { work, channel, signal, servedAt: -1, startedAt: 0 };
    if (this.active.length < this.maxBatch) this.activate(entry);
    else if (admitted) this.queue.unshift(entry);
    else this.queue.push(entry);
    signal?.addEventListener("abort", () => this.wake(), { once: true });
    this.wake();
    return channel;
  }

  private activate(entry: Entry): void {
    entry.startedAt = performance.now();
    this.active.push(entry);
  }

  private wake(): void {
    if (this.running) return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
      if (this.active.length > 0 || this.queue.length > 0) this.wake();
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.dropCancelled();
      while (this.active.length < this.maxBatch && this.queue.length > 0)
        this.activate(this.queue.shift() as Entry);
      if (this.active.length === 0) return;
      const { batch, inputs, slots } = this.pickBatch();
      let results: ForwardResult[] = [];
      if (inputs.length > 0) {
        const started = performance.now();
        try {
          const stats = batch.some(({ entry }) => entry.work.wantsStats);
          results = await this.options.forward(inputs, { stats });
        } catch (error) {
          for (const { entry } of batch) this.end(entry, error);
          continue;
        }
        this.options.onForward?.({
          sequences: inputs.length,
          tokens: inputs.reduce((a, i) => a + i.context.length + i.block.length, 0),
          paddedTokens: slots,
          seconds: (performance.now() - started) / 1000,
        });
      }
      this.turn++;
      let at = 0;
      for (const { entry, rows } of batch) {
        const own = results.slice(at, at + rows.length);
        at += rows.length;
        entry.servedAt = this.turn;
        try {
          for (const output of entry.work.take(own)) entry.channel.push(output);
          // A step without rows saw no forward: had it not finished, it would ask the same forever.
          if (rows.length === 0 && !entry.work.done)
            throw new Error("work took a step without rows and did not finish");
        } catch (error) {
          this.end(entry, error);
          continue;
        }
        if (entry.work.done) this.end(entry);
      }
    }
  }

  /**
   * Longest-waiting first, while the forward stays within its sequence and token-slot limits:
   * the work and its rows, all the rows in order, and the slots they take.
   */
  private pickBatch(): {
    batch: { entry: Entry; rows: readonly ForwardInput[] }[];
    inputs: readonly ForwardInput[];
    slots: number;
  } {
    const order = [...this.active].sort((a, b) => a.servedAt - b.servedAt);
    const batch: { entry: Entry; rows: readonly ForwardInput[] }[] = [];
    let inputs: readonly ForwardInput[] = [];
    let slots = 0;
    for (const entry of order) {
      const rows = entry.work.next();
      const joined = [...inputs, ...rows];
      const joinedSlots = this.slots(joined);
      const fits = joined.length <= this.maxBatch && joinedSlots <= this.maxBatchTokens;
      if (inputs.length > 0 && !fits) continue;
      inputs = joined;
      slots = joinedSlots;
      batch.push({ entry, rows });
    }
    return { batch, inputs, slots };
  }

  private dropCancelled(): void {
    for (const list of [this.active, this.queue]) {
      for (const entry of [...list]) {
        if (!entry.signal?.aborted) continue;
        for (const output of entry.work.cancel()) entry.channel.push(output);
        this.end(entry);
      }
    }
  }

  private end(entry: Entry, error?: unknown): void {
    for (const list of [this.active, this.queue]) {
      const at = list.indexOf(entry);
      if (at !== -1) list.splice(at, 1);
    }
    if (error === undefined) {
      const seconds = (performance.now() - entry.startedAt) / 1000;
      this.meanSeconds = 0.8 * this.meanSeconds + 0.2 * seconds;
      entry.channel.end();
    } else {
      entry.channel.fail(error);
    }
  }
}

/** Token slots of one graph run padded to the longest input. */
function paddedRun(inputs: readonly ForwardInput[]): number {
  return inputs.length * Math.max(0, ...inputs.map((i) => i.context.length + i.block.length));
}

/** An async iterable fed by pushes: outputs wait here until the consumer reads them. */
class OutputChannel<Output> implements AsyncIterable<Output> {
  /** Boxed, so that any output (even undefined) is told apart from none. */
  private readonly items: { output: Output }[] = [];
  private ended = false;
  private error: unknown;
  private waiting: (() => void) | undefined;

  push(output: Output): void {
    this.items.push({ output });
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(error: unknown): void {
    this.error = error ?? new Error("the work failed");
    this.end();
  }

  private notify(): void {
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Output> {
    for (;;) {
      const item = this.items.shift();
      if (item) {
        yield item.output;
        continue;
      }
      if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
    }
  }
}
