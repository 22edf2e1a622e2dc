import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import Database from "better-sqlite3";
import pg from "pg";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { addHolder, initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type CliResult, type TempDir } from "./support/fixtures.js";
import { runUkeyServerHere } from "./support/in-process-cli.js";

// A CA never runs on a database that is not its own: an emptied, deleted
// or foreign database stops `start` and every operator command with
// DATABASE_CA_MISMATCH and is left as it was, so revocations are never
// dropped and CRL numbers never start again. A database of the release
// before the binding (schema 7) that holds this CA's data is adopted.
let t: TempDir;
let other: TempDir;
let a: { dataDir: string; env: Record<string, string> };
let b: { dataDir: string; env: Record<string, string> };
let dbFile: string;
let backup: string;

before(() => {
  t = tempDir();
  a = initialisedDataDir(t);
  other = tempDir();
  b = initialisedDataDir(other);
  assert.equal(addHolder(t, a.dataDir, a.env, "H1").status, 0);
  const { csr } = opensslCsr(t, "h1", keyArgs.p256);
  const issued = runUkeyServer(["issue", "--data-dir", a.dataDir, "--holder", "H1", "--profile", "personal", "--csr", csr, "--json"], a.env);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);
  const serial = issued.json<{ serial: string }>().serial;
  assert.equal(runUkeyServer(["revoke", "--data-dir", a.dataDir, "--serial", serial, "--reason", "keyCompromise", "--json"], a.env).status, 0);
  dbFile = `${a.dataDir}/db/ukey.sqlite`;
  backup = t.path("ukey.sqlite.backup");
  copyFileSync(dbFile, backup);
});
after(() => {
  other?.cleanup();
  t?.cleanup();
});

function errorOf(r: CliResult): { code: string; message: { en: string }; remedy: { en: string } } {
  return r.json<{ error: { code: string; message: { en: string }; remedy: { en: string } } }>().error;
}

/**
 * `start` and two operator commands, each refused with DATABASE_CA_MISMATCH (the server never listens). `start` is
 * the real bin; the operator commands run the bin's command code in this process (runUkeyServerHere), the same
 * refusal without a process start each.
 */
async function assertEveryCommandRefused(dataDir: string, env: Record<string, string>, reason: RegExp): Promise<void> {
  const commands = [
    ["start", "--data-dir", dataDir, "--port", "0", "--json"],
    ["audit", "verify", "--data-dir", dataDir, "--json"],
    ["revoke", "--data-dir", dataDir, "--serial", "0a", "--reason", "keyCompromise", "--json"],
  ];
  for (const args of commands) {
    const r = args[0] === "start" ? runUkeyServer(args, env) : await runUkeyServerHere(args, env);
    assert.equal(r.status, 1, `${args[0]}: ${r.stdout}${r.stderr}`);
    const e = errorOf(r);
    assert.equal(e.code, "DATABASE_CA_MISMATCH", args[0]);
    assert.match(e.message.en, reason, args[0]);
    assert.match(e.remedy.en, /restore this CA's database from its backup/);
  }
}

test("a database file truncated to 0 bytes: start and every command refused, the file stays empty; restoring the backup brings the CA back", async () => {
  truncateSync(dbFile, 0);
  await assertEveryCommandRefused(a.dataDir, a.env, /db\/ukey\.sqlite is empty \(0 bytes\)/);
  assert.equal(readFileSync(dbFile).length, 0, "no schema written into the empty file");
  assert.deepEqual(readdirSync(`${a.dataDir}/db`), ["ukey.sqlite"]);
  const human = runUkeyServer(["audit", "verify", "--data-dir", a.dataDir], a.env);
  assert.match(human.stderr, /错误 DATABASE_CA_MISMATCH/);
  assert.match(human.stderr, /从本证书机构的备份恢复数据库/);

  copyFileSync(backup, dbFile);
  const verified = runUkeyServer(["audit", "verify", "--data-dir", a.dataDir, "--json"], a.env);
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
});

test("a deleted database file: refused, and no new database is created", async () => {
  rmSync(dbFile);
  await assertEveryCommandRefused(a.dataDir, a.env, /db\/ukey\.sqlite is missing/);
  assert.deepEqual(readdirSync(`${a.dataDir}/db`), []);
  copyFileSync(backup, dbFile);
});

test("another CA's database: refused, and left byte for byte as it was", async () => {
  const theirs = readFileSync(`${b.dataDir}/db/ukey.sqlite`);
  writeFileSync(dbFile, theirs);
  await assertEveryCommandRefused(a.dataDir, a.env, /it serves another CA \(issuing key id [0-9a-f]+\)/);
  assert.deepEqual(readFileSync(dbFile), theirs);
  assert.deepEqual(readdirSync(`${a.dataDir}/db`), ["ukey.sqlite"]);
  copyFileSync(backup, dbFile);
});

test("a schema-7 database of this CA (the release before the binding) is adopted with an audit entry, once", () => {
  const db = new Database(dbFile);
  try {
    // What the release before schema 8 left: the same data without the binding and the probe row, nor what later schemas added.
    db.exec(`DROP TABLE ca_binding; DROP TABLE storage_probe; DROP TABLE operator_sign_in_backoffs; DROP TABLE holder_sign_in_quotas;
      DROP TABLE renewal_unlocks; DROP TABLE kmc_recoveries; DROP TABLE certificate_pairs; DROP TABLE kmc_escrows; DROP INDEX certificates_ocsp_refresh; DROP INDEX certificates_revoked_crl; ALTER TABLE certificates DROP COLUMN ocsp_der;
      ALTER TABLE certificates DROP COLUMN ocsp_this_update; ALTER TABLE certificates DROP COLUMN ocsp_next_update;
      ALTER TABLE certificates DROP COLUMN ocsp_refresh_at; ALTER TABLE enrolments DROP COLUMN replaces_serial;
      DROP INDEX certificates_revocation_changed; ALTER TABLE certificates DROP COLUMN revocation_changed_at; DELETE FROM schema_version WHERE version >= 8;`);
  } finally {
    db.close();
  }
  for (let run = 0; run < 2; run++) {
    const r = runUkeyServer(["audit", "verify", "--data-dir", a.dataDir, "--json"], a.env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  }
  const after = new Database(dbFile, { readonly: true });
  try {
    const binding = after.prepare("SELECT how FROM ca_binding").all() as Array<{ how: string }>;
    assert.deepEqual(binding, [{ how: "adopted" }]);
    const adopted = after.prepare("SELECT data FROM audit_log WHERE action = 'database.adopted'").all() as Array<{ data: string }>;
    assert.equal(adopted.length, 1);
    const evidence = JSON.parse(adopted[0]!.data) as Record<string, unknown>;
    assert.equal(evidence.schemaVersion, 7);
    assert.equal(evidence.issuerRecorded, true);
    assert.equal(evidence.certificates, true);
    assert.equal(evidence.initialisedEntry, true);
    assert.match(String(evidence.issuingCertSha256), /^[0-9a-f]{64}$/);
    assert.equal((after.prepare("SELECT COUNT(*) AS n FROM certificates WHERE status = 'revoked'").get() as { n: number }).n, 1, "the revocation kept");
  } finally {
    after.close();
  }
  copyFileSync(backup, dbFile);
});

test("PostgreSQL: another CA's database and an empty one are refused and left as they were; init refuses a database that serves a CA", async () => {
  const [x, y, empty] = await Promise.all([createTestDatabase(), createTestDatabase(), createTestDatabase()]);
  try {
    const pass = a.env.UKEY_CA_PASSPHRASE_FILE!;
    const c = { dataDir: t.path("pg-c"), env: { UKEY_CA_PASSPHRASE_FILE: pass, UKEY_DATABASE_URL: x.url } };
    const d = { dataDir: t.path("pg-d"), env: { UKEY_CA_PASSPHRASE_FILE: pass, UKEY_DATABASE_URL: y.url } };
    for (const s of [c, d]) {
      const r = runUkeyServer(["init", "--data-dir", s.dataDir, "--json"], s.env);
      assert.equal(r.status, 0, r.stdout + r.stderr);
    }
    const snapshot = async (url: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const tables = (await client.query<{ t: string }>("SELECT table_name AS t FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1")).rows.map((r) => r.t);
        const audit = tables.includes("audit_head") ? (await client.query("SELECT seq, hash FROM audit_head")).rows : [];
        return JSON.stringify({ tables, audit });
      } finally {
        await client.end();
      }
    };
    // D's data directory pointed at C's database.
    const before = await snapshot(x.url);
    await assertEveryCommandRefused(d.dataDir, { ...d.env, UKEY_DATABASE_URL: x.url }, /it serves another CA/);
    assert.equal(await snapshot(x.url), before);
    // C's data directory on an empty database (dropped and made again, or a wrong URL).
    const none = await snapshot(empty.url);
    await assertEveryCommandRefused(c.dataDir, { ...c.env, UKEY_DATABASE_URL: empty.url }, /the database is empty/);
    assert.equal(await snapshot(empty.url), none);
    assert.equal(none, JSON.stringify({ tables: [], audit: [] }));
    // A new CA cannot be made on a database that serves one.
    const again = runUkeyServer(["init", "--data-dir", t.path("pg-e"), "--json"], c.env);
    assert.equal(again.status, 1, again.stdout + again.stderr);
    assert.equal(errorOf(again).code, "DATABASE_CA_MISMATCH");
    assert.equal(existsSync(t.path("pg-e/config.json")), false);
    assert.equal(await snapshot(x.url), before);
  } finally {
    await Promise.all([x.drop(), y.drop(), empty.drop()]);
  }
});
