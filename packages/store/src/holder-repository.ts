import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, toMillisOrNull, type Executor } from "./executor.js";
import { uniqueViolation } from "./sql-errors.js";
import type { HolderKind, HolderRecord, HolderRepository } from "./types.js";

const COLUMNS = "id, kind, name, id_type, id_hash, id_masked, phone, email, organisation_id, created_at";

interface HolderRow {
  id: string; kind: string; name: string; id_type: string; id_hash: string; id_masked: string;
  phone: string | null; email: string | null; organisation_id: string | null; created_at: number | string;
}

function toHolder(r: HolderRow): HolderRecord {
  return {
    id: r.id, kind: r.kind as HolderKind, name: r.name, idType: r.id_type, idHash: r.id_hash, idMasked: r.id_masked,
    phone: r.phone, email: r.email, organisationId: r.organisation_id, createdAt: Number(toMillisOrNull(r.created_at)),
  };
}

/**
 * Holders. The ID number itself is never stored: only its keyed hash (for
 * lookup) and a masked form (for display).
 * insert throws UkeyError RECORD_DUPLICATE when the holder ID exists.
 */
/** The hot read as a constant: the statement cache is keyed by the text. */
const BY_ID = `SELECT ${COLUMNS} FROM holders WHERE id = ?`;

export function holderRepository(x: Executor): HolderRepository {
  return {
    async insert(h) {
      try {
        await x.sql.run(`INSERT INTO holders (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
          h.id, h.kind, h.name, h.idType, h.idHash, h.idMasked, h.phone, h.email, h.organisationId, h.createdAt,
        ]);
      } catch (e) {
        if (uniqueViolation(e)) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `holder ${h.id}` }, cause: e });
        throw e;
      }
    },
    async get(id) {
      const rows = await x.sql.query<HolderRow>(BY_ID, [id]);
      return rows[0] && toHolder(rows[0]);
    },
    async findByIdHash(idHash) {
      // The same person may appear under two customer numbers; the oldest record wins.
      const rows = await x.sql.query<HolderRow>(
        `SELECT ${COLUMNS} FROM holders WHERE id_hash = ? ORDER BY created_at, id LIMIT 1`, [idHash]);
      return rows[0] && toHolder(rows[0]);
    },
    async list(opts = {}) {
      const rows = await x.sql.query<HolderRow>(`SELECT ${COLUMNS} FROM holders ORDER BY id LIMIT ? OFFSET ?`, [
        pageSize(opts.limit, 100, 1000), pageOffset(opts.offset),
      ]);
      return rows.map(toHolder);
    },
  };
}
