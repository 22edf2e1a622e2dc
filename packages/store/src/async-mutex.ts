/**
 * A FIFO mutex for async work. SQLite has one connection and one writer, so
 * an async transaction body must never interleave with another statement.
 */
export class AsyncMutex {
  private tail: Promise<void> = Promise.resolve();

  /** Runs `fn` once every earlier holder has finished; never throws by itself. */
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    let release!: () => void;
    const turn = new Promise<void>((resolve) => { release = resolve; });
    const previous = this.tail;
    this.tail = previous.then(() => turn);
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
