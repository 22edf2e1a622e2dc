import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, toNumber, type Executor } from "./executor.js";
import { OPEN_ORDER_CONDITION } from "./migrations.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { OrderRepository, OrderState, RenewalOrderRecord } from "./types.js";

const COLUMNS = "id, certificate_serial, holder_id, profile_id, state, channel, new_serial, data, created_at, updated_at";
// Hot statements as constants: the statement cache is keyed by the text, which is then not rebuilt per call.
const INSERT = `INSERT INTO renewal_orders (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
const BY_ID = `SELECT ${COLUMNS} FROM renewal_orders WHERE id = ?`;
const BY_ID_FOR_UPDATE = `SELECT ${COLUMNS} FROM renewal_orders WHERE id = ? FOR UPDATE`;
// The one-open index's own predicate, so that SQLite uses that index (and builds no temporary b-tree for an IN list).
const OPEN_FOR_CERTIFICATE = `SELECT ${COLUMNS} FROM renewal_orders WHERE certificate_serial = ? AND ${OPEN_ORDER_CONDITION}`;
const LAST_FAILED = `SELECT MAX(updated_at) AS at FROM renewal_orders WHERE certificate_serial = ? AND state = 'failed'
  AND updated_at > COALESCE((SELECT unlocked_at FROM renewal_unlocks WHERE certificate_serial = ?), -1)`;
/** The compare-and-set update, by which columns it also sets: [neither, new_serial, data, both]. */
const TRANSITION = [[], ["new_serial = ?"], ["data = ?"], ["new_serial = ?", "data = ?"]]
  .map((extra) => `UPDATE renewal_orders SET ${["state = ?", "updated_at = ?", ...extra].join(", ")} WHERE id = ? AND state = ?`);

interface OrderRow {
  id: string; certificate_serial: string | null; holder_id: string; profile_id: string; state: string; channel: string;
  new_serial: string | null; data: string; created_at: number | string; updated_at: number | string;
}

function toOrder(r: OrderRow): RenewalOrderRecord {
  return {
    id: r.id, certificateSerial: r.certificate_serial, holderId: r.holder_id, profileId: r.profile_id,
    state: r.state as OrderState, channel: r.channel, newSerial: r.new_serial,
    data: JSON.parse(r.data) as Record<string, unknown>, createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

/** Maps the open-order index's violation to its own code; other duplicates are plain duplicates. */
function orderConflict(e: unknown, id: string, serial: string | null): unknown {
  const violated = uniqueViolation(e);
  if (violated === undefined) {
    return foreignKeyViolation(e) ? new UkeyError("RECORD_NOT_FOUND", { params: { record: `holder of order ${id}` }, cause: e }) : e;
  }
  if (/one_open|certificate_serial/.test(violated)) {
    return new UkeyError("ORDER_ALREADY_OPEN", { params: { serial: serial ?? "" }, cause: e });
  }
  return new UkeyError("RECORD_DUPLICATE", { params: { record: `order ${id}` }, cause: e });
}

/**
 * Renewal orders. The database allows one open order (created .. installed)
 * per certificate: insert (or a transition back into an open state) throws
 * UkeyError ORDER_ALREADY_OPEN when another exists, RECORD_DUPLICATE for an
 * existing order id, RECORD_NOT_FOUND for an unknown holder.
 */
export function orderRepository(x: Executor): OrderRepository {
  return {
    async insert(o) {
      try {
        await x.sql.run(INSERT, [
          o.id, o.certificateSerial, o.holderId, o.profileId, o.state, o.channel, o.newSerial, JSON.stringify(o.data),
          o.createdAt, o.updatedAt,
        ]);
      } catch (e) {
        throw orderConflict(e, o.id, o.certificateSerial);
      }
    },
    async get(id) {
      const rows = await x.sql.query<OrderRow>(BY_ID, [id]);
      return rows[0] && toOrder(rows[0]);
    },
    async getForUpdate(id) {
      const rows = await x.sql.query<OrderRow>(BY_ID_FOR_UPDATE, [id]);
      return rows[0] && toOrder(rows[0]);
    },
    async findOpenForCertificate(serial) {
      const rows = await x.sql.query<OrderRow>(OPEN_FOR_CERTIFICATE, [serial]);
      return rows[0] && toOrder(rows[0]);
    },
    async lastFailedAt(serial) {
      // Served by renewal_orders_certificate_serial: a certificate's few orders, filtered by state;
      // failures up to an operator's unlock (renewal_unlocks) no longer count.
      const rows = await x.sql.query<{ at: number | string | null }>(LAST_FAILED, [serial, serial]);
      const at = rows[0]?.at;
      return at === null || at === undefined ? undefined : Number(at);
    },
    async unlockRenewal(serial, at) {
      await x.sql.run(
        "INSERT INTO renewal_unlocks (certificate_serial, unlocked_at) VALUES (?, ?) ON CONFLICT (certificate_serial) DO UPDATE SET unlocked_at = excluded.unlocked_at",
        [serial, at]);
    },
    async transition(id, from, to, at, patch = {}) {
      const params: unknown[] = [to, at];
      if (patch.newSerial !== undefined) params.push(patch.newSerial);
      if (patch.data !== undefined) params.push(JSON.stringify(patch.data));
      params.push(id, from);
      const sql = TRANSITION[(patch.newSerial !== undefined ? 1 : 0) + (patch.data !== undefined ? 2 : 0)]!;
      try {
        return (await x.sql.run(sql, params)) === 1;
      } catch (e) {
        throw orderConflict(e, id, null);
      }
    },
    async countByState() {
      const rows = await x.sql.query<{ state: string; n: number | string }>("SELECT state, COUNT(*) AS n FROM renewal_orders GROUP BY state");
      return Object.fromEntries(rows.map((r) => [r.state, toNumber(r.n)]));
    },
    async list(q = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (q.state !== undefined) { where.push("state = ?"); params.push(q.state); }
      if (q.holderId !== undefined) { where.push("holder_id = ?"); params.push(q.holderId); }
      params.push(pageSize(q.limit, 100, 1000), pageOffset(q.offset));
      const rows = await x.sql.query<OrderRow>(
        `SELECT ${COLUMNS} FROM renewal_orders${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, params);
      return rows.map(toOrder);
    },
  };
}
