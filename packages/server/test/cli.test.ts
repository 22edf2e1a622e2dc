import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import Database from "better-sqlite3";
import { spawnSync } from "node:child_process";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, tempDir, ukeyServerSourceBin, type TempDir } from "./support/fixtures.js";
import { bundledBins } from "./support/test-bundle.js";

let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let chain: string;

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "H001", ["--email", "h001@example.com"]).status, 0);
  chain = t.write("chain.pem", readFileSync(`${dataDir}/ca/issuing.cer.pem`, "utf8") + readFileSync(`${dataDir}/ca/root.cer.pem`, "utf8"));
});
after(() => t.cleanup());

function issue(csr: string, holder = "H001", extra: string[] = []) {
  return runUkeyServer(["issue", "--data-dir", dataDir, "--holder", holder, "--profile", "personal", "--csr", csr, "--json", ...extra], env);
}

function errorCode(r: { stdout: string }): string {
  return (JSON.parse(r.stdout.trim().split("\n").pop()!) as { error: { code: string } }).error.code;
}

function certCount(): number {
  // Read straight from the file the server wrote: what is stored, not what the CLI says.
  const db = new Database(`${dataDir}/db/ukey.sqlite`, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM certificates").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

test("init created a root and an issuing CA that openssl accepts, with encrypted keys", () => {
  const r = openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, `${dataDir}/ca/issuing.cer.pem`]);
  assert.equal(r.status, 0, r.out);
  const key = readFileSync(`${dataDir}/ca/issuing.key.pem`, "utf8");
  assert.match(key, /BEGIN ENCRYPTED PRIVATE KEY/);
  assert.ok(!readdirSync(dataDir).some((n) => n.startsWith(".init-")), "no staging left");
});

test("init refuses an initialised directory and changes nothing", () => {
  const before = readFileSync(`${dataDir}/ca/issuing.cer.pem`);
  const r = runUkeyServer(["init", "--data-dir", dataDir, "--json"], env);
  assert.equal(r.status, 1);
  assert.equal(errorCode(r), "CA_ALREADY_INITIALISED");
  assert.deepEqual(readFileSync(`${dataDir}/ca/issuing.cer.pem`), before);
});

test("init without a passphrase file refuses: there is no default secret", () => {
  const r = runUkeyServer(["init", "--data-dir", t.path("nopass"), "--json"], {});
  assert.equal(r.status, 1);
  assert.equal(errorCode(r), "SECRET_FILE_REQUIRED");
  assert.ok(!existsSync(t.path("nopass/config.json")));
});

test("counter issuance takes the subject from the holder record, not the CSR", () => {
  const { csr } = opensslCsr(t, "p256", keyArgs.p256, "/CN=Mallory/O=Evil Corp");
  const r = issue(csr);
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<{ serial: string; subject: string; pem: string }>();
  assert.match(out.subject, /CN=Holder H001/);
  assert.doesNotMatch(out.subject, /Mallory|Evil/);
  const leaf = t.write("leaf.pem", out.pem);
  const v = openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, leaf]);
  assert.equal(v.status, 0, v.out);
  const text = openssl(["x509", "-in", leaf, "-noout", "-text"]).out;
  assert.match(text, /email:h001@example.com/);
  assert.match(text, /OCSP - URI:http:\/\/localhost:8080\/ocsp/);
  assert.match(text, /URI:http:\/\/localhost:8080\/crl\/issuing.crl/);
  assert.doesNotMatch(text, /Mallory/);
  void chain;
});

const refused: Array<[string, () => string, string]> = [
  ["refuses a CSR whose signature was tampered with", () => {
    const { csr } = opensslCsr(t, "tamper", keyArgs.p256);
    const der = Buffer.from(readFileSync(csr, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");
    der[der.length - 5]! ^= 0x01;
    return t.write("tampered.csr.der", der);
  }, "CSR_SIGNATURE_INVALID"],
  ["refuses an RSA-1024 key as too weak", () => opensslCsr(t, "rsa1024", keyArgs.rsa1024).csr, "KEY_TOO_WEAK"],
  ["refuses a secp256k1 key as unsupported", () => opensslCsr(t, "k1", keyArgs.secp256k1).csr, "KEY_ALGORITHM_UNSUPPORTED"],
  ["refuses a file that is not PEM or DER", () => t.write("garbage.csr", "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!!\n-----END CERTIFICATE REQUEST-----\n"), "CSR_MALFORMED"],
  ["refuses a missing CSR file", () => t.path("does-not-exist.csr"), "FILE_UNREADABLE"],
];
for (const [name, make, code] of refused) {
  test(name + " and stores nothing", () => {
    const n = certCount();
    const r = issue(make());
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.ok([code, "PEM_MALFORMED", "DER_MALFORMED"].includes(errorCode(r)), `${errorCode(r)} for ${name}`);
    if (code !== "CSR_MALFORMED") assert.equal(errorCode(r), code);
    assert.equal(certCount(), n);
  });
}

test("refuses an unknown holder and an unknown profile", () => {
  const { csr } = opensslCsr(t, "unknown", keyArgs.p256);
  assert.equal(errorCode(issue(csr, "NOBODY")), "HOLDER_NOT_FOUND");
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "H001", "--profile", "nope", "--csr", csr, "--json"], env);
  assert.equal(errorCode(r), "PROFILE_NOT_FOUND");
});

test("revoke, then revoke again, then a bad reason", () => {
  const { csr } = opensslCsr(t, "torevoke", keyArgs.p256);
  const { serial } = issue(csr).json<{ serial: string }>();
  const colons = serial.toUpperCase().match(/../g)!.join(":");
  const r1 = runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", colons, "--reason", "keyCompromise", "--json"], env);
  assert.equal(r1.status, 0, r1.stdout + r1.stderr);
  assert.equal(r1.json<{ serial: string }>().serial, serial);
  const r2 = runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", serial, "--reason", "keyCompromise", "--json"], env);
  assert.equal(errorCode(r2), "CERT_ALREADY_REVOKED");
  const r3 = runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", serial, "--reason", "because", "--json"], env);
  assert.equal(errorCode(r3), "REVOCATION_REASON_INVALID");
  const r4 = runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", "zz-not-hex", "--reason", "unspecified", "--json"], env);
  assert.equal(errorCode(r4), "SERIAL_MALFORMED");
  const r5 = runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", "0badc0de", "--reason", "unspecified", "--json"], env);
  assert.equal(errorCode(r5), "CERT_NOT_FOUND");
});

test("a wrong CA passphrase is refused with its own code", () => {
  const wrong = t.write("wrong-pass", "not the passphrase at all\n");
  const { csr } = opensslCsr(t, "wrongpass", keyArgs.p256);
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "H001", "--profile", "personal", "--csr", csr, "--json"], { UKEY_CA_PASSPHRASE_FILE: wrong });
  assert.equal(errorCode(r), "CA_PASSPHRASE_WRONG");
});

test("usage errors exit 2 with CLI_USAGE; human output is bilingual", () => {
  const r = runUkeyServer(["frobnicate"]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /错误 CLI_USAGE/);
  assert.match(r.stderr, /Error CLI_USAGE: Invalid command arguments: unknown command frobnicate/);
  const r2 = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "H001", "--json"], env);
  assert.equal(r2.status, 2);
  assert.equal(errorCode(r2), "CLI_USAGE");
  const r3 = runUkeyServer(["revoke", "--bogus-flag", "--json"]);
  assert.equal(errorCode(r3), "CLI_USAGE");
});

test("issue 16 (11): `holder add --help` (and any command's --help) prints that command's usage, exit 0, nothing required", () => {
  const r = runUkeyServer(["holder", "add", "--help"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ukey-server holder add --data-dir DIR --id ID --name NAME/);
  assert.match(r.stdout, /--id-number-file F/);
  assert.doesNotMatch(r.stdout, /ukey-server issue/);
  assert.equal(r.stderr, "");
  const o = runUkeyServer(["operator", "add", "-h"]);
  assert.equal(o.status, 0);
  assert.match(o.stdout, /ukey-server operator add/);
});

test("a corrupt config.json is refused with the reason", () => {
  // The file's own text is put back afterwards: the later tests use the same CA.
  const cfg = `${dataDir}/config.json`;
  const text = readFileSync(cfg, "utf8");
  try {
    writeFileSync(cfg, text.replace('"version": 1', '"version": 1,\n  "colour": "blue"'));
    const r = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
    assert.equal(errorCode(r), "CONFIG_INVALID");
    assert.match(r.stdout, /colour/);
  } finally {
    writeFileSync(cfg, text);
  }
});

test("audit verify passes, then reports the first changed entry", () => {
  const ok = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  const entries = ok.json<{ ok: boolean; entries: number }>().entries;
  assert.ok(entries >= 4);
  const db = new Database(`${dataDir}/db/ukey.sqlite`);
  const seq = 3;
  db.prepare("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?").run(seq);
  db.close();
  const bad = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(bad.status, 1);
  const err = (JSON.parse(bad.stdout.trim()) as { error: { code: string; message: { en: string } } }).error;
  assert.equal(err.code, "AUDIT_CHAIN_BROKEN");
  assert.match(err.message.en, new RegExp(`entry ${seq}:`));
});

test("the bin in a development checkout runs the sources, and answers as the bundle the other tests start does", () => {
  // The other tests start the bundle of these sources (scripts/test-bundle.mjs); this one keeps the development path,
  // bin/ukey-server.js through tsx, under test, and holds the two to the same output and exit status.
  const bundle = bundledBins().server;
  assert.notEqual(bundle, ukeyServerSourceBin);
  const run = (bin: string, args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, encoding: "utf8", timeout: 120_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr.replaceAll(bin, "BIN") };
  };
  for (const args of [["audit", "verify", "--data-dir", dataDir, "--json"], ["revoke", "--data-dir", dataDir, "--serial", "00", "--reason", "nonsense"], ["frobnicate"]]) {
    const source = run(ukeyServerSourceBin, args);
    assert.deepEqual(run(bundle, args), source, args.join(" "));
    assert.doesNotMatch(source.stdout + source.stderr, /^\s+at \S.*:\d+:\d+\)?$|\.ts:\d+/m, "no stack, no source path");
  }
});

test("start on a port already in use names the port, not INTERNAL (issue 17)", async () => {
  const { createServer } = await import("node:net");
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()));
  const port = (holder.address() as { port: number }).port;
  try {
    const { spawn } = await import("node:child_process");
    const { ukeyServerBin } = await import("./support/fixtures.js");
    // spawn, not spawnSync: the port's holder lives in this process's event loop and must keep it.
    const child = spawn(process.execPath, [ukeyServerBin, "start", "--data-dir", dataDir, "--host", "127.0.0.1", "--port", String(port), "--json"], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    });
    let out = "";
    child.stdout.on("data", (d) => { out += String(d); });
    child.stderr.on("data", (d) => { out += String(d); });
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    assert.equal(code, 1, out);
    const line = out.split("\n").find((l) => l.includes('"error"'));
    assert.ok(line, out);
    const err = (JSON.parse(line) as { error: { code: string; message: { en: string; "zh-CN": string } } }).error;
    assert.equal(err.code, "PORT_IN_USE");
    assert.match(err.message.en, new RegExp(`Port ${port} on 127\\.0\\.0\\.1`));
    assert.match(err.message["zh-CN"], new RegExp(`端口 ${port}`));
  } finally {
    holder.close();
  }
});
