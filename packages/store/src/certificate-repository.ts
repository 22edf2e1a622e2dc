import { UkeyError } from "@ukey/policy";
import { pageOffset, pageSize, toMillisOrNull, toNumber, type Executor } from "./executor.js";
import { foreignKeyViolation, uniqueViolation } from "./sql-errors.js";
import type { CertificateRecord, CertificateRepository, CertificateStatus, OcspState } from "./types.js";

const COLUMNS = `serial, issuer_key_id, issuer_dn, subject_dn, sans, not_before, not_after, status, revocation_reason,
  revoked_at, spki_sha256, kind, token_serial, holder_id, profile_id, der, imported, created_at, updated_at`;

/** How many revoked entries one page of `listRevoked` reads. */
const REVOKED_PAGE = 1000;

interface CertificateRow {
  serial: string; issuer_key_id: string; issuer_dn: string; subject_dn: string; sans: string;
  not_before: number | string; not_after: number | string; status: string; revocation_reason: string | null;
  revoked_at: number | string | null; spki_sha256: string; kind: string; token_serial: string | null;
  holder_id: string; profile_id: string; der: Buffer | Uint8Array | null; imported: number | string;
  created_at: number | string; updated_at: number | string;
}

function toCertificate(r: CertificateRow): CertificateRecord {
  return {
    serial: r.serial, issuerKeyId: r.issuer_key_id, issuerDn: r.issuer_dn, subjectDn: r.subject_dn,
    sans: JSON.parse(r.sans) as string[], notBefore: Number(r.not_before), notAfter: Number(r.not_after),
    status: r.status as CertificateStatus, revocationReason: r.revocation_reason, revokedAt: toMillisOrNull(r.revoked_at),
    spkiSha256: r.spki_sha256, kind: r.kind as CertificateRecord["kind"], tokenSerial: r.token_serial,
    holderId: r.holder_id, profileId: r.profile_id, der: r.der === null ? null : Buffer.isBuffer(r.der) ? r.der : Buffer.from(r.der),
    imported: Number(r.imported) === 1, createdAt: Number(r.created_at), updatedAt: Number(r.updated_at),
  };
}

// Hot statements as constants: the statement cache is keyed by the text, which is then not rebuilt per call.
const INSERT = `INSERT INTO certificates (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
const BY_SERIAL = `SELECT ${COLUMNS} FROM certificates WHERE serial = ?`;
const BY_SERIAL_AND_ISSUER = `SELECT ${COLUMNS} FROM certificates WHERE serial = ? AND issuer_key_id = ?`;

const OCSP_COLUMNS = `serial, status, CASE WHEN der IS NULL THEN 0 ELSE 1 END AS issued, revoked_at, revocation_reason, not_after`;
const OCSP_STATE = `SELECT ${OCSP_COLUMNS}, ocsp_der, ocsp_this_update, ocsp_next_update FROM certificates WHERE serial = ? AND issuer_key_id = ?`;
// A revocation time compared with NULL meaning "not revoked" (-1 never is a time), the same text on both engines.
const STORE_OCSP = `UPDATE certificates SET ocsp_der = ?, ocsp_this_update = ?, ocsp_next_update = ?, ocsp_refresh_at = ?
  WHERE serial = ? AND COALESCE(revoked_at, -1) = ? AND status NOT IN ('pending', 'abandoned')`;

interface OcspRow {
  serial: string; status: string; issued: number | string; revoked_at: number | string | null; revocation_reason: string | null;
  not_after: number | string; ocsp_der?: Buffer | Uint8Array | null; ocsp_this_update?: number | string | null; ocsp_next_update?: number | string;
}

function toOcspState(r: OcspRow): OcspState {
  const s: OcspState = {
    serial: r.serial, status: r.status as CertificateStatus, issued: Number(r.issued) === 1, revokedAt: toMillisOrNull(r.revoked_at),
    revocationReason: r.revocation_reason, notAfter: Number(r.not_after),
  };
  if (r.ocsp_der) {
    s.response = {
      der: Buffer.isBuffer(r.ocsp_der) ? r.ocsp_der : Buffer.from(r.ocsp_der),
      thisUpdate: Number(r.ocsp_this_update), nextUpdate: Number(r.ocsp_next_update),
    };
  }
  return s;
}

const PENDING = { status: "pending", der: null, revocationReason: null, revokedAt: null, imported: false } as const;

/**
 * Certificates, keyed by serial (unique across issuers: ours are random and
 * imported ones are checked on import).
 *
 * Throws UkeyError RECORD_DUPLICATE for an existing serial,
 * HOLDER_NOT_FOUND when the holder does not exist, CERT_NOT_FOUND for an
 * unknown serial, CERT_INTENT_NOT_PENDING when completing an intent that is
 * not pending.
 */
export function certificateRepository(x: Executor): CertificateRepository {
  /** Inserts `c` with the given state (no copy of the record is made for it). */
  async function insert(
    c: Omit<CertificateRecord, "status" | "der" | "revocationReason" | "revokedAt" | "imported">,
    s: Pick<CertificateRecord, "status" | "der" | "revocationReason" | "revokedAt" | "imported">,
  ): Promise<void> {
    try {
      await x.sql.run(INSERT, [
        c.serial, c.issuerKeyId, c.issuerDn, c.subjectDn, JSON.stringify(c.sans), c.notBefore, c.notAfter, s.status,
        s.revocationReason, s.revokedAt, c.spkiSha256, c.kind, c.tokenSerial, c.holderId, c.profileId, s.der,
        s.imported ? 1 : 0, c.createdAt, c.updatedAt,
      ]);
    } catch (e) {
      if (uniqueViolation(e)) throw new UkeyError("RECORD_DUPLICATE", { params: { record: `certificate ${c.serial}` }, cause: e });
      if (foreignKeyViolation(e)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: c.holderId }, cause: e });
      throw e;
    }
  }

  async function exists(serial: string): Promise<boolean> {
    return (await x.sql.query("SELECT 1 AS one FROM certificates WHERE serial = ?", [serial])).length > 0;
  }

  return {
    insertIntent(c) {
      return insert(c, PENDING);
    },
    async completeIntent(serial, der, at, ocsp) {
      const changed = await x.sql.run(
        `UPDATE certificates SET status = 'active', der = ?, updated_at = ?,
           ocsp_der = ?, ocsp_this_update = ?, ocsp_next_update = ?, ocsp_refresh_at = ?
         WHERE serial = ? AND status = 'pending'`,
        [der, at, ocsp?.der ?? null, ocsp?.thisUpdate ?? null, ocsp?.nextUpdate ?? 0, ocsp?.refreshAt ?? 0, serial]);
      if (changed === 1) return;
      if (!(await exists(serial))) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
      throw new UkeyError("CERT_INTENT_NOT_PENDING", { params: { serial } });
    },
    async abandonStaleIntents(olderThan, at, limit = 500) {
      // The outer status test is the compare-and-set: on PostgreSQL an intent another instance is
      // abandoning (or completing) at the same moment is skipped (SKIP LOCKED) or found no longer
      // pending once its lock is released, so each intent is returned by one call only.
      const rows = await x.sql.query<{ serial: string; holder_id: string; profile_id: string; subject_dn: string; created_at: number | string }>(
        `UPDATE certificates SET status = 'abandoned', updated_at = ?
         WHERE status = 'pending' AND serial IN (
           SELECT serial FROM certificates WHERE status = 'pending' AND created_at < ? ORDER BY created_at LIMIT ? FOR UPDATE SKIP LOCKED)
         RETURNING serial, holder_id, profile_id, subject_dn, created_at`,
        [at, olderThan, Math.max(1, Math.floor(limit))]);
      return rows
        .map((r) => ({ serial: r.serial, holderId: r.holder_id, profileId: r.profile_id, subjectDn: r.subject_dn, createdAt: Number(r.created_at) }))
        .sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
    },
    async insertImported(c) {
      await insert(c, { status: c.status, der: c.der, revocationReason: c.revocationReason, revokedAt: c.revokedAt, imported: true });
      // A revoked certificate imported after a complete CRL was signed is news to its delta CRL.
      if (c.revokedAt !== null) await x.sql.run("UPDATE certificates SET revocation_changed_at = ? WHERE serial = ?", [c.updatedAt, c.serial]);
    },
    async get(serial, issuerKeyId) {
      const rows = issuerKeyId === undefined
        ? await x.sql.query<CertificateRow>(BY_SERIAL, [serial])
        : await x.sql.query<CertificateRow>(BY_SERIAL_AND_ISSUER, [serial, issuerKeyId]);
      return rows[0] && toCertificate(rows[0]);
    },
    async revoke(serial, reason, at, status = "revoked") {
      const changed = await x.sql.run(
        `UPDATE certificates SET status = ?, revocation_reason = ?, revoked_at = ?, updated_at = ?, revocation_changed_at = ?,
           ocsp_der = NULL, ocsp_this_update = NULL, ocsp_next_update = 0, ocsp_refresh_at = 0
         WHERE serial = ? AND revoked_at IS NULL`,
        [status, reason, at, at, at, serial]);
      if (changed === 1) return true;
      if (!(await exists(serial))) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
      return false;
    },
    async releaseHold(serial, at) {
      const changed = await x.sql.run(
        `UPDATE certificates SET status = 'active', revocation_reason = NULL, revoked_at = NULL, updated_at = ?, revocation_changed_at = ?,
           ocsp_der = NULL, ocsp_this_update = NULL, ocsp_next_update = 0, ocsp_refresh_at = 0
         WHERE serial = ? AND status = 'revoked' AND revocation_reason = 'certificateHold'`,
        [at, at, serial]);
      return changed === 1;
    },
    async setStatus(serial, status, at) {
      const changed = await x.sql.run("UPDATE certificates SET status = ?, updated_at = ? WHERE serial = ?", [status, at, serial]);
      if (changed !== 1) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
    },
    async revocationStamp(issuerKeyId, range) {
      const rows = await x.sql.query<{ n: number | string; latest: number | string | null }>(
        `SELECT COUNT(*) AS n, MAX(revoked_at) AS latest FROM certificates WHERE issuer_key_id = ? AND revoked_at IS NOT NULL
           AND serial >= ?${range?.to === undefined ? "" : " AND serial < ?"}`,
        [issuerKeyId, range?.from ?? "", ...(range?.to === undefined ? [] : [range.to])]);
      const r = rows[0];
      return { count: Number(r?.n ?? 0), latestAt: r?.latest === null || r?.latest === undefined ? null : Number(r.latest) };
    },

    async revocationChangeStamp(issuerKeyId, since, range) {
      const rows = await x.sql.query<{ n: number | string; latest: number | string | null }>(
        `SELECT COUNT(*) AS n, MAX(revocation_changed_at) AS latest FROM certificates
         WHERE issuer_key_id = ? AND revocation_changed_at >= ? AND serial >= ?${range?.to === undefined ? "" : " AND serial < ?"}`,
        [issuerKeyId, since, range?.from ?? "", ...(range?.to === undefined ? [] : [range.to])]);
      const r = rows[0];
      return { count: Number(r?.n ?? 0), latestAt: r?.latest === null || r?.latest === undefined ? null : Number(r.latest) };
    },
    listRevocationChanges(issuerKeyId, since, range) {
      return {
        async *[Symbol.asyncIterator]() {
          // Keyset pages over (revocation_changed_at, serial), the index's own order: only the rows changed since `since`.
          let afterAt = since - 1;
          let afterSerial = "";
          const upTo = range?.to === undefined ? "" : " AND serial < ?";
          for (;;) {
            const rows = await x.sql.query<{ serial: string; revoked_at: number | string | null; revocation_reason: string | null; status: string; changed: number | string }>(
              `SELECT serial, revoked_at, revocation_reason, status, revocation_changed_at AS changed FROM certificates
               WHERE issuer_key_id = ? AND (revocation_changed_at > ? OR (revocation_changed_at = ? AND serial > ?))
                 AND serial >= ?${upTo}
               ORDER BY revocation_changed_at, serial LIMIT ?`,
              [issuerKeyId, afterAt, afterAt, afterSerial, range?.from ?? "", ...(range?.to === undefined ? [] : [range.to]), REVOKED_PAGE]);
            for (const r of rows) {
              const revokedAt = toMillisOrNull(r.revoked_at);
              if (revokedAt !== null && (r.status === "revoked" || r.status === "superseded")) {
                yield { serial: r.serial, revokedAt, revocationReason: r.revocation_reason, changedAt: Number(r.changed) };
              } else if (revokedAt === null) {
                yield { serial: r.serial, revokedAt: null, revocationReason: null, changedAt: Number(r.changed) };
              }
            }
            if (rows.length < REVOKED_PAGE) return;
            const last = rows[rows.length - 1]!;
            afterAt = Number(last.changed);
            afterSerial = last.serial;
          }
        },
      };
    },
    listRevoked(issuerKeyId, range) {
      return {
        async *[Symbol.asyncIterator]() {
          // Keyset pages: memory stays flat however long the CRL grows. A shard is a range of serials.
          let after = "";
          const first = range?.from ?? "";
          const upTo = range?.to === undefined ? "" : " AND serial < ?";
          for (;;) {
            const rows = await x.sql.query<{ serial: string; revoked_at: number | string; revocation_reason: string | null }>(
              `SELECT serial, revoked_at, revocation_reason FROM certificates
               WHERE issuer_key_id = ? AND serial > ? AND serial >= ?${upTo} AND revoked_at IS NOT NULL AND status IN ('revoked', 'superseded')
               ORDER BY serial LIMIT ?`,
              [issuerKeyId, after, first, ...(range?.to === undefined ? [] : [range.to]), REVOKED_PAGE]);
            for (const r of rows) {
              yield { serial: r.serial, revokedAt: toMillisOrNull(r.revoked_at), revocationReason: r.revocation_reason };
            }
            if (rows.length < REVOKED_PAGE) return;
            after = rows[rows.length - 1]!.serial;
          }
        },
      };
    },
    async search(q) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (q.holderId !== undefined) { where.push("holder_id = ?"); params.push(q.holderId); }
      if (q.status !== undefined) { where.push("status = ?"); params.push(q.status); }
      if (q.notAfterBefore !== undefined) { where.push("not_after < ?"); params.push(q.notAfterBefore); }
      if (q.subjectContains !== undefined && q.subjectContains !== "") {
        // LOWER on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
        where.push("LOWER(subject_dn) LIKE ? ESCAPE '\\'");
        params.push(`%${q.subjectContains.toLowerCase().replace(/[\\%_]/g, (m) => `\\${m}`)}%`);
      }
      params.push(pageSize(q.limit, 100, 1000), pageOffset(q.offset));
      const rows = await x.sql.query<CertificateRow>(
        `SELECT ${COLUMNS} FROM certificates ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY not_after, serial LIMIT ? OFFSET ?`, params);
      return rows.map(toCertificate);
    },
    async ocspState(serial, issuerKeyId) {
      const rows = await x.sql.query<OcspRow>(OCSP_STATE, [serial, issuerKeyId]);
      return rows[0] && toOcspState(rows[0]);
    },
    async storeOcsp(serial, r, basis) {
      return (await x.sql.run(STORE_OCSP, [r.der, r.thisUpdate, r.nextUpdate, r.refreshAt, serial, basis ?? -1])) === 1;
    },
    async claimOcspDue(issuerKeyId, now, leaseUntil, limit) {
      const rows = await x.sql.query<OcspRow>(
        `UPDATE certificates SET ocsp_refresh_at = ?
         WHERE serial IN (
           SELECT serial FROM certificates WHERE issuer_key_id = ? AND ocsp_refresh_at < ?
           ORDER BY ocsp_refresh_at LIMIT ? FOR UPDATE SKIP LOCKED)
         RETURNING ${OCSP_COLUMNS}`,
        [leaseUntil, issuerKeyId, now, Math.max(1, Math.floor(limit))]);
      return rows.map(toOcspState);
    },
    async rescheduleOcsp(serial, lease, refreshAt) {
      await x.sql.run("UPDATE certificates SET ocsp_refresh_at = ? WHERE serial = ? AND ocsp_refresh_at = ?", [refreshAt, serial, lease]);
    },
    async countByStatus() {
      const rows = await x.sql.query<{ status: string; n: number | string }>("SELECT status, COUNT(*) AS n FROM certificates GROUP BY status");
      return Object.fromEntries(rows.map((r) => [r.status, toNumber(r.n)]));
    },

    async expiryHistogram({ from, bucketMs, buckets, overdueSinceMs }) {
      const until = from + bucketMs * buckets;
      // Bucket -1 is overdue. The CAST: SQLite binds JS numbers as REAL, so its division would not truncate.
      const rows = await x.sql.query<{ b: number | string; n: number | string }>(
        `SELECT CASE WHEN not_after < ? THEN -1 ELSE CAST((not_after - ?) / ? AS INTEGER) END AS b, COUNT(*) AS n FROM certificates
          WHERE status IN ('active', 'expired') AND not_after >= ? AND not_after < ? GROUP BY b`,
        [from, from, bucketMs, from - overdueSinceMs, until]);
      const counts = new Array<number>(buckets).fill(0);
      let overdue = 0;
      for (const r of rows) {
        const b = toNumber(r.b);
        if (b < 0) overdue += toNumber(r.n);
        else if (b < buckets) counts[b] = (counts[b] ?? 0) + toNumber(r.n);
      }
      return { overdue, counts };
    },
  };
}
