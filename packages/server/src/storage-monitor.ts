import type { ErrorCode, UkeyError } from "@ukey/policy";
import type { Database } from "@ukey/store";

/** Codes that say the storage, not the request, failed: logged as a count per interval, not one line (and stack) per request. */
export const STORAGE_FAILURE_CODES: readonly ErrorCode[] = ["STORAGE_FULL", "DATABASE_UNAVAILABLE", "DATABASE_READ_ONLY", "DATA_DIR_CORRUPT"];

type Log = {
  error(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
};

/** What `/readyz` answers when the server can serve. */
export interface Readiness {
  status: "ready";
  engine: Database["engine"];
}

/**
 * The server's view of its storage: readiness, and the log of requests
 * refused because storage failed.
 *
 * Refusals: the first of a run is logged at once (one line, no stack),
 * then at most one line per `failureLogSeconds` with the count and the
 * last reason, then one line once an interval passes without a refusal
 * (and, for a full disk, writes succeed again). A full disk under
 * load refuses thousands of requests a second; one line each would fill
 * what little space is left and bury the cause.
 *
 * Readiness: the database answers, and the last write did not fail for
 * lack of space, or a probe write succeeds now (so an instance a load
 * balancer took out of rotation comes back by itself once space is freed).
 */
export class StorageMonitor {
  private refused = 0;
  private refusedTotal = 0;
  private last: { code: string; reason: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private probing: Promise<void> | undefined;

  constructor(private readonly deps: { db: Database; log: Log; failureLogSeconds: number }) {}

  /**
   * Counts a request refused with `u` when it is a storage failure
   * (STORAGE_FAILURE_CODES) and returns true: it is then logged here, not
   * by the caller. Returns false for any other error.
   */
  noteRefusal(u: UkeyError, url: string): boolean {
    if (!STORAGE_FAILURE_CODES.includes(u.code)) return false;
    const reason = String(u.params.reason ?? u.detail ?? "");
    this.last = { code: u.code, reason };
    this.refusedTotal += 1;
    if (this.timer === undefined) {
      this.deps.log.error({ code: u.code, reason, url, everySeconds: this.deps.failureLogSeconds },
        `storage failing: a request was refused with ${u.code}; further refusals are counted and logged once per ${this.deps.failureLogSeconds} s`);
      this.schedule();
    } else {
      this.refused += 1;
    }
    return true;
  }

  /**
   * Readiness. Throws UkeyError DATABASE_UNAVAILABLE (or DATA_DIR_CORRUPT)
   * when the database does not answer, STORAGE_FULL while writes still
   * fail for lack of space.
   */
  async readiness(): Promise<Readiness> {
    await this.deps.db.query("SELECT probes FROM storage_probe WHERE id = 1");
    if (this.deps.db.health.failing) await this.probe();
    return { status: "ready", engine: this.deps.db.engine };
  }

  /** Stops the interval log, writing what it had not written yet. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
  }

  /** One probe at a time, however many readiness requests arrive together. */
  private probe(): Promise<void> {
    this.probing ??= this.deps.db.probeWrite().finally(() => { this.probing = undefined; });
    return this.probing;
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const failing = this.flush();
      if (failing) this.schedule();
    }, this.deps.failureLogSeconds * 1000);
    this.timer.unref();
  }

  /** Logs the refusals counted since the last line; returns whether storage is still failing. */
  private flush(): boolean {
    const n = this.refused;
    this.refused = 0;
    if (n > 0) {
      this.deps.log.error({ code: this.last?.code, reason: this.last?.reason, refused: n, seconds: this.deps.failureLogSeconds },
        `storage failing: ${n} requests refused with ${this.last?.code} in the last ${this.deps.failureLogSeconds} s`);
      return true;
    }
    if (this.deps.db.health.failing) return true;
    if (this.last) {
      this.deps.log.info({ refusedInAll: this.refusedTotal, seconds: this.deps.failureLogSeconds },
        `storage: no request refused in the last ${this.deps.failureLogSeconds} s (${this.refusedTotal} refused in all)`);
      this.last = undefined;
      this.refusedTotal = 0;
    }
    return false;
  }
}
