import { UkeyError } from "@ukey/policy";
import { pageSize, toMillisOrNull, type Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { ReminderRecord, ReminderRepository } from "./types.js";

const COLUMNS = "id, certificate_serial, threshold, channel, status, attempts, next_attempt_at, sent_at, created_at";

interface ReminderRow {
  id: string; certificate_serial: string; threshold: number | string; channel: string; status: string;
  attempts: number | string; next_attempt_at: number | string | null; sent_at: number | string | null; created_at: number | string;
}

function toReminder(r: ReminderRow): ReminderRecord {
  return {
    id: r.id, certificateSerial: r.certificate_serial, threshold: Number(r.threshold), channel: r.channel,
    status: r.status as ReminderRecord["status"], attempts: Number(r.attempts), nextAttemptAt: toMillisOrNull(r.next_attempt_at),
    sentAt: toMillisOrNull(r.sent_at), createdAt: Number(r.created_at),
  };
}

/**
 * Reminders, at most one per (certificate, threshold, channel): the unique
 * index makes `insertOnce` safe when two servers schedule at the same time.
 * insertOnce throws UkeyError CERT_NOT_FOUND for an unknown certificate and
 * RECORD_DUPLICATE for an id already used by another reminder;
 * markSent throws RECORD_NOT_FOUND for an unknown id.
 */
export function reminderRepository(x: Executor): ReminderRepository {
  return {
    async insertOnce(r) {
      try {
        const changed = await x.sql.run(
          `INSERT INTO reminders (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (certificate_serial, threshold, channel) DO NOTHING`,
          [r.id, r.certificateSerial, r.threshold, r.channel, r.status, r.attempts, r.nextAttemptAt, r.sentAt, r.createdAt]);
        return changed === 1;
      } catch (e) {
        if (foreignKeyViolation(e)) throw new UkeyError("CERT_NOT_FOUND", { params: { serial: r.certificateSerial }, cause: e });
        if (uniqueViolation(e)) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `reminder ${r.id}` }, cause: e });
        throw e;
      }
    },
    async listDue(at, limit) {
      const rows = await x.sql.query<ReminderRow>(
        `SELECT ${COLUMNS} FROM reminders
         WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
         ORDER BY COALESCE(next_attempt_at, created_at), id LIMIT ?`,
        [at, pageSize(limit, 100, 1000)]);
      return rows.map(toReminder);
    },
    async markSent(id, at) {
      const changed = await x.sql.run(
        "UPDATE reminders SET status = 'sent', sent_at = ?, attempts = attempts + 1, next_attempt_at = NULL WHERE id = ?", [at, id]);
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `reminder ${id}` } });
    },
  };
}
