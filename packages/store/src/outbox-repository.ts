import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, toMillisOrNull, type Executor } from "./executor.js";
import { uniqueViolation } from "./sql-errors.js";
import type { OutboxRecord, OutboxRepository, OutboxStatus } from "./types.js";

const COLUMNS =
  "id, channel, transport, recipient, purpose, holder_id, redacted_text, status, attempts, last_error, next_attempt_at, created_at, sent_at";

interface OutboxRow {
  id: string; channel: string; transport: string; recipient: string; purpose: string; holder_id: string | null;
  redacted_text: string; status: string; attempts: number | string; last_error: string | null;
  next_attempt_at: number | string | null; created_at: number | string; sent_at: number | string | null;
}

function toOutbox(r: OutboxRow): OutboxRecord {
  return {
    id: r.id, channel: r.channel as OutboxRecord["channel"], transport: r.transport, recipient: r.recipient, purpose: r.purpose,
    holderId: r.holder_id, redactedText: r.redacted_text, status: r.status as OutboxStatus, attempts: Number(r.attempts),
    lastError: r.last_error, nextAttemptAt: toMillisOrNull(r.next_attempt_at), createdAt: Number(r.created_at),
    sentAt: toMillisOrNull(r.sent_at),
  };
}

/**
 * The outbox: every message sent to a holder, redacted, for the operator
 * console. No foreign key to holders: the outbox is a record of what was
 * sent, and it must accept a message even when its holder is later removed.
 * insert throws UkeyError RECORD_DUPLICATE for an existing id; markSent and
 * markFailed throw RECORD_NOT_FOUND for an unknown id.
 */
export function outboxRepository(x: Executor): OutboxRepository {
  return {
    async insert(r) {
      try {
        await x.sql.run(`INSERT INTO outbox (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          r.id, r.channel, r.transport, r.recipient, r.purpose, r.holderId, r.redactedText, r.status, r.attempts, r.lastError,
          r.nextAttemptAt, r.createdAt, r.sentAt,
        ]);
      } catch (e) {
        if (uniqueViolation(e) !== undefined) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `outbox message ${r.id}` }, cause: e });
        throw e;
      }
    },
    async get(id) {
      const rows = await x.sql.query<OutboxRow>(`SELECT ${COLUMNS} FROM outbox WHERE id = ?`, [id]);
      return rows[0] && toOutbox(rows[0]);
    },
    async list(opts = {}) {
      const where = opts.status === undefined ? "" : "WHERE status = ?";
      const params: unknown[] = opts.status === undefined ? [] : [opts.status];
      params.push(pageSize(opts.limit, 50, 1000), pageOffset(opts.offset));
      // id breaks ties so that pages never overlap when many rows share a millisecond.
      const rows = await x.sql.query<OutboxRow>(
        `SELECT ${COLUMNS} FROM outbox ${where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, params);
      return rows.map(toOutbox);
    },
    async markSent(id, at, status = "sent") {
      const changed = await x.sql.run(
        "UPDATE outbox SET status = ?, sent_at = ?, attempts = attempts + 1, next_attempt_at = NULL WHERE id = ?", [status, at, id]);
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `outbox message ${id}` } });
    },
    async markFailed(id, error, nextAttemptAt) {
      const changed = await x.sql.run(
        "UPDATE outbox SET status = ?, last_error = ?, attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
        [nextAttemptAt === null ? "failed" : "pending", error, nextAttemptAt, id]);
      if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `outbox message ${id}` } });
    },
  };
}
