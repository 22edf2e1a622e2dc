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
