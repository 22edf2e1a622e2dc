/**
 * Per-token FIFO locks shared by every backend of the process: one holder
 * at a time per key (module path and serial, or file path), released by
 * the function `acquire` resolves to. A PKCS#11 token has one login state
 * per application, and a PKCS#12 file is read and rewritten whole, so two
 * sessions on one token must never overlap.
 */
const tails = new Map<string, Promise<void>>();

/** Waits for every earlier holder of `key`, then returns the release function (safe to call twice). */
export async function acquireTokenLock(key: string): Promise<() => void> {
  let release!: () => void;
  const turn = new Promise<void>((resolve) => { release = resolve; });
  const previous = tails.get(key) ?? Promise.resolve();
  const tail = previous.then(() => turn);
  tails.set(key, tail);
  await previous;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    release();
    if (tails.get(key) === tail) tails.delete(key);
  };
}

/** Runs `fn` holding the lock of `key`. */
export async function withTokenLock<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
  const release = await acquireTokenLock(key);
  try {
    return await fn();
  } finally {
    release();
  }
}

/** A queue of one session's operations: each starts when the one before it has settled. */
export class OperationQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
