/**
 * Continuous batching: every generation in flight advances in shared forward passes.
 *
 * Each loop turn takes the active generations that waited longest, as many as fit the batch
 * limits (sequences, and padded tokens: sequences × the longest input), runs one batched forward
 * and hands each its rows (session.forwardBatch pads and masks so each row computes what it
 * would alone). Generations join and leave between forwards, at any step; a generation whose
 * client went away is dropped before the next forward, freeing its slot at once. Beyond the
 * active slots a bounded queue waits in arrival order; when that is full, `submit` refuses with
 * a QueueFullError carrying a Retry-After estimate.
 */
import type { DecodeEvent, ForwardInput, ForwardResult, Generation } from "../../../models/src/index.ts";

export interface SchedulerOptions {
  /** Runs one batched forward: the model session's `forwardBatch` (with greedy row statistics when asked). */
  forward: (inputs: readonly ForwardInput[], options: { stats: boolean }) => Promise<ForwardResult[]>;
  /** Sequences in one forward (1: no batching, one sequence per forward, round robin). */
  maxBatch?: number;
  /** Padded tokens in one forward (sequences × longest input); one sequence always fits. */
  maxBatchTokens?: number;
  /** Generations waiting for a slot beyond the active ones. */
  maxQueue?: number;
  /** Called after every forward (metrics). */
  onForward?: (stats: ForwardStats) => void;
}

export interface ForwardStats {
  sequences: number;
  /** Real input tokens (context and block) across the batch, and with padding. */
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
  generation: Generation;
  channel: EventChannel;
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
  private turn = 0;
  private running = false;
  /** Mean seconds a generation takes, for Retry-After (exponential moving average). */
  private meanSeconds = 1;

  constructor(private readonly options: SchedulerOptions) {
    this.maxBatch = options.maxBatch ?? 8;
    this.maxBatchTokens = options.maxBatchTokens ?? 1024;
    this.maxQueue = options.maxQueue ?? 32;
  }

  get load(): { active: number; queued: number } {
    return { active: this.active.length, queued: this.queue.length };
  }

  /**
   * Schedules a generation; its events arrive through the returned iterable (start first). A
   * generation whose `signal` aborts ends with `done: cancelled` and leaves its slot at once.
   */
  submit(generation: Generation, signal?: AbortSignal): AsyncIterable<DecodeEvent> {
    if (this.active.length >= this.maxBatch && this.queue.length >= this.maxQueue) {
      const waves = Math.ceil((this.queue.length + 1) / this.maxBatch);
      throw new QueueFullError(Math.max(1, Math.ceil(waves * this.meanSeconds)));
    }
    const entry: Entry = { generation, channel: new EventChannel(), signal, servedAt: -1, startedAt: 0 };
    entry.channel.push(generation.start);
    if (this.active.length < this.maxBatch) this.activate(entry);
    else this.queue.push(entry);
    signal?.addEventListener("abort", () => this.wake(), { once: true });
    this.wake();
    return entry.channel;
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
      const batch = this.pickBatch();
      const inputs = batch.map(({ entry }) => entry.generation.next() as ForwardInput);
      const started = performance.now();
      let results: ForwardResult[];
      try {
        const stats = batch.some(({ entry }) => entry.generation.wantsStats);
        results = await this.options.forward(inputs, { stats });
      } catch (error) {
        for (const { entry } of batch) this.end(entry, error);
        continue;
      }
      const tokens = inputs.map((i) => i.context.length + i.block.length);
      this.options.onForward?.({
        sequences: batch.length,
        tokens: tokens.reduce((a, b) => a + b, 0),
        paddedTokens: batch.length * Math.max(...tokens),
        seconds: (performance.now() - started) / 1000,
      });
      this.turn++;
      batch.forEach(({ entry }, row) => {
        entry.servedAt = this.turn;
        try {
          for (const event of entry.generation.take(results[row] as ForwardResult)) entry.channel.push(event);
        } catch (error) {
          this.end(entry, error);
          return;
        }
        if (entry.generation.done) this.end(entry);
      });
    }
  }

  /** Longest-waiting first, while the batch stays within its sequence and padded-token limits. */
  private pickBatch(): { entry: Entry }[] {
    const order = [...this.active].sort((a, b) => a.servedAt - b.servedAt);
    const batch: { entry: Entry }[] = [];
    let longest = 0;
    for (const entry of order) {
      if (batch.length === this.maxBatch) break;
      const input = entry.generation.next() as ForwardInput;
      const length = Math.max(longest, input.context.length + input.block.length);
      if (batch.length > 0 && (batch.length + 1) * length > this.maxBatchTokens) continue;
      longest = length;
      batch.push({ entry });
    }
    return batch;
  }

  private dropCancelled(): void {
    for (const list of [this.active, this.queue]) {
      for (const entry of [...list]) {
        if (!entry.signal?.aborted) continue;
        for (const event of entry.generation.cancel()) entry.channel.push(event);
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

/** An async iterable fed by pushes: events wait here until the consumer reads them. */
class EventChannel implements AsyncIterable<DecodeEvent> {
  private readonly items: DecodeEvent[] = [];
  private ended = false;
  private error: unknown;
  private waiting: (() => void) | undefined;

  push(event: DecodeEvent): void {
    this.items.push(event);
    this.notify();
  }

  end(): void {
    this.ended = true;
    this.notify();
  }

  fail(error: unknown): void {
    this.error = error ?? new Error("generation failed");
    this.end();
  }

  private notify(): void {
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<DecodeEvent> {
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) {
        yield item;
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
