import { UkeyError } from "@ukey/policy";
import type { Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { Millis } from "./types.js";

/** One one-time code sent for a holder's sign-in. The code itself is never stored, only its keyed hash. */
export interface HolderSignInRecord {
  id: string;
  holderId: string;
  channel: "sms" | "email";
  /** The destination masked as the holder sees it ("159*****005"). */
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

export interface HolderSignInRepository {
  /** Throws UkeyError HOLDER_NOT_FOUND for an unknown holder, RECORD_DUPLICATE for an existing id. */
  insert(r: HolderSignInRecord): Promise<void>;
  /**
   * Inserts unless the holder was sent a code less than `quietMs` before `r.createdAt`; then returns that
   * latest one instead. Checked and inserted under a lock of the holder's row, so two requests at once
   * cannot both send a code. Throws as `insert`.
   */
  insertUnlessRecent(r: HolderSignInRecord, quietMs: number): Promise<{ inserted: true } | { inserted: false; latest: HolderSignInRecord }>;
  /** The holder's latest sign-in code, for the resend limit. */
  latestFor(holderId: string): Promise<HolderSignInRecord | undefined>;
  /** Reads one and locks its row until the transaction ends (PostgreSQL), so that two checks of one code queue. */
  getForUpdate(id: string): Promise<HolderSignInRecord | undefined>;
  /** Sets attempts and status. Throws RECORD_NOT_FOUND. */
  update(id: string, patch: Pick<HolderSignInRecord, "attempts" | "status">, at: Millis): Promise<void>;
}

const COLUMNS = "id, holder_id, channel, sent_to, code_hash, expires_at, attempts, status, created_at, updated_at";

interface SignInRow {
  id: string; holder_id: string; channel: string; sent_to: string; code_hash: string; expires_at: number | string;
  attempts: number | string; status: string; created_at: number | string; updated_at: number | string;
}

function toSignIn(r: SignInRow): HolderSignInRecord {
  return {
    id: r.id, holderId: r.holder_id, channel: r.channel as HolderSignInRecord["channel"], sentTo: r.sent_to, codeHash: r.code_hash,
    expiresAt: Number(r.expires_at), attempts: Number(r.attempts), status: r.status as HolderSignInRecord["status"],
    createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

/** One-time codes of holder sign-in (see the server's holder-session). */
export function holderSignInRepository(x: Executor): HolderSignInRepository {
  return {
    async insert(r) {
      try {
        await x.atomic((tx) => tx.run(`INSERT INTO holder_sign_ins (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          r.id, r.holderId, r.channel, r.sentTo, r.codeHash, r.expiresAt, r.attempts, r.status, r.createdAt, r.updatedAt,
        ]));
      } catch (e) {
        if (foreignKeyViolation(e)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: r.holderId }, cause: e });
        if (uniqueViolation(e) !== undefined) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `sign-in ${r.id}` }, cause: e });
        throw e;
      }
    },
    async insertUnlessRecent(r, quietMs) {
      try {
        return await x.atomic(async (tx) => {
          // FOR UPDATE queues concurrent sign-ins of one holder on PostgreSQL; SQLite has one writer anyway.
          const holder = await tx.query<{ id: string }>("SELECT id FROM holders WHERE id = ? FOR UPDATE", [r.holderId]);
          if (holder.length === 0) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: r.holderId } });
          const rows = await tx.query<SignInRow>(`SELECT ${COLUMNS} FROM holder_sign_ins WHERE holder_id = ? ORDER BY created_at DESC, id DESC LIMIT 1`, [r.holderId]);
          const latest = rows[0] && toSignIn(rows[0]);
          if (latest && r.createdAt - latest.createdAt < quietMs) return { inserted: false as const, latest };
          await tx.run(`INSERT INTO holder_sign_ins (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
            r.id, r.holderId, r.channel, r.sentTo, r.codeHash, r.expiresAt, r.attempts, r.status, r.createdAt, r.updatedAt,
          ]);
          return { inserted: true as const };
        });
      } catch (e) {
        if (uniqueViolation(e) !== undefined) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `sign-in ${r.id}` }, cause: e });
        throw e;
      }
    },
    async latestFor(holderId) {
      const rows = await x.sql.query<SignInRow>(`SELECT ${COLUMNS} FROM holder_sign_ins WHERE holder_id = ? ORDER BY created_at DESC, id DESC LIMIT 1`, [holderId]);
      return rows[0] && toSignIn(rows[0]);
    },
    async getForUpdate(id) {
      const rows = await x.sql.query<SignInRow>(`SELECT ${COLUMNS} FROM holder_sign_ins WHERE id = ? FOR UPDATE`, [id]);
      return rows[0] && toSignIn(rows[0]);
    },
    async update(id, patch, at) {
      const changed = await x.atomic((tx) => tx.run("UPDATE holder_sign_ins SET attempts = ?, status = ?, updated_at = ? WHERE id = ?", [patch.attempts, patch.status, at, id]));
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `sign-in ${id}` } });
    },
  };
}
