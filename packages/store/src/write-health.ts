import type { UkeyError } from "@ukey/policy";

/**
 * Whether a database can still write: the storage failure of the last
 * write when no write has succeeded since, and how many writes failed for
 * lack of space. Both engines keep one; readiness (`/readyz`) reads it.
 * It holds no time: the server stamps what it reports with its own clock.
 */
export class WriteHealth {
  /** The STORAGE_FULL error of the last failed write, while no write has succeeded since it; undefined otherwise. */
  failing: UkeyError | undefined;
  /** Writes refused for lack of space since the database was opened. */
  failures = 0;

  /** A write failed for lack of space. */
  failed(e: UkeyError): void {
    this.failing = e;
    this.failures += 1;
  }

  /** A write committed: storage works again, whatever failed before. */
  succeeded(): void {
    if (this.failing !== undefined) this.failing = undefined;
  }
}
