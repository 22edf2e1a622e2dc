import { existsSync, statSync } from "node:fs";
import { UkeyError } from "@ukey/policy";
import { auditLog } from "./audit-log.js";
import type { Database, Millis, Sql } from "./types.js";

/**
 * The issuing CA a database serves: its key identifier (hex SKI) and the
 * SHA-256 of its certificate's DER (hex). `ukey-server init` writes it
 * (migration 8's ca_binding row); every later open compares it.
 */
export interface CaBinding {
  issuingKeyId: string;
  issuingCertSha256: string;
}

/** The stored binding and how it came to be. */
export interface StoredCaBinding extends CaBinding {
  how: "init" | "adopted";
  boundAt: Millis;
}

/** What a database of an earlier release holds of this CA, recorded when it is adopted. */
export interface AdoptionEvidence {
  schemaVersion: number;
  issuerRecorded: boolean;
  certificates: boolean;
  crlNumber: boolean;
  initialisedEntry: boolean;
}

type Inspection = { state: "bound" } | { state: "adopt"; evidence: AdoptionEvidence };

/** The binding row, if the database has one (migration 8 applied). */
export async function readCaBinding(sql: Sql): Promise<StoredCaBinding | undefined> {
  const rows = await sql.query<{ issuing_key_id: string; issuing_cert_sha256: string; how: string; bound_at: number | string }>(
    "SELECT issuing_key_id, issuing_cert_sha256, how, bound_at FROM ca_binding WHERE id = 1");
  const r = rows[0];
  return r && { issuingKeyId: r.issuing_key_id, issuingCertSha256: r.issuing_cert_sha256, how: r.how as StoredCaBinding["how"], boundAt: Number(r.bound_at) };
}

/**
 * Writes the binding unless one exists; returns whether it wrote. Run it
 * inside the transaction that records the CA (init) or adopts the database.
 */
export async function writeCaBinding(sql: Sql, binding: CaBinding, how: StoredCaBinding["how"], at: Millis): Promise<boolean> {
  const changed = await sql.run(
    "INSERT INTO ca_binding (id, issuing_key_id, issuing_cert_sha256, how, bound_at) VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    [binding.issuingKeyId, binding.issuingCertSha256, how, at]);
  return changed === 1;
}

/** DATABASE_CA_MISMATCH for `expected`, saying why. */
export function caMismatch(expected: CaBinding, reason: string): UkeyError {
  return new UkeyError("DATABASE_CA_MISMATCH", { params: { keyId: expected.issuingKeyId, reason } });
}

/**
 * The state of an embedded database file before it is opened, so that a
 * missing or emptied file is refused without SQLite creating a fresh
 * database in its place. An empty file whose WAL holds frames is left to
 * the schema check (SQLite keeps a new database's pages in the WAL until
 * its first checkpoint).
 */
export function sqliteFileState(file: string): "missing" | "empty" | "present" {
  if (!existsSync(file)) return "missing";
  if (statSync(file).size > 0) return "present";
  try {
    return statSync(`${file}-wal`).size > 0 ? "present" : "empty";
  } catch {
    return "empty";
  }
}

/**
 * Reads, before any migration and without writing, whether the database
 * serves `expected`:
 * - bound to it: fine;
 * - bound to another CA: refused;
 * - not bound (a release before schema 8, or an upgrade cut short) but
 *   holding this CA's data (its issuer row, certificates it issued, its
 *   CRL number, its `ca.initialised` audit entry): to be adopted;
 * - anything else (no schema, nothing of this CA, another CA's data): refused.
 *
 * Throws UkeyError DATABASE_CA_MISMATCH.
 */
export async function inspectCaBinding(db: Database, expected: CaBinding): Promise<Inspection> {
  if (!(await tableExists(db, "schema_version"))) throw caMismatch(expected, "the database is empty (it has no schema)");
  const v = await db.query<{ v: number | string | null }>("SELECT MAX(version) AS v FROM schema_version");
  const schemaVersion = Number(v[0]?.v ?? 0);
  if (schemaVersion < 1) throw caMismatch(expected, "the database is empty (its schema was never created)");
  if (await tableExists(db, "ca_binding")) {
    const bound = await readCaBinding(db);
    if (bound) {
      assertMatches(bound, expected);
      return { state: "bound" };
    }
  }
  const keyId = expected.issuingKeyId;
  const any = async (sql: string, params: unknown[]) => (await db.query(sql, params)).length > 0;
  const evidence: AdoptionEvidence = {
    schemaVersion,
    issuerRecorded: await any("SELECT 1 AS one FROM issuers WHERE key_id = ? AND role = 'issuing'", [keyId]),
    certificates: await any("SELECT 1 AS one FROM certificates WHERE issuer_key_id = ? LIMIT 1", [keyId]),
    crlNumber: await any("SELECT 1 AS one FROM crl_numbers WHERE issuer_key_id = ?", [keyId]),
    initialisedEntry: await any("SELECT 1 AS one FROM audit_log WHERE subject_type = 'ca' AND subject_id = ? AND action = 'ca.initialised' LIMIT 1", [keyId]),
  };
  if (evidence.issuerRecorded || evidence.certificates || evidence.crlNumber || evidence.initialisedEntry) return { state: "adopt", evidence };
  const other = await db.query<{ key_id: string }>("SELECT key_id FROM issuers WHERE role = 'issuing' ORDER BY created_at LIMIT 1");
  if (other[0]) throw caMismatch(expected, `it holds the data of another CA (issuing key id ${other[0].key_id})`);
  throw caMismatch(expected, "the database holds nothing of this CA (no issuer record, certificate, CRL number or initialisation entry)");
}

/**
 * Binds a database of an earlier release that holds this CA's data, with
 * a `database.adopted` audit entry in the same transaction. Several
 * instances adopting at once bind once: only the one that wrote the row
 * writes the entry.
 */
export async function adoptDatabase(db: Database, binding: CaBinding, evidence: AdoptionEvidence, at: Millis): Promise<void> {
  await db.transaction(async (tx) => {
    if (!(await writeCaBinding(tx, binding, "adopted", at))) return;
    await auditLog({ sql: tx, atomic: (fn) => fn(tx) }).append({
      at, actor: "system", action: "database.adopted", subjectType: "ca", subjectId: binding.issuingKeyId,
      data: { issuingCertSha256: binding.issuingCertSha256, ...evidence },
    });
  });
}

/**
 * Refuses a database whose binding names another CA, or none.
 * Throws UkeyError DATABASE_CA_MISMATCH.
 */
export async function assertCaBinding(sql: Sql, expected: CaBinding): Promise<void> {
  const bound = await readCaBinding(sql);
  if (!bound) throw caMismatch(expected, "the database names no CA");
  assertMatches(bound, expected);
}

function assertMatches(bound: CaBinding, expected: CaBinding): void {
  if (bound.issuingKeyId !== expected.issuingKeyId) {
    throw caMismatch(expected, `it serves another CA (issuing key id ${bound.issuingKeyId})`);
  }
  if (bound.issuingCertSha256 !== expected.issuingCertSha256) {
    throw caMismatch(expected, `it serves another certificate of this key (issuing CA certificate SHA-256 ${bound.issuingCertSha256}, ca/issuing.cer.pem has ${expected.issuingCertSha256})`);
  }
}

async function tableExists(db: Database, name: string): Promise<boolean> {
  const rows = db.engine === "sqlite"
    ? await db.query("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = ?", [name])
    : await db.query("SELECT 1 AS one FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?", [name]);
  return rows.length > 0;
}
