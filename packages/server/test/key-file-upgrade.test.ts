import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import Database from "better-sqlite3";
import { initialisedDataDir, openssl, runUkeyServer, tempDir, ukeyServerBin, type TempDir } from "./support/fixtures.js";

// CA key files written by earlier releases (OpenSSL's default PBKDF2, 2,048
// iterations) are rewritten at 600,000 on the next start, with an audit
// entry each; openssl still opens them with the passphrase.
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
const passphrase = "correct horse battery staple";

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
});
after(() => t.cleanup());

/** Rewrites a key file as earlier releases wrote it: Node's export, OpenSSL's 2,048 PBKDF2 iterations. */
function writeAsEarlierRelease(name: string): Buffer {
  const path = `${dataDir}/ca/${name}.key.pem`;
  const key = createPrivateKey({ key: readFileSync(path, "utf8"), format: "pem", passphrase });
  writeFileSync(path, key.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase }), { mode: 0o600 });
  assert.match(openssl(["asn1parse", "-in", path]).out, /INTEGER\s+:0800\b/, "2048 iterations");
  return readFileSync(path);
}

function upgradeEntries(): Array<{ subjectId: string; data: { from: { iterations: number }; to: { iterations: number; scheme: string } } }> {
  const db = new Database(`${dataDir}/db/ukey.sqlite`, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT subject_id, data FROM audit_log WHERE action = 'ca.key-file-upgraded' ORDER BY seq").all() as Array<{ subject_id: string; data: string }>)
      .map((r) => ({ subjectId: r.subject_id, data: JSON.parse(r.data) }));
  } finally {
    db.close();
  }
}

test("key files with 2,048 iterations are rewritten at 600,000 on the next start, with an audit entry each, and still work", () => {
  const old = { root: writeAsEarlierRelease("root"), issuing: writeAsEarlierRelease("issuing") };
  const r = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const entries = upgradeEntries();
  assert.deepEqual(entries.map((e) => e.subjectId).sort(), ["issuing", "root"]);
  for (const e of entries) {
    assert.equal(e.data.from.iterations, 2048);
    assert.deepEqual(e.data.to, { scheme: "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC", iterations: 600_000 });
  }
  for (const name of ["root", "issuing"] as const) {
    const path = `${dataDir}/ca/${name}.key.pem`;
    assert.notDeepEqual(readFileSync(path), old[name]);
    assert.match(openssl(["asn1parse", "-in", path]).out, /INTEGER\s+:0927C0/);
    const opened = openssl(["pkcs8", "-in", path, "-passin", `file:${env.UKEY_CA_PASSPHRASE_FILE}`]);
    assert.equal(opened.status, 0, opened.out);
    // The same key: its public half still matches the CA certificate.
    const pub = openssl(["pkey", "-in", path, "-passin", `pass:${passphrase}`, "-pubout"]).out;
    const certPub = openssl(["x509", "-in", `${dataDir}/ca/${name}.cer.pem`, "-noout", "-pubkey"]).out;
    assert.equal(pub, certPub);
  }
  assert.deepEqual(readdirSync(`${dataDir}/ca`).sort(), ["issuing.cer.pem", "issuing.key.pem", "root.cer.pem", "root.key.pem"]);
  // Issuing still works with the rewritten key, and nothing is rewritten twice.
  const csr = t.path("k.csr.pem");
  assert.equal(openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", t.path("k.key"), "-subj", "/CN=x", "-out", csr]).status, 0);
  assert.equal(runUkeyServer(["holder", "add", "--data-dir", dataDir, "--id", "H1", "--name", "N", "--id-type", "resident-id", "--id-number-file", t.write("id", "110101199003071234"), "--json"], env).status, 0);
  const issued = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "H1", "--profile", "personal", "--csr", csr, "--json"], env);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);
  assert.equal(upgradeEntries().length, 2);
});

test("a wrong passphrase gives CA_PASSPHRASE_WRONG and leaves an old key file as it was", () => {
  const old = writeAsEarlierRelease("issuing");
  const before = upgradeEntries().length;
  const r = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], { UKEY_CA_PASSPHRASE_FILE: t.write("wrong", "incorrect horse battery staple\n") });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(r.json<{ error: { code: string } }>().error.code, "CA_PASSPHRASE_WRONG");
  assert.deepEqual(readFileSync(`${dataDir}/ca/issuing.key.pem`), old);
  assert.equal(upgradeEntries().length, before);
});

test("on a read-only ca/ an old key file is used as it is, and start logs a warning", async () => {
  if (process.getuid?.() !== 0) throw new Error("*** ROOT IS REQUIRED: this test bind-mounts ca/ read-only (CI runs the tests as root). ***");
  const old = writeAsEarlierRelease("root");
  const before = upgradeEntries().length;
  const ca = `${dataDir}/ca`;
  execFileSync("mount", ["--bind", ca, ca]);
  try {
    execFileSync("mount", ["-o", "remount,bind,ro", ca]);
    const server = spawn(process.execPath, [ukeyServerBin, "start", "--data-dir", dataDir, "--port", "0", "--json"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the server did not start: ${lines.join("\n")}`)), 60_000);
        createInterface({ input: server.stdout! }).on("line", (line) => {
          lines.push(line);
          if (line.includes('"event":"listening"')) { clearTimeout(timer); resolve(); }
        });
        server.once("exit", (code) => { clearTimeout(timer); reject(new Error(`the server exited ${code}: ${lines.join("\n")}`)); });
      });
    } finally {
      await new Promise<void>((resolve) => { server.once("exit", () => resolve()); server.kill("SIGTERM"); });
    }
    const warning = lines.find((l) => l.includes("ca/root.key.pem"));
    assert.ok(warning, lines.join("\n"));
    assert.match(warning, /"level":40/);
    assert.match(warning, /EROFS/);
  } finally {
    execFileSync("umount", [ca]);
  }
  assert.deepEqual(readFileSync(`${dataDir}/ca/root.key.pem`), old);
  assert.equal(upgradeEntries().length, before);
});
