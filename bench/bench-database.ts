// What the benches that fill a database at scale share: rows generated inside the database (one
// INSERT ... SELECT per chunk, on either engine), and a throwaway database on the private PostgreSQL
// test cluster (scripts/ensure-postgres.sh; never the machine's own PostgreSQL service).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import type { Database } from "@ukey/store";

/** SQL pieces for rows numbered `from`..`to` (the column `x`), written for the engine at hand. */
export interface RowSeries {
  /** A WITH clause to put before the INSERT (empty on PostgreSQL). */
  series: string;
  /** The FROM clause of the SELECT. */
  source: string;
  /** `x` in lower-case hex, left-padded with zeros to `digits`. */
  hex(digits: number): string;
  /** A constant blob, given in hex. */
  blob(hex: string): string;
  /** A random 16-octet serial in canonical form (first octet 01..ff, so spread over CRL shards; 32 hex digits). */
  randomSerial: string;
}

function rowSeries(engine: Database["engine"], from: number, to: number): RowSeries {
  const sqlite = engine === "sqlite";
  return {
    series: sqlite ? `WITH RECURSIVE g(x) AS (SELECT ${from} UNION ALL SELECT x + 1 FROM g WHERE x < ${to})` : "",
    source: sqlite ? "FROM g" : `FROM generate_series(${from}::bigint, ${to}::bigint) x`,
    hex: (digits) => (sqlite ? `printf('%0${digits}x', x)` : `lpad(to_hex(x), ${digits}, '0')`),
    blob: (hex) => (sqlite ? `X'${hex}'` : `'\\x${hex}'::bytea`),
    randomSerial: sqlite
      ? "printf('%02x', 1 + abs(random()) % 255) || lower(hex(randomblob(15)))"
      : "lpad(to_hex(1 + floor(random() * 255)::int), 2, '0') || substr(md5(random()::text || x::text), 1, 30)",
  };
}

/**
 * Inserts rows 1..`rows` with the statements `build` writes for each chunk of `chunk` rows, one transaction
 * per chunk, then (PostgreSQL) ANALYZE, as an operator's database would have statistics; with `vacuum`,
 * VACUUM ANALYZE, so that the autovacuum ten million new rows trigger does not run during the measurement
 * that follows (it took the HTTP bound from 19,851 to 294 requests/s in one such run). Returns seconds.
 */
export async function fillGenerated(db: Database, rows: number, build: (s: RowSeries) => string[], { chunk = 200_000, vacuum = false } = {}): Promise<number> {
  const t0 = performance.now();
  for (let from = 1; from <= rows; from += chunk) {
    const s = rowSeries(db.engine, from, Math.min(rows, from + chunk - 1));
    await db.transaction(async (tx) => {
      for (const sql of build(s)) await tx.run(sql);
    });
  }
  if (db.engine === "postgres") await db.run(vacuum ? "VACUUM ANALYZE" : "ANALYZE");
  return (performance.now() - t0) / 1000;
}

/** How fillCertificates makes each row: its serial and its revocation state. */
export interface FillerRows {
  /** The serial, as SQL over the row's series (e.g. `s.randomSerial`, or a fixed prefix and `s.hex(30)`). */
  serial: (s: RowSeries) => string;
  /** Revoked (keyCompromise, at the fill's time) or active. */
  revoked: boolean;
  /** When their revocation state changed (null: never, or before any delta CRL's base). */
  revocationChangedAt?: number | null;
  /** VACUUM ANALYZE after the fill (PostgreSQL; see fillGenerated). */
  vacuum?: boolean;
}

/**
 * Inserts `count` filler certificates of the issuing CA `issuerKeyId` (hex), generated inside the database,
 * each with a placeholder stored OCSP response refreshed in 12 hours (nothing signs them during a bench).
 * Holder B1 and profile `personal`, as the bench context has them. Returns seconds.
 */
export async function fillCertificates(db: Database, issuerKeyId: string, count: number, rows: FillerRows): Promise<number> {
  const at = Date.now();
  if (!/^[0-9a-f]+$/.test(issuerKeyId)) throw new Error(`issuer key id ${issuerKeyId} is not hex`);
  const state = rows.revoked ? `'revoked', ${at}, 'keyCompromise'` : "'active', NULL, NULL";
  return fillGenerated(db, count, (s) => [`${s.series}
    INSERT INTO certificates (serial, issuer_key_id, issuer_dn, subject_dn, sans, not_before, not_after, status, revoked_at, revocation_reason, spki_sha256, kind,
       holder_id, profile_id, der, imported, created_at, updated_at, ocsp_der, ocsp_this_update, ocsp_next_update, ocsp_refresh_at, revocation_changed_at)
    SELECT ${rows.serial(s)}, '${issuerKeyId}', 'CN=Bench', 'CN=Filler', '[]', ${at}, ${at + 3 * 365 * 86_400_000}, ${state}, '0', 'file',
       'B1', 'personal', ${s.blob("01".repeat(64))}, 0, ${at}, ${at}, ${s.blob("02".repeat(250))}, ${at}, ${at + 86_400_000}, ${at + 43_200_000}, ${rows.revocationChangedAt ?? "NULL"} ${s.source}`],
  { vacuum: rows.vacuum ?? false });
}

/** Bytes the database takes on disk (PostgreSQL: the database; embedded: the pages of its file). */
export async function databaseBytes(db: Database): Promise<number> {
  if (db.engine === "postgres") {
    const r = await db.query<{ n: string | number }>("SELECT pg_database_size(current_database()) AS n");
    return Number(r[0]!.n);
  }
  const r = await db.query<{ n: number }>("SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()");
  return Number(r[0]!.n);
}

let databases = 0;

/**
 * Runs `fn` with the URL of a new, empty database on the private PostgreSQL test cluster (started by
 * scripts/ensure-postgres.sh when needed), and drops that database afterwards, whatever happens.
 */
export async function withBenchPostgres<T>(fn: (url: string) => Promise<T>): Promise<T> {
  const out = execFileSync("bash", [join(import.meta.dirname, "../scripts/ensure-postgres.sh")], { encoding: "utf8" });
  const admin = out.trim().split("\n").pop()!;
  const name = `ukey_bench_${process.pid}_${Date.now()}_${++databases}`;
  const run = async (sql: string) => { const c = new pg.Client({ connectionString: admin }); await c.connect(); try { await c.query(sql); } finally { await c.end(); } };
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(admin);
  url.pathname = `/${name}`;
  try {
    return await fn(url.toString());
  } finally {
    await run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}
