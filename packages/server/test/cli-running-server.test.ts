import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, statSync } from "node:fs";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { adminReader, initialisedDataDir, keyArgs, openssl, opensslCsr, startUkeyServer, tempDir, ukeyServerBin, type Auditor, type TempDir } from "./support/fixtures.js";

// Issue 16, problem 11: operator commands while `ukey-server start` runs, on
// both engines. The real bin runs them; several at once, so that their
// transactions and the server's own meet in one audit chain.

const dbs: Array<{ drop(): Promise<void> }> = [];
after(async () => {
  for (const d of dbs) await d.drop();
});

interface Run { status: number; stdout: string; stderr: string }

/** The real bin, asynchronously, so that several run at the same time. */
function ukeyServer(args: string[], env: Record<string, string>, cwd?: string): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [ukeyServerBin, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, encoding: "utf8", timeout: 120_000, ...(cwd ? { cwd } : {}),
    }, (err, stdout, stderr) => done({ status: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }));
  });
}

const lastJson = <T>(r: Run): T => JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
const ok = (r: Run, what: string) => assert.equal(r.status, 0, `${what}: ${r.stdout}${r.stderr}`);

async function scenario(t: TempDir, dataDir: string, env: Record<string, string>, engine: "sqlite" | "postgres") {
  const server = await startUkeyServer(dataDir, env);
  try {
    const sock = `${dataDir}/run/control.sock`;
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.equal(statSync(`${dataDir}/run`).mode & 0o777, 0o700);
    t.write("H2.idnum", "11010119900307123X\n");
    t.write("auditor.password", "read only auditor 7Qx!");
    const csrs = [opensslCsr(t, "a", keyArgs.p256), opensslCsr(t, "b", keyArgs.p256)];
    // Holder first: the issues need it. Relative paths, run from the temporary directory: the server resolves them as the caller meant.
    ok(await ukeyServer(["holder", "add", "--data-dir", dataDir, "--id", "H2", "--name", "Holder H2", "--id-type", "resident-id", "--id-number-file", "H2.idnum", "--json"], {}, t.dir), "holder add");
    // No CA passphrase is needed: the running server holds the CA key.
    const [op, a, b] = await Promise.all([
      ukeyServer(["operator", "add", "--data-dir", dataDir, "--id", "aud1", "--role", "auditor", "--password-file", "auditor.password", "--json"], {}, t.dir),
      ...csrs.map((c, i) => ukeyServer(["issue", "--data-dir", dataDir, "--holder", "H2", "--profile", "personal", "--csr", c.csr, "--out", `leaf${i}.pem`, "--json"], {}, t.dir)),
    ]);
    ok(op!, "operator add");
    ok(a!, "issue a");
    ok(b!, "issue b");
    const serialA = lastJson<{ serial: string }>(a!).serial;
    const serialB = lastJson<{ serial: string }>(b!).serial;
    // The revocation and more writes, at once.
    const other = engine === "postgres" ? t.path("other-host") : undefined;
    if (other) cpSync(dataDir, other, { recursive: true, filter: (src) => !src.includes("/run") });
    const concurrent = await Promise.all([
      ukeyServer(["revoke", "--data-dir", dataDir, "--serial", serialA, "--reason", "keyCompromise", "--json"], {}),
      ukeyServer(["enrol", "--data-dir", dataDir, "--holder", "H2", "--profile", "personal", "--json"], {}),
      ukeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], {}),
      // PostgreSQL: a second process on its own copy of the directory (another host) writes beside the server.
      ...(other ? [ukeyServer(["enrol", "--data-dir", other, "--holder", "H2", "--profile", "personal", "--json"], env)] : []),
    ]);
    concurrent.forEach((r, i) => ok(r, `concurrent command ${i}`));

    // The running server sees all of it.
    const auditor: Auditor = { id: "aud1", password: "read only auditor 7Qx!", totpSecret: lastJson<{ totpSecret: string }>(op!).totpSecret };
    const admin = adminReader(() => server.url, auditor);
    assert.equal((await admin<{ id: string }>("/holders/H2")).id, "H2");
    assert.equal((await admin<{ status: string }>(`/certificates/${serialA}`)).status, "revoked");
    assert.equal((await admin<{ status: string }>(`/certificates/${serialB}`)).status, "active");
    // A hold and its lifting, through the server, on this engine.
    ok(await ukeyServer(["hold", "--data-dir", dataDir, "--serial", serialB, "--json"], {}), "hold");
    const held = await admin<{ status: string; revocationReason: string }>(`/certificates/${serialB}`);
    assert.deepEqual([held.status, held.revocationReason], ["revoked", "certificateHold"]);
    ok(await ukeyServer(["hold", "--data-dir", dataDir, "--serial", serialB, "--lift", "--json"], {}), "hold --lift");
    assert.equal((await admin<{ status: string }>(`/certificates/${serialB}`)).status, "active");
    const root = `${dataDir}/ca/root.cer.pem`;
    const issuing = `${dataDir}/ca/issuing.cer.pem`;
    const revoked = openssl(["ocsp", "-issuer", issuing, "-cert", t.path("leaf0.pem"), "-url", `${server.url}/ocsp`, "-CAfile", root]);
    assert.match(revoked.out, /Response verify OK/);
    assert.match(revoked.out, /: revoked/, revoked.out);
    const verified = await admin<{ ok: boolean; entries: number }>("/audit/verify");
    assert.equal(verified.ok, true);
    const actions = (await admin<{ entries: Array<{ action: string; subjectId: string }> }>("/audit?limit=500")).entries.map((e) => `${e.action} ${e.subjectId}`);
    for (const want of ["holder.created H2", "operator.created aud1", `certificate.revoked ${serialA}`, `certificate.hold-released ${serialB}`]) {
      assert.ok(actions.includes(want), `${want} in ${actions.join(", ")}`);
    }

    // What needs the directory to itself is still refused, before any secret is asked for.
    const kmc = await ukeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], {});
    assert.equal(kmc.status, 1);
    assert.equal(lastJson<{ error: { code: string } }>(kmc).error.code, "DATA_DIR_LOCKED");
    // A wrong path is refused by the server with the caller's own path in the message.
    const missing = await ukeyServer(["holder", "add", "--data-dir", dataDir, "--id", "H3", "--name", "H3", "--id-type", "resident-id", "--id-number-file", "nope.idnum", "--json"], {}, t.dir);
    assert.equal(missing.status, 1);
    assert.match(missing.stdout, /FILE_UNREADABLE/);
    assert.match(missing.stdout, new RegExp(`${t.dir}/nope.idnum`));
  } finally {
    // Killed, not stopped: the socket it leaves behind must not hold up the next command.
    server.child.kill("SIGKILL");
    await new Promise((r) => server.child.once("exit", r));
  }
  const after = await ukeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  ok(after, "audit verify after the server died");
  const r = lastJson<{ ok: boolean; entries: number }>(after);
  assert.equal(r.ok, true);
  // A server started again takes the stale socket over.
  const again = await startUkeyServer(dataDir, env);
  try {
    ok(await ukeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], {}), "audit verify through the restarted server");
  } finally {
    await again.stop();
  }
}

test("embedded database: holder add, operator add, issue, revoke, enrol and audit verify while the server runs", async () => {
  const t = tempDir();
  try {
    const { dataDir, env } = initialisedDataDir(t);
    await scenario(t, dataDir, env, "sqlite");
  } finally {
    t.cleanup();
  }
});

test("PostgreSQL: the same while the server runs, with a second process writing from another copy of the directory", async () => {
  const t = tempDir();
  try {
    const db = await createTestDatabase();
    dbs.push(db);
    const { dataDir, env } = initialisedDataDir(t, "p256");
    void dataDir;
    // initialisedDataDir made an embedded database; PostgreSQL needs its own init.
    const pgDir = t.path("pg");
    const pgEnv = { ...env, UKEY_DATABASE_URL: db.url };
    ok(await ukeyServer(["init", "--data-dir", pgDir, "--json"], pgEnv), "init on PostgreSQL");
    await scenario(t, pgDir, pgEnv, "postgres");
  } finally {
    t.cleanup();
  }
});
