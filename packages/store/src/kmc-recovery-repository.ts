import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, type Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { Millis } from "./types.js";

/**
 * Where a key recovery stands: `pending` (opened, awaiting a second
 * person), `released` (approved: a two-code enrolment carries the keys),
 * `rejected` (the second person said no), `delivered` (the keys went out,
 * enveloped for one signing key). Expiry is not a state: a pending request
 * past `expiresAt` can no longer be approved.
 */
export type KmcRecoveryStatus = "pending" | "released" | "rejected" | "delivered";

/** A request to recover a holder's escrowed encryption keys under dual control (see the server's kmc/key-recovery-service.ts). */
export interface KmcRecoveryRecord {
  id: string;
  holderId: string;
  /** The profile of the two-code download that carries the recovered keys. */
  profileId: string;
  /** The escrows to recover, all of the holder's, in escrow order. */
  escrowIds: string[];
  reason: string;
  status: KmcRecoveryStatus;
  /** The operator id (not the actor string) of whoever opened it. */
  requestedBy: string;
  requestedAt: Millis;
  expiresAt: Millis;
  /** The operator id of the second person who approved or rejected it. */
  decidedBy: string | null;
  decidedAt: Millis | null;
  /** The enrolment (two codes) made at approval. */
  enrolmentId: string | null;
  /** SHA-256 (hex) of the signing SPKI the keys were enveloped for. */
  deliveredSpkiSha256: string | null;
  deliveredAt: Millis | null;
  updatedAt: Millis;
}

/** Fields a transition may set. */
export type KmcRecoveryPatch = Partial<Pick<KmcRecoveryRecord, "decidedBy" | "decidedAt" | "enrolmentId" | "deliveredSpkiSha256" | "deliveredAt">>;

/** Storage of key recovery requests; each status change is a compare-and-set. */
export interface KmcRecoveryRepository {
  /** Records a request. Throws UkeyError HOLDER_NOT_FOUND for an unknown holder, REQUEST_INVALID for an id in use. */
  insert(r: KmcRecoveryRecord): Promise<void>;
  get(id: string): Promise<KmcRecoveryRecord | undefined>;
  /** The request row, locked for the rest of the transaction (PostgreSQL; SQLite transactions are serial). */
  lock(id: string): Promise<KmcRecoveryRecord | undefined>;
  /** The request whose approval made enrolment `enrolmentId`. */
  getByEnrolment(enrolmentId: string): Promise<KmcRecoveryRecord | undefined>;
  /**
   * Moves `id` from status `from` to `to` with `patch`, only when it is
   * still `from` (compare-and-set: of two racing approvals one wins).
   * Returns whether it moved. Throws UkeyError ENROLMENT_NOT_FOUND for an
   * enrolment id that does not exist, REQUEST_INVALID for one already used by another request.
   */
  transition(id: string, from: KmcRecoveryStatus, to: KmcRecoveryStatus, patch: KmcRecoveryPatch, at: Millis): Promise<boolean>;
  /** Newest first (limit default 100, at most 1000), optionally of one status and one holder. */
  list(q?: { status?: KmcRecoveryStatus; holderId?: string; limit?: number; offset?: number }): Promise<KmcRecoveryRecord[]>;
}

interface RecoveryRow {
  id: string; holder_id: string; profile_id: string; escrow_ids: string; reason: string; status: string; requested_by: string;
  requested_at: number | string; expires_at: number | string; decided_by: string | null; decided_at: number | string | null;
  enrolment_id: string | null; delivered_spki_sha256: string | null; delivered_at: number | string | null; updated_at: number | string;
}

const COLUMNS = "id, holder_id, profile_id, escrow_ids, reason, status, requested_by, requested_at, expires_at, decided_by, decided_at, "
  + "enrolment_id, delivered_spki_sha256, delivered_at, updated_at";

const num = (v: number | string | null): number | null => (v === null ? null : Number(v));

function toRecovery(r: RecoveryRow): KmcRecoveryRecord {
  return {
    id: r.id, holderId: r.holder_id, profileId: r.profile_id, escrowIds: JSON.parse(r.escrow_ids) as string[], reason: r.reason,
    status: r.status as KmcRecoveryStatus, requestedBy: r.requested_by, requestedAt: Number(r.requested_at), expiresAt: Number(r.expires_at),
    decidedBy: r.decided_by, decidedAt: num(r.decided_at), enrolmentId: r.enrolment_id, deliveredSpkiSha256: r.delivered_spki_sha256,
    deliveredAt: num(r.delivered_at), updatedAt: Number(r.updated_at),
  };
}

const patchColumns: Record<keyof KmcRecoveryPatch, string> = {
  decidedBy: "decided_by", decidedAt: "decided_at", enrolmentId: "enrolment_id", deliveredSpkiSha256: "delivered_spki_sha256", deliveredAt: "delivered_at",
};

/** Key recovery requests (migration 13). */
export function kmcRecoveryRepository(x: Executor): KmcRecoveryRepository {
  const one = async (where: string, value: string, lock = false) => {
    const rows = await x.sql.query<RecoveryRow>(`SELECT ${COLUMNS} FROM kmc_recoveries WHERE ${where} = ?${lock ? " FOR UPDATE" : ""}`, [value]);
    return rows[0] ? toRecovery(rows[0]) : undefined;
  };
  return {
    async insert(r) {
      try {
        await x.atomic((tx) => tx.run(`INSERT INTO kmc_recoveries (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          r.id, r.holderId, r.profileId, JSON.stringify(r.escrowIds), r.reason, r.status, r.requestedBy, r.requestedAt, r.expiresAt,
          r.decidedBy, r.decidedAt, r.enrolmentId, r.deliveredSpkiSha256, r.deliveredAt, r.updatedAt,
        ]));
      } catch (err) {
        if (foreignKeyViolation(err)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: r.holderId }, cause: err });
        if (uniqueViolation(err)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `key recovery ${r.id} exists` }, cause: err });
        throw err;
      }
    },
    get: (id) => one("id", id),
    lock: (id) => one("id", id, true),
    getByEnrolment: (enrolmentId) => one("enrolment_id", enrolmentId),
    async transition(id, from, to, patch, at) {
      const sets = ["status = ?", "updated_at = ?"];
      const values: unknown[] = [to, at];
      for (const [k, v] of Object.entries(patch) as [keyof KmcRecoveryPatch, unknown][]) {
        sets.push(`${patchColumns[k]} = ?`);
        values.push(v);
      }
      try {
        return (await x.sql.run(`UPDATE kmc_recoveries SET ${sets.join(", ")} WHERE id = ? AND status = ?`, [...values, id, from])) === 1;
      } catch (err) {
        if (foreignKeyViolation(err)) throw new UkeyError("ENROLMENT_NOT_FOUND", { params: { enrolment: String(patch.enrolmentId) }, cause: err });
        if (uniqueViolation(err)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `enrolment ${String(patch.enrolmentId)} belongs to another key recovery` }, cause: err });
        throw err;
      }
    },
    async list(q = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (q.status !== undefined) { where.push("status = ?"); params.push(q.status); }
      if (q.holderId !== undefined) { where.push("holder_id = ?"); params.push(q.holderId); }
      params.push(pageSize(q.limit, 100, 1000), pageOffset(q.offset));
      const rows = await x.sql.query<RecoveryRow>(
        `SELECT ${COLUMNS} FROM kmc_recoveries${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY requested_at DESC, id DESC LIMIT ? OFFSET ?`, params);
      return rows.map(toRecovery);
    },
  };
}
