import { UkeyError } from "@ukey/policy";

/** What a PasswordHashQueue has done since it was made, and holds now. */
export interface PasswordHashQueueStats {
  /** Hashes running now (at most `concurrency`). */
  running: number;
  /** Hashes waiting for a slot now (at most `maxWaiting`). */
  waiting: number;
  /** Hashes started, whether they waited first or not. */
  hashed: number;
  /** Hashes refused at once (SIGN_IN_BUSY): none of them waited or ran. */
  refused: number;
  /** The most hashes that ever ran at once. */
  peakRunning: number;
  /** The most hashes that ever waited at once. */
  peakWaiting: number;
}

/**
 * Runs password hashes a few at a time, with a bounded wait list: scrypt
 * runs on libuv's shared thread pool (four threads by default), where file
 * and crypto work of renewals runs too, so unauthenticated sign-ins must
 * never fill it. `concurrency` hashes run at once (default 1); up to
 * `maxWaiting` more wait their turn (default 16); any further one is
 * refused at once with SIGN_IN_BUSY and a Retry-After from the hashes
 * ahead of it and the time a hash has been taking. One queue serves the
 * whole process (ServerContext.signInHashes): the thread pool it guards is
 * the process's, whichever listener a sign-in came in on.
 *
 * p-queue would do the queueing, but its current major needs Node 22 and
 * the refusal at a bound is the part that matters here.
 */
export class PasswordHashQueue {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** Moving average of one hash's duration, for the Retry-After of a refusal. */
  private averageMs = 100;
  private readonly counts = { hashed: 0, refused: 0, peakRunning: 0, peakWaiting: 0 };

  constructor(private readonly opts: { concurrency?: number; maxWaiting?: number } = {}) {}

  /** Hashes running now and waiting. */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  /** The counts since this queue was made, and the load now (for /metrics). */
  stats(): PasswordHashQueueStats {
    return { ...this.load, ...this.counts };
  }

  /**
   * Throws SIGN_IN_BUSY when a hash asked for now would be refused, so that
   * a caller can refuse before doing any other work for the request.
   */
  refuseWhenFull(): void {
    const concurrency = this.opts.concurrency ?? 1;
    if (this.running >= concurrency && this.waiting.length >= (this.opts.maxWaiting ?? 16)) {
      this.counts.refused++;
      const ahead = this.running + this.waiting.length;
      throw new UkeyError("SIGN_IN_BUSY", { params: { seconds: Math.max(1, Math.ceil((ahead / concurrency) * this.averageMs / 1000)) } });
    }
  }

  /**
   * Runs `hash` when a slot is free.
   * @throws UkeyError SIGN_IN_BUSY when the wait list is full (nothing is run then); whatever `hash` throws.
   */
  async run<T>(hash: () => Promise<T>): Promise<T> {
    const concurrency = this.opts.concurrency ?? 1;
    if (this.running >= concurrency) {
      this.refuseWhenFull();
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve);
        this.counts.peakWaiting = Math.max(this.counts.peakWaiting, this.waiting.length);
      });
    } else {
      this.running++;
      this.counts.peakRunning = Math.max(this.counts.peakRunning, this.running);
    }
    this.counts.hashed++;
    const started = performance.now();
    try {
      return await hash();
    } finally {
      this.averageMs = this.averageMs * 0.8 + (performance.now() - started) * 0.2;
      // The slot passes straight to the next in line, so `running` never dips while someone waits.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
