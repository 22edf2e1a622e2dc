import type { Executor } from "./executor.js";
import type { Millis } from "./types.js";

/** Failed operator sign-ins of one (account, client address) pair. */
export interface SignInBackoffRecord {
  /** Keyed hash of the operator id typed (see the server's operator service). */
  account: string;
  /** The client's address. */
  client: string;
  /** Failures in a row, counted since the last good sign-in or since they were forgotten. */
  failures: number;
  /** Sign-ins of this pair are refused until then; null when not paused. */
  pausedUntil: Millis | null;
  lastFailureAt: Millis;
}

export interface SignInBackoffRepository {
  get(account: string, client: string): Promise<SignInBackoffRecord | undefined>;
  /**
   * Counts one failure of the pair at `at`, atomically (the row is locked
   * while it changes, so instances agree): failures whose last one is
   * before `forgetBefore` are forgotten first; the pause is then
   * `pauseFor(failures)` milliseconds from `at` (0: none). Returns the record after.
   */
  recordFailure(account: string, client: string, at: Millis, forgetBefore: Millis, pauseFor: (failures: number) => number): Promise<SignInBackoffRecord>;
  /** Forgets the pair's failures (a good sign-in). */
  clear(account: string, client: string): Promise<void>;
  /** Forgets the failures of `account` from every client; returns how many clients were forgotten. */
  clearAccount(account: string): Promise<number>;
  /** The accounts paused at `at` for at least one client: how many clients, and until when at the latest. */
  paused(at: Millis): Promise<Array<{ account: string; clients: number; until: Millis }>>;
  /** Deletes pairs whose last failure was before `before`; returns how many. */
  purge(before: Millis): Promise<number>;
}

const COLUMNS = "account, client, failures, paused_until, last_failure_at";

interface BackoffRow {
  account: string; client: string; failures: number | string; paused_until: number | string | null; last_failure_at: number | string;
}

function toBackoff(r: BackoffRow): SignInBackoffRecord {
  return {
    account: r.account, client: r.client, failures: Number(r.failures),
    pausedUntil: r.paused_until === null ? null : Number(r.paused_until), lastFailureAt: Number(r.last_failure_at),
  };
}

/** Back-off of operator sign-in per account and client address, shared by every instance on the database. */
export function signInBackoffRepository(x: Executor): SignInBackoffRepository {
  const get = async (account: string, client: string) => {
    const rows = await x.sql.query<BackoffRow>(`SELECT ${COLUMNS} FROM operator_sign_in_backoffs WHERE account = ? AND client = ?`, [account, client]);
    return rows[0] && toBackoff(rows[0]);
  };
  return {
    get,
    async recordFailure(account, client, at, forgetBefore, pauseFor) {
      return x.atomic(async (tx) => {
        await tx.run(`INSERT INTO operator_sign_in_backoffs (${COLUMNS}) VALUES (?, ?, 0, NULL, ?) ON CONFLICT (account, client) DO NOTHING`, [account, client, at]);
        const rows = await tx.query<BackoffRow>(`SELECT ${COLUMNS} FROM operator_sign_in_backoffs WHERE account = ? AND client = ? FOR UPDATE`, [account, client]);
        const before = toBackoff(rows[0]!);
        const failures = (before.lastFailureAt < forgetBefore ? 0 : before.failures) + 1;
        const pause = pauseFor(failures);
        const after: SignInBackoffRecord = { account, client, failures, pausedUntil: pause > 0 ? at + pause : null, lastFailureAt: at };
        await tx.run("UPDATE operator_sign_in_backoffs SET failures = ?, paused_until = ?, last_failure_at = ? WHERE account = ? AND client = ?", [
          after.failures, after.pausedUntil, after.lastFailureAt, account, client,
        ]);
        return after;
      });
    },
    async clear(account, client) {
      await x.sql.run("DELETE FROM operator_sign_in_backoffs WHERE account = ? AND client = ?", [account, client]);
    },
    async clearAccount(account) {
      return x.sql.run("DELETE FROM operator_sign_in_backoffs WHERE account = ?", [account]);
    },
    async paused(at) {
      const rows = await x.sql.query<{ account: string; clients: number | string; until: number | string }>(
        "SELECT account, COUNT(*) AS clients, MAX(paused_until) AS until FROM operator_sign_in_backoffs WHERE paused_until > ? GROUP BY account ORDER BY account", [at]);
      return rows.map((r) => ({ account: r.account, clients: Number(r.clients), until: Number(r.until) }));
    },
    async purge(before) {
      return x.sql.run("DELETE FROM operator_sign_in_backoffs WHERE last_failure_at < ?", [before]);
    },
  };
}
