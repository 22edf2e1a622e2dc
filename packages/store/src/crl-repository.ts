import type { Executor } from "./executor.js";
import type { CrlRepository } from "./types.js";

/**
 * CRL numbers. One upsert statement takes the next number, so several
 * server instances on one PostgreSQL never hand out the same number: the
 * row is locked by the UPDATE until the surrounding transaction ends.
 */
export function crlRepository(x: Executor): CrlRepository {
  return {
    async nextNumber(issuerKeyId, at) {
      const rows = await x.sql.query<{ last_number: number | string }>(
        `INSERT INTO crl_numbers (issuer_key_id, last_number, updated_at) VALUES (?, 1, ?)
         ON CONFLICT (issuer_key_id) DO UPDATE SET last_number = crl_numbers.last_number + 1, updated_at = excluded.updated_at
         RETURNING last_number`,
        [issuerKeyId, at]);
      return Number(rows[0]?.last_number);
    },
  };
}
