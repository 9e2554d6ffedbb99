/**
 * A request's account with its key's limiter: the tokens booked against the key, and the work
 * that still holds the key's lease (a "hold": the request itself, each stream it opened). When
 * the last hold ends, the account settles once: the lease is released and the tokens are booked
 * (limiter.ts). `metered` (metered.ts) is what books and holds; routes never do.
 */

export interface Meter {
  /** Books tokens the key consumed (prompt and completion, or what an edit or verification read). */
  book(tokens: number): void;
  /** Starts a piece of work that holds the lease; call the returned function (once is enough) when it ends. */
  hold(): () => void;
}

/** For keys without limits, and edges without a limiter: nothing to book or hold. */
export const UNMETERED: Meter = { book: () => {}, hold: () => () => {} };

export class KeyMeter implements Meter {
  /** Resolves once the account has settled (the limiter was told, or telling it failed). */
  readonly settled: Promise<void>;
  private tokens = 0;
  private holds = 0;
  private settle: () => void = () => {};

  /** `onSettle` tells the limiter: once, with every token booked, after the last hold ended. */
  constructor(onSettle: (tokens: number) => Promise<void>) {
    const lastHoldEnded = new Promise<void>((resolve) => {
      this.settle = resolve;
    });
    this.settled = lastHoldEnded.then(() => onSettle(this.tokens)).catch(() => {});
  }

  /** Whether some work still holds the lease (a stream the request opened, say). */
  get held(): boolean {
    return this.holds > 0;
  }

  book(tokens: number): void {
    if (Number.isFinite(tokens) && tokens > 0) this.tokens += tokens;
  }

  hold(): () => void {
    this.holds++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.holds === 0) this.settle();
    };
  }
}
