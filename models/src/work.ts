/**
 * Model work as step machines. Everything the model does for a request (a generation, a rewrite
 * of marked regions, a repair, a verification) is a `Work`: `next()` says which rows it puts into
 * the next forward pass, `take()` applies that forward's results and returns what they produce.
 * A driver owns the forwards: `runAlone` below runs one piece of work by itself; the denoiser
 * node's scheduler runs many in shared, batched forwards. So the work knows nothing of batching,
 * and the driver nothing of diffusion.
 *
 * A step's rows go into one forward together (they are one step: a verification scores all its
 * half-blocks at once). A step with no rows needs no forward: the driver takes it at once.
 */
import type { DenoiserSession, ForwardInput, ForwardResult } from "./session.ts";

export interface Work<Output> {
  /** Finished: no more forwards, nothing more to say. */
  readonly done: boolean;
  /**
   * The rows this work puts into the next forward (none: a step that needs no forward). No side
   * effects: a driver may ask and then leave the work out of this forward.
   */
  next(): readonly ForwardInput[];
  /**
   * Whether it uses the forward's greedy row statistics (onnxruntime computes them for the whole
   * batch at once); otherwise it reads the logits in JavaScript.
   */
  readonly wantsStats: boolean;
  /** Applies the results of the rows `next()` gave, in their order; returns what they produce. */
  take(results: readonly ForwardResult[]): Output[];
  /** Ends the work early (its caller went away): what it says on the way out, if anything. */
  cancel(): Output[];
}

/** Runs one piece of work by itself, one forward per step: its outputs in order. */
export async function* runAlone<Output>(
  work: Work<Output>,
  session: DenoiserSession,
  signal?: AbortSignal,
): AsyncGenerator<Output> {
  while (!work.done) {
    if (signal?.aborted) {
      yield* work.cancel();
      return;
    }
    const rows = work.next();
    const results = rows.length > 0 ? await session.forwardBatch(rows, { stats: work.wantsStats }) : [];
    yield* work.take(results);
  }
}

/** The one result of work that answers once (an edit, a verification), run by itself. */
export async function resultAlone<Output>(work: Work<Output>, session: DenoiserSession): Promise<Output> {
  return onlyResult(runAlone(work, session));
}

/** Thrown for work that ended without its result: it was cancelled. */
export class WorkCancelledError extends Error {
  override name = "WorkCancelledError";
  constructor() {
    super("the work was cancelled before it finished");
  }
}

/** The last (for edits and verifications: the only) output, or WorkCancelledError if none came. */
export async function onlyResult<Output>(outputs: AsyncIterable<Output>): Promise<Output> {
  let result: { value: Output } | undefined;
  for await (const value of outputs) result = { value };
  if (!result) throw new WorkCancelledError();
  return result.value;
}
