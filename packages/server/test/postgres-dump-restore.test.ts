import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { systemClock } from "@ukey/policy";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { runCli } from "../src/cli.js";
import { keyArgs, openssl, opensslCsr, startUkeyServer, tempDir, type RunningServer } from "./support/fixtures.js";

// Issue 18, backup on PostgreSQL: the database is dumped with pg_dump while
// it serves, restored with pg_restore into a new database, and ukey-server
// starts and serves on the restored one (docs/backup.md, "PostgreSQL").
// `ukey-server backup` itself refuses PostgreSQL with a catalogue code.

const t = tempDir("ukey-pgdump-");
const dbs: Array<{ drop(): Promise<void> }> = [];
const servers: RunningServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
  for (const d of dbs) await d.drop();
  t.cleanup();
});

/** The machine's PostgreSQL client tools (Debian keeps them under /usr/lib/postgresql/<v>/bin), newest first. */
function pgTool(name: string): string {
  const dirs = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of dirs) {
    const p = `/usr/lib/postgresql/${v}/bin/${name}`;
    if (existsSync(p)) return p;
  }
  throw new Error(`*** ${name} IS REQUIRED for this test and was not found under /usr/lib/postgresql/*/bin ***`);
}

async function cli(args: string[], env: Record<string, string>): Promise<{ status: number; out: string }> {
  let out = "";
  const status = await runCli(args, { out: (x) => { out += x; }, err: (x) => { out += x; }, env, clock: systemClock });
  return { status, out };
}

test("a PostgreSQL database dumped with pg_dump while it serves and restored with pg_restore into a new database serves again", async () => {
  const source = await createTestDatabase();
  dbs.push(source);
  const pass = t.write("ca-passphrase", "correct horse battery staple\n");
  const env = { UKEY_CA_PASSPHRASE_FILE: pass, UKEY_DATABASE_URL: source.url };
  const dataDir = t.path("data");
  assert.equal((await cli(["init", "--data-dir", dataDir, "--json"], env)).status, 0);
  const idFile = t.write("id", "11010119900307123X\n");
  assert.equal((await cli(["holder", "add", "--data-dir", dataDir, "--id", "P1", "--name", "张三", "--id-type", "resident-id", "--id-number-file", idFile, "--json"], env)).status, 0);
  const serials: string[] = [];
  for (const name of ["a", "b"]) {
    const { csr } = opensslCsr(t, name, keyArgs.p256);
    const r = await cli(["issue", "--data-dir", dataDir, "--holder", "P1", "--profile", "personal", "--csr", csr, "--out", t.path(`${name}.pem`), "--json"], env);
    assert.equal(r.status, 0, r.out);
    serials.push((JSON.parse(r.out.trim().split("\n").pop()!) as { serial: string }).serial);
  }

  const server = await startUkeyServer(dataDir, env);
  servers.push(server);
  // A revocation through the running server, then the dump while it serves.
  const rv = await cli(["revoke", "--data-dir", dataDir, "--serial", serials[0]!, "--reason", "keyCompromise", "--json"], env);
  assert.equal(rv.status, 0, rv.out);
  // ukey-server backup is for the embedded database; PostgreSQL is backed up with its own tools.
  const refused = await cli(["backup", "--data-dir", dataDir, "--out", t.path("x.ukb"), "--json"], { ...env, UKEY_BACKUP_PASSPHRASE_FILE: pass });
  assert.equal(refused.status, 1, refused.out);
  assert.equal((JSON.parse(refused.out.trim().split("\n").pop()!) as { error: { code: string } }).error.code, "BACKUP_ENGINE_UNSUPPORTED");
  assert.equal(existsSync(t.path("x.ukb")), false);

  const dump = t.path("ukey.dump");
  execFileSync(pgTool("pg_dump"), ["--format=custom", `--file=${dump}`, source.url], { stdio: "pipe" });
  const target = await createTestDatabase();
  dbs.push(target);
  execFileSync(pgTool("pg_restore"), ["--exit-on-error", "--no-owner", `--dbname=${target.url}`, dump], { stdio: "pipe" });
  await server.stop();

  // The same data directory on the restored database.
  const restoredEnv = { ...env, UKEY_DATABASE_URL: target.url };
  const verify = await cli(["audit", "verify", "--data-dir", dataDir, "--json"], restoredEnv);
  assert.equal(verify.status, 0, verify.out);
  const second = await startUkeyServer(dataDir, restoredEnv);
  servers.push(second);
  const ready = await fetch(`${second.url}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal(((await ready.json()) as { engine: string }).engine, "postgres");
  const root = `${dataDir}/ca/root.cer.pem`;
  const issuing = `${dataDir}/ca/issuing.cer.pem`;
  const ocsp = (pem: string) => openssl(["ocsp", "-issuer", issuing, "-cert", pem, "-url", `${second.url}/ocsp`, "-CAfile", root]).out;
  assert.match(ocsp(t.path("a.pem")), /: revoked/, "the revocation made before the dump is served");
  assert.match(ocsp(t.path("b.pem")), /: good/);
  // And it writes: an issuance on the restored database.
  const { csr } = opensslCsr(t, "c", keyArgs.p256);
  const issued = await cli(["issue", "--data-dir", dataDir, "--holder", "P1", "--profile", "personal", "--csr", csr, "--out", t.path("c.pem"), "--json"], restoredEnv);
  assert.equal(issued.status, 0, issued.out);
  assert.match(ocsp(t.path("c.pem")), /: good/);
  await second.stop();
});
