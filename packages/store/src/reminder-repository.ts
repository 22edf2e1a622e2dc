import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, toMillisOrNull, toNumber, type Executor } from "./executor.js";
import { foreignKeyViolation } from "./sql-errors.js";
import type { Millis } from "./types.js";

/**
 * Where a reminder stands: `pending` until every channel it goes to has it
 * (and between retries), `sent` once they all have, `failed` when the
 * attempts ran out, `cancelled` when the certificate was renewed, revoked or
 * superseded before it went out.
 */
export type ReminderStatus = "pending" | "sent" | "failed" | "cancelled";

/** One reminder: one certificate crossing one threshold of its profile. */
export interface ReminderRecord {
  /** `<serial>.<threshold>`: the same on every instance, so it is one row however many schedule it. */
  id: string;
  certificateSerial: string;
  /** Days relative to the expiry day: 90 = 90 days before, 0 = the expiry day, -30 = 30 days after. */
  threshold: number;
  /** The certificate's holder. */
  holderId: string;
  /** Who is told: the holder, or the organisation it belongs to (one digest for all its certificates). */
  recipientId: string;
  /** The certificate's notAfter when the reminder was made. */
  notAfter: Millis;
  status: ReminderStatus;
  /** Channels that have it: "sms", "email"; "bell" alone when no channel was open (no contact, or opted out). */
  delivered: string[];
  attempts: number;
  /** When pending: when it is due (or when the claim of a sender runs out). */
  nextAttemptAt: Millis | null;
  /** The last failure, in the sender's words ("sms: HTTP 500"). */
  lastError: string | null;
  /** When the holder or organisation read it in the bell. */
  readAt: Millis | null;
  sentAt: Millis | null;
  createdAt: Millis;
  updatedAt: Millis;
}

/** A certificate a reminder scan found at a threshold. */
export interface ReminderCandidate {
  serial: string;
  holderId: string;
  recipientId: string;
  notAfter: Millis;
}

/** What a sender settled for one reminder. */
export interface ReminderOutcome {
  id: string;
  status: ReminderStatus;
  delivered: string[];
  attempts: number;
  nextAttemptAt: Millis | null;
  lastError: string | null;
  sentAt: Millis | null;
}

/** A certificate as the holder's bell and list show it: no DER, no key hash. */
export interface HolderCertificateRow {
  serial: string;
  issuerKeyId: string;
  subjectDn: string;
  notBefore: Millis;
  notAfter: Millis;
  status: string;
  revokedAt: Millis | null;
  /** RFC 5280's reason of a revocation ("certificateHold": on hold, may be lifted); null while not revoked. */
  revocationReason: string | null;
  kind: string;
  tokenSerial: string | null;
  holderId: string;
  profileId: string;
  /** True when a newer active certificate of the same holder and profile exists, or its renewal completed. */
  renewed: boolean;
}

export interface ReminderRepository {
  /**
   * Streams, in pages of `pageSize` (default 1000, at most 5000), the live
   * certificates (status active or expired) of one profile whose notAfter
   * is in [notAfterFrom, notAfterTo], that were not renewed: no newer
   * active certificate of the same holder and profile, no completed
   * renewal order. Keyset pages on (not_after, serial) over the
   * (profile_id, not_after) index: the work is the range's, not the table's.
   */
  scan(q: { profileId: string; notAfterFrom: Millis; notAfterTo: Millis; pageSize?: number }): AsyncIterable<ReminderCandidate[]>;
  /** One pending reminder per candidate at `threshold`, unless it exists; returns how many are new. Due at `at`. */
  enqueue(threshold: number, candidates: readonly ReminderCandidate[], at: Millis): Promise<number>;
  /**
   * Claims up to `limit` reminders due at `at`: their next attempt moves to
   * `leaseUntil`, so that no other sender takes them meanwhile (on
   * PostgreSQL rows another sender is claiming are skipped, FOR UPDATE SKIP
   * LOCKED); a sender that dies leaves them to be taken again once the lease
   * runs out. Oldest due first.
   */
  claimDue(at: Millis, leaseUntil: Millis, limit: number): Promise<ReminderRecord[]>;
  /** Of these serials, those that no longer need a reminder: not live, or renewed. */
  settledAmong(serials: readonly string[]): Promise<string[]>;
  /** Records what a sender did with each reminder. Throws RECORD_NOT_FOUND for an unknown id. */
  settle(outcomes: readonly ReminderOutcome[], at: Millis): Promise<void>;
  get(id: string): Promise<ReminderRecord | undefined>;
  /** Newest change first, optionally in one status (limit default 100, at most 1000). */
  list(q?: { status?: ReminderStatus; limit?: number; offset?: number }): Promise<ReminderRecord[]>;
  /** Reminders a holder sees: those about its own certificates and those sent to it (an organisation), not cancelled. Newest first. */
  listForViewer(viewerId: string, q?: { unreadOnly?: boolean; limit?: number; offset?: number }): Promise<ReminderRecord[]>;
  /** Marks the viewer's reminders read (those with `ids`, or all); returns how many changed. */
  markRead(viewerId: string, ids: readonly string[] | null, at: Millis): Promise<number>;
  /** Reminders by status, counted in the database (every instance's). */
  countByStatus(): Promise<Record<ReminderStatus, number>>;
  /** The last CST day number (days since the epoch) a scan went through, or null before the first scan. */
  scanMark(): Promise<number | null>;
  /** Moves the scan mark forward to `day` (never back). */
  setScanMark(day: number, at: Millis): Promise<void>;
  /**
   * The certificates of a holder, or of an organisation and its members
   * (`withMembers`), in expiry order; never pending or abandoned ones.
   * `liveOnly`: active or expired and not renewed, and (`withHeld`) those on hold
   * (revoked with reason certificateHold, which the institution may lift). `notAfterFrom`/`notAfterTo` bound the expiry.
   */
  certificatesOf(holderId: string, q: { withMembers: boolean; liveOnly?: boolean; withHeld?: boolean; notAfterFrom?: Millis; notAfterTo?: Millis; limit?: number; offset?: number }): Promise<HolderCertificateRow[]>;
  /**
   * Every certificate counted by status and by expiry bucket, in one
   * aggregate query (a full scan: callers cache it): bucket i counts
   * notAfter < bounds[i] (and not in an earlier bucket); bucket
   * bounds.length counts the rest. Bounds ascending.
   */
  census(bounds: readonly Millis[]): Promise<Array<{ status: string; bucket: number; count: number }>>;
}

const COLUMNS = "id, certificate_serial, threshold, holder_id, recipient_id, not_after, status, delivered, attempts, next_attempt_at, last_error, read_at, sent_at, created_at, updated_at";

interface ReminderRow {
  id: string; certificate_serial: string; threshold: number | string; holder_id: string; recipient_id: string; not_after: number | string;
  status: string; delivered: string; attempts: number | string; next_attempt_at: number | string | null; last_error: string | null;
  read_at: number | string | null; sent_at: number | string | null; created_at: number | string; updated_at: number | string;
}

function toReminder(r: ReminderRow): ReminderRecord {
  return {
    id: r.id, certificateSerial: r.certificate_serial, threshold: Number(r.threshold), holderId: r.holder_id, recipientId: r.recipient_id,
    notAfter: Number(r.not_after), status: r.status as ReminderStatus, delivered: r.delivered === "" ? [] : r.delivered.split(","),
    attempts: Number(r.attempts), nextAttemptAt: toMillisOrNull(r.next_attempt_at), lastError: r.last_error, readAt: toMillisOrNull(r.read_at),
    sentAt: toMillisOrNull(r.sent_at), createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

/** The reminder's id: the same for a (certificate, threshold) on every instance. */
export function reminderId(serial: string, threshold: number): string {
  return `${serial}.${threshold}`;
}

/** SQL true when certificate `c` is live and not renewed. */
const LIVE_NOT_RENEWED = `c.status IN ('active', 'expired')
  AND NOT EXISTS (SELECT 1 FROM certificates n WHERE n.holder_id = c.holder_id AND n.profile_id = c.profile_id
                  AND n.status = 'active' AND n.not_after > c.not_after)
  AND NOT EXISTS (SELECT 1 FROM renewal_orders o WHERE o.certificate_serial = c.serial AND o.state = 'completed')`;

/** On hold (冻结): revoked with reason certificateHold, which the institution may lift. */
const HELD = `c.status = 'revoked' AND c.revocation_reason = 'certificateHold'`;

const RENEWED = `(EXISTS (SELECT 1 FROM certificates n WHERE n.holder_id = c.holder_id AND n.profile_id = c.profile_id
                  AND n.status = 'active' AND n.not_after > c.not_after)
  OR EXISTS (SELECT 1 FROM renewal_orders o WHERE o.certificate_serial = c.serial AND o.state = 'completed'))`;

/** Rows per INSERT statement: far below both engines' limits on parameters. */
const INSERT_CHUNK = 500;

const placeholders = (n: number) => Array.from({ length: n }, () => "?").join(", ");

/**
 * Reminders, the scan that finds them, and the holder's view of them (the
 * bell). One row per (certificate, threshold): the unique index makes
 * scheduling idempotent across restarts and instances.
 */
export function reminderRepository(x: Executor): ReminderRepository {
  // Only the bare PostgreSQL database says so; inside a transaction the claim is still exact, it only waits instead of skipping.
  const postgres = (x.sql as { engine?: string }).engine === "postgres";
  return {
    scan(q) {
      const limit = pageSize(q.pageSize, 1000, 5000);
      return {
        async *[Symbol.asyncIterator]() {
          let afterNotAfter = q.notAfterFrom - 1;
          let afterSerial = "";
          for (;;) {
            const rows = await x.sql.query<{ serial: string; not_after: number | string; holder_id: string; recipient_id: string }>(
              `SELECT c.serial, c.not_after, c.holder_id, COALESCE(h.organisation_id, c.holder_id) AS recipient_id
               FROM certificates c JOIN holders h ON h.id = c.holder_id
               WHERE c.profile_id = ? AND c.not_after >= ? AND c.not_after <= ?
                 AND (c.not_after > ? OR (c.not_after = ? AND c.serial > ?))
                 AND ${LIVE_NOT_RENEWED}
               ORDER BY c.not_after, c.serial LIMIT ?`,
              [q.profileId, q.notAfterFrom, q.notAfterTo, afterNotAfter, afterNotAfter, afterSerial, limit]);
            if (rows.length === 0) return;
            const last = rows[rows.length - 1]!;
            afterNotAfter = Number(last.not_after);
            afterSerial = last.serial;
            yield rows.map((r) => ({ serial: r.serial, holderId: r.holder_id, recipientId: r.recipient_id, notAfter: Number(r.not_after) }));
            if (rows.length < limit) return;
          }
        },
      };
    },

    async enqueue(threshold, candidates, at) {
      let added = 0;
      for (let i = 0; i < candidates.length; i += INSERT_CHUNK) {
        const chunk = candidates.slice(i, i + INSERT_CHUNK);
        const params: unknown[] = [];
        for (const c of chunk) params.push(reminderId(c.serial, threshold), c.serial, threshold, c.holderId, c.recipientId, c.notAfter, at, at, at);
        try {
          // No conflict target: both the id and (serial, threshold) are unique, and two
          // stores inserting at once on PostgreSQL must skip a clash on either.
          added += await x.atomic((tx) => tx.run(
            `INSERT INTO reminders (${COLUMNS}) VALUES
             ${chunk.map(() => "(?, ?, ?, ?, ?, ?, 'pending', '', 0, ?, NULL, NULL, NULL, ?, ?)").join(", ")}
             ON CONFLICT DO NOTHING`, params));
        } catch (e) {
          if (foreignKeyViolation(e)) throw new UkeyError("CERT_NOT_FOUND", { params: { serial: chunk.map((c) => c.serial).join(", ").slice(0, 200) }, cause: e });
          throw e;
        }
      }
      return added;
    },

    async claimDue(at, leaseUntil, limit) {
      const n = pageSize(limit, 100, 1000);
      const rows = await x.atomic((tx) => tx.query<ReminderRow>(
        `UPDATE reminders SET next_attempt_at = ?, updated_at = ?
         WHERE id IN (SELECT id FROM reminders WHERE status = 'pending' AND next_attempt_at <= ?
                      ORDER BY next_attempt_at, id LIMIT ?${postgres ? " FOR UPDATE SKIP LOCKED" : ""})
           AND status = 'pending' AND next_attempt_at <= ?
         RETURNING ${COLUMNS}`,
        [leaseUntil, at, at, n, at]));
      return rows.map(toReminder).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },

    async settledAmong(serials) {
      const out: string[] = [];
      for (let i = 0; i < serials.length; i += INSERT_CHUNK) {
        const chunk = serials.slice(i, i + INSERT_CHUNK);
        const rows = await x.sql.query<{ serial: string }>(
          `SELECT c.serial FROM certificates c WHERE c.serial IN (${placeholders(chunk.length)})
             AND (c.status NOT IN ('active', 'expired') OR ${RENEWED})`, chunk);
        out.push(...rows.map((r) => r.serial));
      }
      return out;
    },

    async settle(outcomes, at) {
      await x.atomic(async (tx) => {
        for (const o of outcomes) {
          const changed = await tx.run(
            `UPDATE reminders SET status = ?, delivered = ?, attempts = ?, next_attempt_at = ?, last_error = ?, sent_at = ?, updated_at = ?
             WHERE id = ?`,
            [o.status, o.delivered.join(","), o.attempts, o.nextAttemptAt, o.lastError, o.sentAt, at, o.id]);
          if (changed !== 1) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `reminder ${o.id}` } });
        }
      });
    },

    async get(id) {
      const rows = await x.sql.query<ReminderRow>(`SELECT ${COLUMNS} FROM reminders WHERE id = ?`, [id]);
      return rows[0] && toReminder(rows[0]);
    },

    async list(q = {}) {
      const where = q.status === undefined ? "" : "WHERE status = ?";
      const params: unknown[] = q.status === undefined ? [] : [q.status];
      params.push(pageSize(q.limit, 100, 1000), pageOffset(q.offset));
      const rows = await x.sql.query<ReminderRow>(`SELECT ${COLUMNS} FROM reminders ${where} ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?`, params);
      return rows.map(toReminder);
    },

    async listForViewer(viewerId, q = {}) {
      const rows = await x.sql.query<ReminderRow>(
        `SELECT ${COLUMNS} FROM reminders WHERE (recipient_id = ? OR holder_id = ?) AND status <> 'cancelled'
         ${q.unreadOnly ? "AND read_at IS NULL" : ""} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`,
        [viewerId, viewerId, pageSize(q.limit, 100, 1000), pageOffset(q.offset)]);
      return rows.map(toReminder);
    },

    async markRead(viewerId, ids, at) {
      if (ids !== null && ids.length === 0) return 0;
      const only = ids === null ? "" : `AND id IN (${placeholders(ids.length)})`;
      return x.atomic((tx) => tx.run(
        `UPDATE reminders SET read_at = ? WHERE (recipient_id = ? OR holder_id = ?) AND read_at IS NULL ${only}`,
        [at, viewerId, viewerId, ...(ids ?? [])]));
    },

    async countByStatus() {
      const rows = await x.sql.query<{ status: string; n: unknown }>("SELECT status, COUNT(*) AS n FROM reminders GROUP BY status");
      const out: Record<ReminderStatus, number> = { pending: 0, sent: 0, failed: 0, cancelled: 0 };
      for (const r of rows) out[r.status as ReminderStatus] = toNumber(r.n);
      return out;
    },

    async scanMark() {
      const rows = await x.sql.query<{ through_day: number | string }>("SELECT through_day FROM reminder_scan WHERE id = 1");
      return rows[0] ? Number(rows[0].through_day) : null;
    },

    async setScanMark(day, at) {
      await x.atomic((tx) => tx.run(
        `INSERT INTO reminder_scan (id, through_day, updated_at) VALUES (1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET
           through_day = CASE WHEN excluded.through_day > reminder_scan.through_day THEN excluded.through_day ELSE reminder_scan.through_day END,
           updated_at = excluded.updated_at`, [day, at]));
    },

    async census(bounds) {
      const cases = bounds.map((_, i) => `WHEN not_after < ? THEN ${i}`).join(" ");
      const rows = await x.sql.query<{ status: string; bucket: unknown; n: unknown }>(
        `SELECT status, CASE ${cases} ELSE ${bounds.length} END AS bucket, COUNT(*) AS n FROM certificates GROUP BY status, bucket`, [...bounds]);
      return rows.map((r) => ({ status: r.status, bucket: toNumber(r.bucket), count: toNumber(r.n) }));
    },

    async certificatesOf(holderId, q) {
      const where: string[] = [q.withMembers ? "c.holder_id IN (SELECT id FROM holders WHERE id = ? OR organisation_id = ?)" : "c.holder_id = ?"];
      const params: unknown[] = q.withMembers ? [holderId, holderId] : [holderId];
      where.push("c.status NOT IN ('pending', 'abandoned')");
      if (q.liveOnly) where.push(q.withHeld ? `((${LIVE_NOT_RENEWED}) OR (${HELD}))` : LIVE_NOT_RENEWED);
      if (q.notAfterFrom !== undefined) { where.push("c.not_after >= ?"); params.push(q.notAfterFrom); }
      if (q.notAfterTo !== undefined) { where.push("c.not_after <= ?"); params.push(q.notAfterTo); }
      params.push(pageSize(q.limit, 100, 1000), pageOffset(q.offset));
      const rows = await x.sql.query<{
        serial: string; issuer_key_id: string; subject_dn: string; not_before: number | string; not_after: number | string; status: string;
        revoked_at: number | string | null; revocation_reason: string | null; kind: string; token_serial: string | null; holder_id: string; profile_id: string; renewed: unknown;
      }>(
        `SELECT c.serial, c.issuer_key_id, c.subject_dn, c.not_before, c.not_after, c.status, c.revoked_at, c.revocation_reason, c.kind, c.token_serial,
                c.holder_id, c.profile_id, CASE WHEN ${RENEWED} THEN 1 ELSE 0 END AS renewed
         FROM certificates c WHERE ${where.join(" AND ")} ORDER BY c.not_after, c.serial LIMIT ? OFFSET ?`, params);
      return rows.map((r) => ({
        serial: r.serial, issuerKeyId: r.issuer_key_id, subjectDn: r.subject_dn, notBefore: Number(r.not_before), notAfter: Number(r.not_after),
        status: r.status, revokedAt: toMillisOrNull(r.revoked_at), revocationReason: r.revocation_reason ?? null, kind: r.kind, tokenSerial: r.token_serial, holderId: r.holder_id,
        profileId: r.profile_id, renewed: toNumber(r.renewed) === 1,
      }));
    },
  };
}
