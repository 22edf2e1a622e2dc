import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import Database from "better-sqlite3";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, startUkeyServer, tempDir } from "./support/fixtures.js";

const t = tempDir();
after(() => t.cleanup());

/**
 * One P-256 CA for the start, import and corrupt-database tests, made by the real `init` on first use: they run in
 * this order, the last one destroys its database, and none reads what an earlier one left (the import's counts are
 * of holders and imported certificates, which the start adds none of).
 */
let p256: { dataDir: string; env: Record<string, string> } | undefined;
const p256Ca = () => (p256 ??= initialisedDataDir(t));

const errorCode = (r: { stdout: string }) => (JSON.parse(r.stdout.trim().split("\n").pop()!) as { error: { code: string } }).error.code;

for (const [algorithm, sigAlg] of [["p384", /ecdsa-with-SHA384/], ["rsa2048", /sha256WithRSAEncryption/], ["rsa3072", /sha256WithRSAEncryption/]] as const) {
  test(`a ${algorithm} CA issues certificates openssl verifies`, () => {
    const sub = tempDir();
    try {
      const { dataDir, env } = initialisedDataDir(sub, algorithm);
      assert.equal(addHolder(sub, dataDir, env, "A1").status, 0);
      const { csr } = opensslCsr(sub, "leaf", keyArgs.rsa2048);
      const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "A1", "--profile", "personal", "--csr", csr, "--out", sub.path("leaf.pem"), "--json"], env);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const v = openssl(["verify", "-x509_strict", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, sub.path("leaf.pem")]);
      assert.equal(v.status, 0, v.out);
      assert.match(openssl(["x509", "-in", sub.path("leaf.pem"), "-noout", "-text"]).out, sigAlg);
    } finally {
      sub.cleanup();
    }
  });
}

test("init refuses an unknown algorithm and a short passphrase", () => {
  const short = t.write("short-pass", "short\n");
  const r1 = runUkeyServer(["init", "--data-dir", t.path("a"), "--algorithm", "ed25519", "--json"], { UKEY_CA_PASSPHRASE_FILE: short });
  assert.equal(r1.status, 2);
  assert.equal(errorCode(r1), "CLI_USAGE");
  const r2 = runUkeyServer(["init", "--data-dir", t.path("b"), "--json"], { UKEY_CA_PASSPHRASE_FILE: short });
  assert.equal(errorCode(r2), "CONFIG_INVALID");
});

test("start: the TLS port never asks for a client certificate; the client-certificate port asks without requiring one", async () => {
  const { dataDir, env } = p256Ca();
  const server = await startUkeyServer(dataDir, env, ["--tls-port", "0", "--client-cert-port", "0"]);
  try {
    assert.ok(server.https && server.clientCert && server.https !== server.clientCert, JSON.stringify(server));
    for (const port of [server.https, server.clientCert]) {
      const out = execFileSync("curl", ["-sS", "--cacert", `${dataDir}/tls/server.cer.pem`, `https://localhost:${port}/healthz`], { encoding: "utf8" });
      assert.deepEqual(JSON.parse(out), { status: "ok" }, `port ${port} serves without a client certificate`);
    }
    const handshake = (port: number, version: string) =>
      openssl(["s_client", version, "-connect", `127.0.0.1:${port}`, "-servername", "localhost", "-CAfile", `${dataDir}/tls/server.cer.pem`], Buffer.from("Q\n")).out;
    for (const version of ["-tls1_3", "-tls1_2"]) {
      // s_client prints the signature algorithms a CertificateRequest asks for (and, in TLS 1.2, its certificate types) only when one came.
      const asked = /Requested Signature Algorithms|Client Certificate Types|Acceptable client certificate CA names/;
      const tls = handshake(server.https, version);
      assert.match(tls, /Verify return code: 0 \(ok\)/, version);
      assert.doesNotMatch(tls, asked, `${version}: the TLS port sent a CertificateRequest`);
      const clientCert = handshake(server.clientCert, version);
      assert.match(clientCert, /Verify return code: 0 \(ok\)/, version);
      assert.match(clientCert, asked, `${version}: the client-certificate port sent no CertificateRequest`);
    }
  } finally {
    await server.stop();
  }
});

test("import through the CLI: a foreign CA's certificates with their chain, and a bad row that imports nothing", () => {
  const sub = tempDir();
  try {
    const { dataDir, env } = p256Ca();
    const o = (args: string[]) => execFileSync("openssl", args, { cwd: sub.dir, stdio: "pipe" });
    o(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "old-ca.key", "-subj", "/C=CN/O=Old Bank CA/CN=Old Root", "-days", "3650", "-out", "old-ca.pem",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    o(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "old-leaf.key", "-subj", "/C=CN/O=Old Bank/CN=Li Si/serialNumber=C9001", "-out", "old-leaf.csr"]);
    o(["x509", "-req", "-in", "old-leaf.csr", "-CA", "old-ca.pem", "-CAkey", "old-ca.key", "-set_serial", "0x1234abcd", "-days", "365", "-out", "old-leaf.pem"]);
    const holders = sub.write("holders.csv", "id,kind,name,id_type,id_number,phone,email\nC9001,person,Li Si,resident-id,110101198001011234,13900000000,lisi@example.com\n");

    const noChain = runUkeyServer(["import", "--data-dir", dataDir, "--certs", sub.path("old-leaf.pem"), "--holders", holders, "--json"], env);
    assert.equal(errorCode(noChain), "IMPORT_ISSUER_UNKNOWN");

    const badHolders = sub.write("bad.csv", "id,kind,name,id_type,id_number,phone,email\nC9001,person,Li Si,resident-id,110101198001011234,13900000000,lisi@example.com\nC9002,robot,X,resident-id,1,,\n");
    const bad = runUkeyServer(["import", "--data-dir", dataDir, "--certs", sub.path("old-leaf.pem"), "--holders", badHolders, "--chain", sub.path("old-ca.pem"), "--json"], env);
    assert.equal(errorCode(bad), "IMPORT_ROW_INVALID");
    assert.match(bad.stdout, /line 3/);

    const db = () => new Database(`${dataDir}/db/ukey.sqlite`, { readonly: true });
    const count = (sql: string) => { const d = db(); try { return (d.prepare(sql).get() as { n: number }).n; } finally { d.close(); } };
    assert.equal(count("SELECT COUNT(*) AS n FROM holders"), 0, "nothing half-imported");

    const ok = runUkeyServer(["import", "--data-dir", dataDir, "--certs", sub.path("old-leaf.pem"), "--holders", holders, "--chain", sub.path("old-ca.pem"), "--json"], env);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.deepEqual({ ...ok.json<Record<string, unknown>>(), rows: undefined }, { holders: 1, certificates: 1, issuers: 1, skippedExisting: 0, rows: undefined });
    assert.equal(count("SELECT COUNT(*) AS n FROM certificates WHERE serial = '1234abcd' AND imported = 1"), 1);
    const again = runUkeyServer(["import", "--data-dir", dataDir, "--certs", sub.path("old-leaf.pem"), "--holders", holders, "--chain", sub.path("old-ca.pem"), "--json"], env);
    assert.equal(again.json<{ skippedExisting: number }>().skippedExisting, 1);
    assert.equal(runUkeyServer(["audit", "verify", "--data-dir", dataDir], env).status, 0);
  } finally {
    sub.cleanup();
  }
});

test("a corrupt database file is refused with DATA_DIR_CORRUPT and left as it was", () => {
  const { dataDir, env } = p256Ca();
  const file = `${dataDir}/db/ukey.sqlite`;
  const garbage = Buffer.alloc(8192, 0x5a);
  writeFileSync(file, garbage);
  const r = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(r.status, 1);
  assert.equal(errorCode(r), "DATA_DIR_CORRUPT");
  assert.deepEqual(readFileSync(file), garbage);
});
