import type { Executor } from "./executor.js";
import type { IssuerRecord, IssuerRepository } from "./types.js";

interface IssuerRow { key_id: string; subject_dn: string; der: Buffer | Uint8Array; role: string; created_at: number | string }

function toIssuer(r: IssuerRow): IssuerRecord {
  return { keyId: r.key_id, subjectDn: r.subject_dn, der: Buffer.from(r.der), role: r.role as IssuerRecord["role"], createdAt: Number(r.created_at) };
}

const COLUMNS = "key_id, subject_dn, der, role, created_at";

/** CA certificates: ours and foreign issuers of imported certificates. `put` inserts or replaces by key id. */
export function issuerRepository(x: Executor): IssuerRepository {
  return {
    async put(i) {
      await x.sql.run(
        `INSERT INTO issuers (${COLUMNS}) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key_id) DO UPDATE SET subject_dn = excluded.subject_dn, der = excluded.der, role = excluded.role`,
        [i.keyId, i.subjectDn, i.der, i.role, i.createdAt]);
    },
    async get(keyId) {
      const rows = await x.sql.query<IssuerRow>(`SELECT ${COLUMNS} FROM issuers WHERE key_id = ?`, [keyId]);
      return rows[0] && toIssuer(rows[0]);
    },
    async findBySubject(subjectDn) {
      const rows = await x.sql.query<IssuerRow>(`SELECT ${COLUMNS} FROM issuers WHERE subject_dn = ? ORDER BY created_at, key_id`, [subjectDn]);
      return rows.map(toIssuer);
    },
    async list() {
      const rows = await x.sql.query<IssuerRow>(`SELECT ${COLUMNS} FROM issuers ORDER BY created_at, key_id`);
      return rows.map(toIssuer);
    },
  };
}
