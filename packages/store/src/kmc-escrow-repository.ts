import { UkeyError } from "@ukey/policy";
import type { Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { Millis } from "./types.js";

/**
 * An encryption private key escrowed by the key management centre: never
 * in clear here, only wrapped under the KMC master key (see the server's
 * kmc/ for the wrapping). `wrappedKey` is opaque to the store.
 */
export interface KmcEscrow {
  id: string;
  holderId: string;
  /** "sm2". */
  algorithm: string;
  /** DER SubjectPublicKeyInfo of the escrowed key pair. */
  spki: Buffer;
  /** The private key wrapped under the master key `masterKeyId`. */
  wrappedKey: Buffer;
  masterKeyId: string;
  createdAt: Millis;
}

export interface KmcEscrowRepository {
  /** Records an escrow. Throws UkeyError HOLDER_NOT_FOUND for an unknown holder, REQUEST_INVALID for an id in use. */
  insert(e: KmcEscrow): Promise<void>;
  get(id: string): Promise<KmcEscrow | undefined>;
  /** A holder's escrows, oldest first. */
  listByHolder(holderId: string): Promise<KmcEscrow[]>;
}

interface EscrowRow { id: string; holder_id: string; algorithm: string; spki: string; wrapped_key: string; master_key_id: string; created_at: number | string }

const COLUMNS = "id, holder_id, algorithm, spki, wrapped_key, master_key_id, created_at";

function toEscrow(r: EscrowRow): KmcEscrow {
  return {
    id: r.id, holderId: r.holder_id, algorithm: r.algorithm, spki: Buffer.from(r.spki, "base64"),
    wrappedKey: Buffer.from(r.wrapped_key, "base64"), masterKeyId: r.master_key_id, createdAt: Number(r.created_at),
  };
}

/** The KMC's escrow records (migration 11). Rows are only ever added. */
export function kmcEscrowRepository(x: Executor): KmcEscrowRepository {
  return {
    async insert(e) {
      try {
        await x.atomic((tx) => tx.run(`INSERT INTO kmc_escrows (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`,
          [e.id, e.holderId, e.algorithm, e.spki.toString("base64"), e.wrappedKey.toString("base64"), e.masterKeyId, e.createdAt]));
      } catch (err) {
        if (foreignKeyViolation(err)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: e.holderId }, cause: err });
        if (uniqueViolation(err)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `escrow ${e.id} exists` }, cause: err });
        throw err;
      }
    },
    async get(id) {
      const rows = await x.sql.query<EscrowRow>(`SELECT ${COLUMNS} FROM kmc_escrows WHERE id = ?`, [id]);
      return rows[0] ? toEscrow(rows[0]) : undefined;
    },
    async listByHolder(holderId) {
      const rows = await x.sql.query<EscrowRow>(`SELECT ${COLUMNS} FROM kmc_escrows WHERE holder_id = ? ORDER BY created_at, id`, [holderId]);
      return rows.map(toEscrow);
    },
  };
}
