import { UkeyError } from "@ukey/policy";
import type { Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { Millis } from "./types.js";

/**
 * One one-time code issued for a holder's sign-in. The code itself is never
 * stored, only its keyed hash. A decoy (holderId null) is issued for a
 * customer number that names nobody reachable: it behaves like a code that
 * was sent, and no code matches it.
 */
export interface HolderSignInRecord {
  id: string;
  /** Keyed hash of the customer number typed: the key of its quota. */
  subject: string;
  /** null for a decoy. */
  holderId: string | null;
  channel: "sms" | "email";
  /** The destination masked ("159*****005"); empty for a decoy. Never shown to the one who asked. */
  sentTo: string;
  /** Keyed hash (hex) of the code. */
  codeHash: string;
  expiresAt: Millis;
  /** Wrong codes given so far. */
  attempts: number;
  status: "open" | "used" | "locked";
  createdAt: Millis;
  updatedAt: Millis;
}

/** What one customer number used in its current 24-hour window. */
export interface HolderSignInQuota {
  subject: string;
  windowStart: Millis;
  codesSent: number;
  wrongCodes: number;
  lastSentAt: Millis | null;
  updatedAt: Millis;
}

export interface HolderSignInRepository {
  /** Throws UkeyError HOLDER_NOT_FOUND for an unknown holder, RECORD_DUPLICATE for an existing id. */
  insert(r: HolderSignInRecord): Promise<void>;
  /** Reads one and locks its row until the transaction ends (PostgreSQL), so that two checks of one code queue. */
  getForUpdate(id: string): Promise<HolderSignInRecord | undefined>;
  /** Sets attempts and status. Throws RECORD_NOT_FOUND. */
  update(id: string, patch: Pick<HolderSignInRecord, "attempts" | "status">, at: Millis): Promise<void>;
  /**
   * The quota of `subject`, created when missing and started afresh when its
   * window began `windowMs` or more before `at`; its row is locked until the
   * transaction ends, so that instances checking one customer number queue.
   * Use inside store.transaction, then `saveQuota`.
   */
  lockQuota(subject: string, at: Millis, windowMs: number): Promise<HolderSignInQuota>;
  /** Writes a quota read by `lockQuota`. */
  saveQuota(q: HolderSignInQuota): Promise<void>;
  /** Deletes codes that expired before `codesBefore` and quotas whose window started before `quotasBefore`; returns how many rows went. */
  purge(codesBefore: Millis, quotasBefore: Millis): Promise<number>;
}

const COLUMNS = "id, subject, holder_id, channel, sent_to, code_hash, expires_at, attempts, status, created_at, updated_at";
const QUOTA_COLUMNS = "subject, window_start, codes_sent, wrong_codes, last_sent_at, updated_at";

interface SignInRow {
  id: string; subject: string; holder_id: string | null; channel: string; sent_to: string; code_hash: string; expires_at: number | string;
  attempts: number | string; status: string; created_at: number | string; updated_at: number | string;
}

interface QuotaRow {
  subject: string; window_start: number | string; codes_sent: number | string; wrong_codes: number | string;
  last_sent_at: number | string | null; updated_at: number | string;
}

function toSignIn(r: SignInRow): HolderSignInRecord {
  return {
    id: r.id, subject: r.subject, holderId: r.holder_id, channel: r.channel as HolderSignInRecord["channel"], sentTo: r.sent_to, codeHash: r.code_hash,
    expiresAt: Number(r.expires_at), attempts: Number(r.attempts), status: r.status as HolderSignInRecord["status"],
    createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

function toQuota(r: QuotaRow): HolderSignInQuota {
  return {
    subject: r.subject, windowStart: Number(r.window_start), codesSent: Number(r.codes_sent), wrongCodes: Number(r.wrong_codes),
    lastSentAt: r.last_sent_at === null ? null : Number(r.last_sent_at), updatedAt: Number(r.updated_at),
  };
}

/** One-time codes of holder sign-in and the quotas of customer numbers (see the server's holder-session). */
export function holderSignInRepository(x: Executor): HolderSignInRepository {
  return {
    async insert(r) {
      try {
        await x.sql.run(`INSERT INTO holder_sign_ins (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          r.id, r.subject, r.holderId, r.channel, r.sentTo, r.codeHash, r.expiresAt, r.attempts, r.status, r.createdAt, r.updatedAt,
        ]);
      } catch (e) {
        if (foreignKeyViolation(e)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: r.holderId ?? "" }, cause: e });
        if (uniqueViolation(e) !== undefined) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `sign-in ${r.id}` }, cause: e });
        throw e;
      }
    },
    async getForUpdate(id) {
      const rows = await x.sql.query<SignInRow>(`SELECT ${COLUMNS} FROM holder_sign_ins WHERE id = ? FOR UPDATE`, [id]);
      return rows[0] && toSignIn(rows[0]);
    },
    async update(id, patch, at) {
      const changed = await x.sql.run("UPDATE holder_sign_ins SET attempts = ?, status = ?, updated_at = ? WHERE id = ?", [patch.attempts, patch.status, at, id]);
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `sign-in ${id}` } });
    },
    async lockQuota(subject, at, windowMs) {
      // The row exists before it is locked, so that two first requests for one subject queue on it too.
      await x.sql.run(`INSERT INTO holder_sign_in_quotas (${QUOTA_COLUMNS}) VALUES (?, ?, 0, 0, NULL, ?) ON CONFLICT (subject) DO NOTHING`, [subject, at, at]);
      const rows = await x.sql.query<QuotaRow>(`SELECT ${QUOTA_COLUMNS} FROM holder_sign_in_quotas WHERE subject = ? FOR UPDATE`, [subject]);
      const q = toQuota(rows[0]!);
      if (at - q.windowStart >= windowMs) return { ...q, windowStart: at, codesSent: 0, wrongCodes: 0 };
      return q;
    },
    async saveQuota(q) {
      await x.sql.run("UPDATE holder_sign_in_quotas SET window_start = ?, codes_sent = ?, wrong_codes = ?, last_sent_at = ?, updated_at = ? WHERE subject = ?", [
        q.windowStart, q.codesSent, q.wrongCodes, q.lastSentAt, q.updatedAt, q.subject,
      ]);
    },
    async purge(codesBefore, quotasBefore) {
      return x.atomic(async (tx) => (await tx.run("DELETE FROM holder_sign_ins WHERE expires_at < ?", [codesBefore]))
        + (await tx.run("DELETE FROM holder_sign_in_quotas WHERE window_start < ?", [quotasBefore])));
    },
  };
}
