import type { Executor } from "./executor.js";
import type { Millis } from "./types.js";

/**
 * A signing + encryption certificate pair (GM/T 0015 dual certificates):
 * issued together, superseded together. `escrowId` is the KMC escrow of the
 * encryption certificate's private key.
 */
export interface CertificatePair {
  signingSerial: string;
  encryptionSerial: string;
  escrowId: string;
  createdAt: Millis;
}

export interface CertificatePairRepository {
  /** Records a pair (in the transaction that stores both certificates). */
  insert(p: CertificatePair): Promise<void>;
  /** The pair whose signing certificate is `serial`, if any. */
  getBySigning(serial: string): Promise<CertificatePair | undefined>;
  /** The pair whose encryption certificate is `serial`, if any. */
  getByEncryption(serial: string): Promise<CertificatePair | undefined>;
  /** The pair whose encryption certificate certifies escrow `escrowId`, if any. */
  getByEscrow(escrowId: string): Promise<CertificatePair | undefined>;
}

interface PairRow { signing_serial: string; encryption_serial: string; escrow_id: string; created_at: number | string }

const COLUMNS = "signing_serial, encryption_serial, escrow_id, created_at";
const toPair = (r: PairRow): CertificatePair => ({ signingSerial: r.signing_serial, encryptionSerial: r.encryption_serial, escrowId: r.escrow_id, createdAt: Number(r.created_at) });

/** Certificate pairs (migration 13). Rows are only ever added. */
export function certificatePairRepository(x: Executor): CertificatePairRepository {
  return {
    async insert(p) {
      await x.sql.run(`INSERT INTO certificate_pairs (${COLUMNS}) VALUES (?, ?, ?, ?)`, [p.signingSerial, p.encryptionSerial, p.escrowId, p.createdAt]);
    },
    async getBySigning(serial) {
      const rows = await x.sql.query<PairRow>(`SELECT ${COLUMNS} FROM certificate_pairs WHERE signing_serial = ?`, [serial]);
      return rows[0] ? toPair(rows[0]) : undefined;
    },
    async getByEncryption(serial) {
      const rows = await x.sql.query<PairRow>(`SELECT ${COLUMNS} FROM certificate_pairs WHERE encryption_serial = ?`, [serial]);
      return rows[0] ? toPair(rows[0]) : undefined;
    },
    async getByEscrow(escrowId) {
      const rows = await x.sql.query<PairRow>(`SELECT ${COLUMNS} FROM certificate_pairs WHERE escrow_id = ?`, [escrowId]);
      return rows[0] ? toPair(rows[0]) : undefined;
    },
  };
}
