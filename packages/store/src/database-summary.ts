import BetterSqlite3 from "better-sqlite3";
import type { Sql } from "./types.js";

/**
 * What a backup records of its database, and what a restore compares: the
 * schema version, the audit chain's head, every CRL number, the number of
 * certificate rows.
 */
export interface DatabaseSummary {
  schemaVersion: number;
  auditSeq: number;
  auditHead: string;
  /** Last CRL number per CRL scope (issuing key id, or key id/shard). */
  crlNumbers: Record<string, number>;
  certificates: number;
}

/** The summary of a database, read through `sql` (either engine). Throws what the driver throws. */
export async function summariseDatabase(sql: Sql): Promise<DatabaseSummary> {
  const [v] = await sql.query<{ v: number | string | null }>("SELECT MAX(version) AS v FROM schema_version");
  const [head] = await sql.query<{ seq: number | string; hash: string }>("SELECT seq, hash FROM audit_head WHERE id = 1");
  const crls = await sql.query<{ issuer_key_id: string; last_number: number | string }>("SELECT issuer_key_id, last_number FROM crl_numbers ORDER BY issuer_key_id");
  const [c] = await sql.query<{ n: number | string }>("SELECT COUNT(*) AS n FROM certificates");
  return {
    schemaVersion: Number(v?.v ?? 0),
    auditSeq: Number(head?.seq ?? 0),
    auditHead: head?.hash ?? "",
    crlNumbers: Object.fromEntries(crls.map((r) => [r.issuer_key_id, Number(r.last_number)])),
    certificates: Number(c?.n ?? 0),
  };
}

/**
 * Prepares a copy made by SqliteDatabase.backupTo to travel as one file:
 * switches it to a rollback journal (a WAL database is the file plus its
 * -wal; the copy then has no side files) and returns its summary. The copy
 * is opened by this function alone.
 * @throws what better-sqlite3 throws for a file that is not a database.
 */
export function sealSqliteCopy(file: string): DatabaseSummary {
  const db = new BetterSqlite3(file, { fileMustExist: true });
  try {
    // No integrity check here: it would read every page on the serving process's thread; restore checks the copy.
    db.pragma("journal_mode = DELETE");
    const one = <T>(q: string) => db.prepare(q).get() as T;
    const crls = db.prepare("SELECT issuer_key_id, last_number FROM crl_numbers ORDER BY issuer_key_id").all() as Array<{ issuer_key_id: string; last_number: number }>;
    const head = one<{ seq: number; hash: string } | undefined>("SELECT seq, hash FROM audit_head WHERE id = 1");
    return {
      schemaVersion: Number(one<{ v: number | null }>("SELECT MAX(version) AS v FROM schema_version").v ?? 0),
      auditSeq: Number(head?.seq ?? 0),
      auditHead: head?.hash ?? "",
      crlNumbers: Object.fromEntries(crls.map((r) => [r.issuer_key_id, Number(r.last_number)])),
      certificates: Number(one<{ n: number }>("SELECT COUNT(*) AS n FROM certificates").n),
    };
  } finally {
    db.close();
  }
}
