import { UkeyError } from "@ukey/policy";
import type { Executor } from "./executor.js";
import { uniqueViolation } from "./sql-errors.js";
import type { OperatorRecord, OperatorRepository, OperatorRole } from "./types.js";

const COLUMNS = "id, role, password_hash, totp_sealed, totp_last_step, failed_attempts, locked_until, cert_spki_sha256, disabled, created_at, updated_at";

interface OperatorRow {
  id: string; role: string; password_hash: string; totp_sealed: string; totp_last_step: number | string | null;
  failed_attempts: number | string; locked_until: number | string | null; cert_spki_sha256: string | null;
  disabled: number | string | boolean; created_at: number | string; updated_at: number | string;
}

const nullableNumber = (v: number | string | null): number | null => (v === null ? null : Number(v));

function toOperator(r: OperatorRow): OperatorRecord {
  return {
    id: r.id, role: r.role as OperatorRole, passwordHash: r.password_hash, totpSealed: r.totp_sealed,
    totpLastStep: nullableNumber(r.totp_last_step), failedAttempts: Number(r.failed_attempts),
    lockedUntil: nullableNumber(r.locked_until), certSpkiSha256: r.cert_spki_sha256,
    disabled: Number(r.disabled) === 1, createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

function duplicate(e: unknown, o: Pick<OperatorRecord, "id" | "certSpkiSha256">): unknown {
  const violated = uniqueViolation(e);
  if (violated === undefined) return e;
  const record = /cert_spki/.test(violated) ? `operator certificate key ${o.certSpkiSha256 ?? ""}` : `operator ${o.id}`;
  return new UkeyError("RECORD_DUPLICATE", { params: { record }, cause: e });
}

/**
 * Operator accounts of the admin API. The failure count and the last TOTP
 * step are changed by single conditional UPDATEs, so several server
 * instances on one database agree on lockouts and never accept one TOTP
 * code twice. insert and update throw UkeyError RECORD_DUPLICATE (id or
 * pinned key), update RECORD_NOT_FOUND for an unknown id.
 */
export function operatorRepository(x: Executor): OperatorRepository {
  const get = async (id: string) => {
    const rows = await x.sql.query<OperatorRow>(`SELECT ${COLUMNS} FROM operators WHERE id = ?`, [id]);
    return rows[0] && toOperator(rows[0]);
  };
  return {
    async insert(o) {
      try {
        await x.sql.run(`INSERT INTO operators (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          o.id, o.role, o.passwordHash, o.totpSealed, o.totpLastStep, o.failedAttempts, o.lockedUntil, o.certSpkiSha256,
          o.disabled ? 1 : 0, o.createdAt, o.updatedAt,
        ]);
      } catch (e) {
        throw duplicate(e, o);
      }
    },
    get,
    async findByCertSpki(spki) {
      const rows = await x.sql.query<OperatorRow>(`SELECT ${COLUMNS} FROM operators WHERE cert_spki_sha256 = ?`, [spki]);
      return rows[0] && toOperator(rows[0]);
    },
    async list() {
      const rows = await x.sql.query<OperatorRow>(`SELECT ${COLUMNS} FROM operators ORDER BY id`);
      return rows.map(toOperator);
    },
    async recordFailure(id, at, lockAfter, lockUntil) {
      // SET expressions see the row as it was, on both engines; the casts
      // give PostgreSQL the parameter types a CASE needs.
      const now = "CAST(? AS BIGINT)";
      const limit = "CAST(? AS INTEGER)";
      await x.sql.run(
        `UPDATE operators SET
           failed_attempts = CASE WHEN locked_until IS NOT NULL AND locked_until <= ${now} THEN 1 ELSE failed_attempts + 1 END,
           locked_until = CASE
             WHEN locked_until IS NOT NULL AND locked_until <= ${now} THEN (CASE WHEN 1 >= ${limit} THEN ${now} ELSE NULL END)
             WHEN failed_attempts + 1 >= ${limit} THEN ${now}
             ELSE locked_until END,
           updated_at = ${now}
         WHERE id = ?`,
        [at, at, lockAfter, lockUntil, lockAfter, lockUntil, at, id]);
      return get(id);
    },
    async acceptSignIn(id, step, at) {
      const changed = await x.sql.run(
        `UPDATE operators SET totp_last_step = ?, failed_attempts = 0, locked_until = NULL, updated_at = ?
         WHERE id = ? AND (totp_last_step IS NULL OR totp_last_step < CAST(? AS BIGINT))`,
        [step, at, id, step]);
      return changed === 1;
    },
    async update(id, patch, at) {
      const sets = ["updated_at = ?"];
      const params: unknown[] = [at];
      const columns: Record<string, string> = {
        role: "role", certSpkiSha256: "cert_spki_sha256", passwordHash: "password_hash", totpSealed: "totp_sealed", totpLastStep: "totp_last_step",
      };
      for (const [key, column] of Object.entries(columns)) {
        const v = (patch as Record<string, unknown>)[key];
        if (v !== undefined) { sets.push(`${column} = ?`); params.push(v); }
      }
      if (patch.disabled !== undefined) { sets.push("disabled = ?"); params.push(patch.disabled ? 1 : 0); }
      params.push(id);
      let changed: number;
      try {
        changed = await x.sql.run(`UPDATE operators SET ${sets.join(", ")} WHERE id = ?`, params);
      } catch (e) {
        throw duplicate(e, { id, certSpkiSha256: patch.certSpkiSha256 ?? null });
      }
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `operator ${id}` } });
    },
  };
}
