// How long the migration from schema 16 to 17 (delta CRLs: a nullable column and a partial index on the
// certificates table) takes on a filled database, for docs/configuration.md#upgrading. Not part of
// `npm run bench`: it answers an operator's question once per release, not a regression.
//
//   UKEY_BENCH_MIGRATION_ROWS      certificates (default 1000000), one in a hundred revoked
//   UKEY_BENCH_MIGRATION_POSTGRES  1: the same on the private PostgreSQL test cluster (scripts/ensure-postgres.sh)
//   UKEY_BENCH_MIGRATION_PG_ROWS   certificates on PostgreSQL (default 1000000)
//
//   node --import tsx bench/schema-17-migration-bench.ts
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { migrate, openDatabase, type Database } from "@ukey/store";
import { databaseBytes, fillGenerated, withBenchPostgres } from "./bench-database.js";

async function measure(label: string, db: Database, rows: number): Promise<void> {
  const at = Date.now();
  await migrate(db, at, 16);
  await db.run(`INSERT INTO holders (id, kind, name, id_type, id_hash, id_masked, phone, email, organisation_id, created_at)
    VALUES ('B1', 'person', 'bench', 'resident-id', 'x', '1101**********1234', NULL, NULL, NULL, ?)`, [at]);
  // Rows of the sizes an issued certificate has: its DER (about 700 bytes) and its pre-signed OCSP
  // response (about 900), so that reading the table once costs what it costs in service.
  const fillSeconds = await fillGenerated(db, rows, ({ series, source, hex, blob }) => [`${series}
    INSERT INTO certificates (serial, issuer_key_id, issuer_dn, subject_dn, sans, not_before, not_after, status, revoked_at, revocation_reason,
      spki_sha256, kind, holder_id, profile_id, der, imported, created_at, updated_at, ocsp_der, ocsp_this_update, ocsp_next_update, ocsp_refresh_at)
    SELECT 'f0' || ${hex(30)}, 'aa11', 'CN=Bench CA', 'CN=bench', '[]', ${at}, ${at + 3 * 365 * 86_400_000},
      CASE WHEN x % 100 = 0 THEN 'revoked' ELSE 'active' END, CASE WHEN x % 100 = 0 THEN ${at} ELSE NULL END,
      CASE WHEN x % 100 = 0 THEN 'keyCompromise' ELSE NULL END, ${hex(64)}, 'hardware', 'B1', 'personal', ${blob("01".repeat(700))}, 0,
      ${at}, ${at}, ${blob("02".repeat(900))}, ${at}, ${at + 86_400_000}, ${at + 43_200_000} ${source}`]);
  // At rest, as a stopped server leaves it: the fill's WAL written back, so that the time is the
  // migration's and not that of a checkpoint of the fill falling inside it.
  if (db.engine === "sqlite") await db.query("PRAGMA wal_checkpoint(TRUNCATE)");
  const bytes = await databaseBytes(db);
  const t0 = performance.now();
  const found = await migrate(db, at);
  const seconds = (performance.now() - t0) / 1000;
  if (found !== 16) throw new Error(`the database was at schema ${found}, not 16`);
  console.log(`${`schema 16 -> 17, ${label}, ${rows.toLocaleString("en")} certificates`.padEnd(56)} ${seconds.toFixed(2).padStart(7)} s   (database ${(bytes / 1048576).toFixed(0)} MB, filled in ${fillSeconds.toFixed(0)} s)`);
}

const dir = mkdtempSync(join(tmpdir(), "ukey-migration-bench-"));
try {
  const db = await openDatabase({ dataDir: dir });
  try {
    await measure("embedded", db, Number(process.env.UKEY_BENCH_MIGRATION_ROWS ?? 1_000_000));
  } finally {
    await db.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (process.env.UKEY_BENCH_MIGRATION_POSTGRES === "1") {
  await withBenchPostgres(async (url) => {
    const db = await openDatabase({ databaseUrl: url });
    try {
      await measure("PostgreSQL", db, Number(process.env.UKEY_BENCH_MIGRATION_PG_ROWS ?? 1_000_000));
    } finally {
      await db.close();
    }
  });
}
