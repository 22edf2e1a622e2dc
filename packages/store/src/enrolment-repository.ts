import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, type Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { EnrolmentRecord, EnrolmentRepository } from "./types.js";

const COLUMNS = "id, holder_id, profile_id, reference_number, code_hash, expires_at, attempts, max_attempts, status, created_at, updated_at, replaces_serial";

interface EnrolmentRow {
  id: string; holder_id: string; profile_id: string; reference_number: string; code_hash: string;
  expires_at: number | string; attempts: number | string; max_attempts: number | string; status: string;
  created_at: number | string; updated_at: number | string; replaces_serial: string | null;
}

function toEnrolment(r: EnrolmentRow): EnrolmentRecord {
  return {
    id: r.id, holderId: r.holder_id, profileId: r.profile_id, referenceNumber: r.reference_number, codeHash: r.code_hash,
    expiresAt: Number(r.expires_at), attempts: Number(r.attempts), maxAttempts: Number(r.max_attempts),
    status: r.status as EnrolmentRecord["status"], createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
    replacesSerial: r.replaces_serial ?? null,
  };
}

/**
 * Enrolments (download with reference number and authorization code).
 * insert throws UkeyError RECORD_DUPLICATE for an existing id or reference
 * number and HOLDER_NOT_FOUND for an unknown holder; update throws
 * RECORD_NOT_FOUND for an unknown id.
 */
export function enrolmentRepository(x: Executor): EnrolmentRepository {
  return {
    async insert(e) {
      try {
        await x.sql.run(`INSERT INTO enrolments (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          e.id, e.holderId, e.profileId, e.referenceNumber, e.codeHash, e.expiresAt, e.attempts, e.maxAttempts, e.status,
          e.createdAt, e.updatedAt, e.replacesSerial ?? null,
        ]);
      } catch (err) {
        const violated = uniqueViolation(err);
        if (violated !== undefined) {
          const record = /reference/.test(violated) ? `enrolment reference ${e.referenceNumber}` : `enrolment ${e.id}`;
          throw new UkeyError("RECORD_DUPLICATE", { params: { record }, cause: err });
        }
        if (foreignKeyViolation(err)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: e.holderId }, cause: err });
        throw err;
      }
    },
    async getByReference(ref) {
      const rows = await x.sql.query<EnrolmentRow>(`SELECT ${COLUMNS} FROM enrolments WHERE reference_number = ?`, [ref]);
      return rows[0] && toEnrolment(rows[0]);
    },
    async update(id, patch, at) {
      const sets = ["updated_at = ?"];
      const params: unknown[] = [at];
      if (patch.attempts !== undefined) { sets.push("attempts = ?"); params.push(patch.attempts); }
      if (patch.status !== undefined) { sets.push("status = ?"); params.push(patch.status); }
      params.push(id);
      const changed = await x.sql.run(`UPDATE enrolments SET ${sets.join(", ")} WHERE id = ?`, params);
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `enrolment ${id}` } });
    },
    async get(id) {
      const rows = await x.sql.query<EnrolmentRow>(`SELECT ${COLUMNS} FROM enrolments WHERE id = ?`, [id]);
      return rows[0] && toEnrolment(rows[0]);
    },
    async lockByReference(ref) {
      const rows = await x.sql.query<EnrolmentRow>(`SELECT ${COLUMNS} FROM enrolments WHERE reference_number = ? FOR UPDATE`, [ref]);
      return rows[0] && toEnrolment(rows[0]);
    },
    async transition(id, from, to, at) {
      return (await x.sql.run("UPDATE enrolments SET status = ?, updated_at = ? WHERE id = ? AND status = ?", [to, at, id, from])) === 1;
    },
    async list(q = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (q.holderId !== undefined) { where.push("holder_id = ?"); params.push(q.holderId); }
      if (q.status !== undefined) { where.push("status = ?"); params.push(q.status); }
      params.push(pageSize(q.limit, 100, 1000), pageOffset(q.offset));
      const rows = await x.sql.query<EnrolmentRow>(
        `SELECT ${COLUMNS} FROM enrolments${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, params);
      return rows.map(toEnrolment);
    },
  };
}
