// The offline root's key ceremony end to end (issue 18, docs/deployment.md "The offline root: a key ceremony"): the real
// openssl CLI plays the offline machine, the doc's own commands run as written, the real server serves the result.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import Database from "better-sqlite3";
import { certificateSpki, derToPem, pemToDer, signedBy } from "@ukey/ca";
import { systemClock, type Clock } from "@ukey/policy";
import { createSoftHsmToken } from "../../ca/test/support/softhsm.js";
import { runCli } from "../src/cli.js";
import { openServerContext } from "../src/server-context.js";
import { rootCrlDaysLeft } from "../src/offline-root/root-crl-watch.js";
import { docExamples, runExample } from "./support/doc-examples.js";
import { keyArgs, openssl, opensslCsr, runUkeyServer, startUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

let t: TempDir;
let env: Record<string, string>;
let dataDir: string;
const examples = docExamples("deployment.md", "offline-root");
const renewExamples = docExamples("deployment.md", "offline-root-renew");
const dayMs = 86_400_000;

/** The openssl CLI in the test's folder (the offline machine's working directory). */
function sh(args: string[]): string {
  return execFileSync("openssl", args, { cwd: t.dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

interface Run { status: number; stdout: string; stderr: string }

/** The CLI in this process (the bad-input table: many refusals, no process start each), from the test's folder. */
async function cli(args: string[], clock: Clock = systemClock): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const status = await runCli([...args, "--json"], { out: (x) => { stdout += x; }, err: (x) => { stderr += x; }, env, clock, cwd: t.dir });
  return { status, stdout, stderr };
}

const errorCode = (r: Run): string => {
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return (JSON.parse(line) as { error?: { code: string } }).error?.code ?? `no error: ${line}`;
  } catch {
    return `not JSON: ${r.stdout}${r.stderr}`;
  }
};

/** Everything in a data directory, with sizes: a refusal must leave it exactly so. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (n.isDirectory()) walk(`${d}/${n.name}`, `${rel}${n.name}/`);
      else out.push(`${rel}${n.name}:${readFileSync(`${d}/${n.name}`).length}`);
    }
  };
  walk(dir, "");
  return out;
}

/** A second offline machine: another root with the very same name (so only the signature tells them apart). */
function otherRoot(dir: string, keyGen: string[], signOpts: readonly string[] = ["-sha256"]): void {
  writeFileSync(t.path(`${dir}.cnf`), readFileSync(t.path("root/openssl.cnf"), "utf8").replace(/^dir = root$/m, `dir = ${dir}`));
  execFileSync("bash", ["-euo", "pipefail", "-c", `mkdir -p ${dir}/newcerts && touch ${dir}/index.txt && echo 1000 > ${dir}/crlnumber && openssl rand -hex 16 > ${dir}/serial && mv ${dir}.cnf ${dir}/openssl.cnf`], { cwd: t.dir });
  sh(["genpkey", ...keyGen, "-aes-256-cbc", "-pass", "file:root.pass", "-out", `${dir}/root.key.pem`]);
  sh(["req", "-new", "-x509", "-key", `${dir}/root.key.pem`, "-passin", "file:root.pass", ...signOpts, "-days", "7305",
    "-subj", "/C=CN/O=Example Bank/CN=Example Bank Root CA", "-config", `${dir}/openssl.cnf`, "-extensions", "v3_root", "-out", `${dir}/root.cer.pem`]);
}

/** Signs `csr` at the root `dir` with extension section `ext` (of `extfile` when given). */
function signAt(dir: string, csr: string, out: string, ext: string, extfile?: string, days = "3652", signOpts: readonly string[] = []): void {
  sh(["ca", "-batch", "-config", `${dir}/openssl.cnf`, "-passin", "file:root.pass", "-rand_serial", ...signOpts, ...(extfile ? ["-extfile", extfile] : []),
    "-extensions", ext, "-days", days, "-notext", "-in", csr, "-out", out]);
}

before(() => {
  t = tempDir("ukey-offline-root-");
  env = { UKEY_CA_PASSPHRASE_FILE: t.write("ca-passphrase", "correct horse battery staple\n") };
  t.write("root.pass", "offline root passphrase held by two officers\n");
  dataDir = t.path("data");
  assert.equal(examples.length, 4, "docs/deployment.md has the four steps of the ceremony as examples");
  assert.equal(renewExamples.length, 2, "docs/deployment.md has the yearly root CRL as examples");
});
after(() => t.cleanup());

test("init --offline-root makes only the issuing key and its request, and the data directory waits (docs step 1)", () => {
  runExample(t.dir, examples[0]!, env);
  const csr = readFileSync(t.path("issuing.csr.pem"), "utf8");
  assert.equal(readFileSync(`${dataDir}/ca/issuing.csr.pem`, "utf8"), csr);
  const text = openssl(["req", "-in", t.path("issuing.csr.pem"), "-noout", "-verify", "-subject"]);
  assert.equal(text.status, 0, text.out);
  assert.match(text.out, /verify OK/i);
  assert.match(text.out, /C\s*=\s*CN, O\s*=\s*Example Bank, CN\s*=\s*Example Bank Issuing CA/);
  assert.ok(existsSync(`${dataDir}/ca/issuing.key.pem`), "the issuing key is where it will be used");
  for (const absent of ["ca/root.key.pem", "ca/root.cer.pem", "ca/issuing.cer.pem", "db"]) assert.ok(!existsSync(`${dataDir}/${absent}`), `${absent} must not exist`);
  assert.equal((JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")) as { ca: { rootKey: string } }).ca.rootKey, "offline");
});

test("start refuses a data directory waiting for its issuing certificate, and says what to do", () => {
  const r = runUkeyServer(["start", "--data-dir", dataDir, "--port", "0", "--json"], env);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.equal(errorCode(r), "CA_AWAITING_ISSUING_CERT");
  assert.match(r.stdout, /ukey-server ca import/);
  assert.ok(!existsSync(`${dataDir}/db`), "nothing bound");
});

test("init refuses --offline-root without --issuing-csr-out, or with one it cannot write, and leaves nothing", async () => {
  const r = await cli(["init", "--data-dir", t.path("half"), "--offline-root"]);
  assert.equal(r.status, 2);
  assert.equal(errorCode(r), "CLI_USAGE");
  assert.ok(!existsSync(t.path("half")));
  const unwritable = await cli(["init", "--data-dir", t.path("half"), "--offline-root", "--issuing-csr-out", t.path("no/such/dir/issuing.csr.pem")]);
  assert.equal(unwritable.status, 2, unwritable.stdout + unwritable.stderr);
  assert.equal(errorCode(unwritable), "CLI_USAGE");
  assert.deepEqual(existsSync(t.path("half")) ? readdirSync(t.path("half")) : [], [], "no key, no config: init can simply run again");
});

test("the offline machine makes the root, signs the issuing CA and the root CRL with openssl (docs steps 2 and 3)", () => {
  runExample(t.dir, examples[1]!, env);
  runExample(t.dir, examples[2]!, env);
  const v = openssl(["verify", "-CAfile", t.path("root/root.cer.pem"), t.path("issuing.cer.pem")]);
  assert.equal(v.status, 0, v.out);
});

test("ca import refuses bad ceremony output with its catalogue code, and changes nothing", async () => {
  // What a careless or hostile ceremony could bring, made by openssl.
  writeFileSync(t.path("bad.cnf"), `[ req ]\ndistinguished_name = dn\n[ dn ]\n[ v3_not_ca ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyCertSign, cRLSign\n`
    + `[ v3_no_pathlen ]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, digitalSignature, keyCertSign, cRLSign\n`);
  sh(["req", "-new", ...keyArgs.p256, "-nodes", "-keyout", "other.key.pem", "-subj", "/C=CN/O=Example Bank/CN=Example Bank Issuing CA", "-out", "other.csr.pem"]);
  signAt("root", "other.csr.pem", "other-key.cer.pem", "v3_issuing");
  signAt("root", "issuing.csr.pem", "not-ca.cer.pem", "v3_not_ca", "bad.cnf");
  signAt("root", "issuing.csr.pem", "no-pathlen.cer.pem", "v3_no_pathlen", "bad.cnf");
  signAt("root", "issuing.csr.pem", "short.cer.pem", "v3_issuing", undefined, "400");
  sh(["req", "-new", "-x509", "-key", "root/root.key.pem", "-passin", "file:root.pass", "-days", "7305", "-subj", "/C=CN/O=Example Bank/CN=Example Bank Root CA",
    "-config", "bad.cnf", "-extensions", "v3_not_ca", "-out", "root-not-ca.pem"]);
  otherRoot("root2", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
  signAt("root2", "issuing.csr.pem", "foreign.cer.pem", "v3_issuing");
  sh(["ca", "-gencrl", "-config", "root2/openssl.cnf", "-passin", "file:root.pass", "-out", "foreign.crl.pem"]);
  // A copy of the root's database that revokes the issuing certificate (the real one stays clean).
  cpSync(t.path("root"), t.path("rootrev"), { recursive: true });
  writeFileSync(t.path("rootrev/openssl.cnf"), readFileSync(t.path("root/openssl.cnf"), "utf8").replace(/^dir = root$/m, "dir = rootrev"));
  sh(["ca", "-config", "rootrev/openssl.cnf", "-passin", "file:root.pass", "-revoke", "issuing.cer.pem"]);
  sh(["ca", "-gencrl", "-config", "rootrev/openssl.cnf", "-passin", "file:root.pass", "-out", "revoking.crl.pem"]);
  // A data directory whose root key is on the server (init without --offline-root): its config says so.
  cpSync(dataDir, t.path("online"), { recursive: true });
  const cfg = JSON.parse(readFileSync(t.path("online/config.json"), "utf8")) as { ca: { rootKey: string } };
  cfg.ca.rootKey = "server";
  writeFileSync(t.path("online/config.json"), JSON.stringify(cfg));

  const at = (days: number): Clock => ({ now: () => new Date(Date.now() + days * dayMs) });
  const good = { issuing: "issuing.cer.pem", root: "root/root.cer.pem", crl: "root.crl.pem" };
  const cases: Array<{ name: string; files?: Partial<typeof good>; dir?: string; clock?: Clock; code: string }> = [
    { name: "an issuing certificate for another key", files: { issuing: "other-key.cer.pem" }, code: "ISSUING_CERT_WRONG_KEY" },
    { name: "an issuing certificate signed by another root of the same name", files: { issuing: "foreign.cer.pem" }, code: "ISSUING_CERT_NOT_FROM_ROOT" },
    { name: "the issuing certificate with the other root's certificate", files: { root: "root2/root.cer.pem" }, code: "ISSUING_CERT_NOT_FROM_ROOT" },
    { name: "a root that is not a CA", files: { root: "root-not-ca.pem" }, code: "ROOT_CERT_UNFIT" },
    { name: "an issuing certificate that is not a CA", files: { issuing: "not-ca.cer.pem" }, code: "ISSUING_CERT_UNFIT" },
    { name: "an issuing CA without pathlen 0", files: { issuing: "no-pathlen.cer.pem" }, code: "ISSUING_CERT_UNFIT" },
    { name: "an issuing CA that ends before certificates issued today would", files: { issuing: "short.cer.pem" }, code: "ISSUING_CERT_UNFIT" },
    { name: "an expired issuing certificate", clock: at(3653), code: "ISSUING_CERT_UNFIT" },
    { name: "a root CRL signed by another root", files: { crl: "foreign.crl.pem" }, code: "ROOT_CRL_WRONG_ISSUER" },
    { name: "a root CRL past its nextUpdate", clock: at(366), code: "ROOT_CRL_STALE" },
    { name: "a root CRL that revokes the issuing certificate", files: { crl: "revoking.crl.pem" }, code: "ROOT_CRL_REVOKES_ISSUING" },
    { name: "a certificate where the root CRL belongs", files: { crl: "root/root.cer.pem" }, code: "PEM_MALFORMED" },
    { name: "a data directory whose root key is on the server", dir: t.path("online"), code: "CA_IMPORT_NOT_AWAITED" },
  ];
  for (const c of cases) {
    const f = { ...good, ...c.files };
    const dir = c.dir ?? dataDir;
    const before = snapshot(dir);
    const r = await cli(["ca", "import", "--data-dir", dir, "--issuing-cert", f.issuing, "--root-cert", f.root, "--root-crl", f.crl], c.clock);
    assert.equal(r.status, 1, `${c.name}: ${r.stdout}${r.stderr}`);
    assert.equal(errorCode(r), c.code, c.name);
    assert.deepEqual(snapshot(dir), before, `${c.name}: the data directory is unchanged`);
    assert.ok(!existsSync(`${dir}/ca/issuing.cer.pem`) && !existsSync(`${dir}/db`), `${c.name}: nothing installed or bound`);
  }
});

test("ca import installs the ceremony's certificates, binds and audits; start serves; openssl verifies with both CRLs (docs step 4)", async () => {
  const out = runExample(t.dir, examples[3]!, env);
  assert.match(out, /issuing CA certificate imported/);
  assert.ok(!existsSync(`${dataDir}/ca/root.key.pem`), "no root key on the server");
  const again = await cli(["ca", "import", "--data-dir", dataDir, "--issuing-cert", "issuing.cer.pem", "--root-cert", "root/root.cer.pem", "--root-crl", "root.crl.pem"]);
  assert.equal(errorCode(again), "CA_IMPORT_NOT_AWAITED", "a second import over the bound data directory");

  const server = await startUkeyServer(dataDir, env);
  try {
    const get = async (path: string) => Buffer.from(await (await fetch(`${server.url}${path}`)).arrayBuffer());
    // The root CRL is the ceremony's, byte for byte: the server has no root key to sign one.
    const rootCrl = await get("/crl/root.crl");
    assert.deepEqual(rootCrl, pemToDer(readFileSync(t.path("root.crl.pem"), "utf8"), "X509 CRL"));
    assert.deepEqual(await get("/ca/root.cer"), pemToDer(readFileSync(t.path("root/root.cer.pem"), "utf8"), "CERTIFICATE"));

    const idFile = t.write("H001.idnum", "11010119900307123X\n");
    // The operator commands below reach the running server through its control socket (no process of their own).
    const h = await cli(["holder", "add", "--data-dir", dataDir, "--id", "H001", "--name", "Holder H001", "--id-type", "resident-id", "--id-number-file", idFile]);
    assert.equal(h.status, 0, h.stdout + h.stderr);
    const { csr } = opensslCsr(t, "leaf", keyArgs.p256);
    const leaf = t.path("leaf.cer.pem");
    const i = await cli(["issue", "--data-dir", dataDir, "--holder", "H001", "--profile", "personal", "--csr", csr, "--out", leaf]);
    assert.equal(i.status, 0, i.stdout + i.stderr);
    writeFileSync(t.path("served-root.crl.pem"), derToPem(rootCrl, "X509 CRL"));
    writeFileSync(t.path("served-issuing.crl.pem"), derToPem(await get("/crl/issuing.crl"), "X509 CRL"));
    const v = openssl(["verify", "-crl_check_all", "-CAfile", t.path("root/root.cer.pem"), "-untrusted", t.path("issuing.cer.pem"),
      "-CRLfile", t.path("served-root.crl.pem"), "-CRLfile", t.path("served-issuing.crl.pem"), leaf]);
    assert.equal(v.status, 0, v.out);
    assert.match(v.out, /: OK/);

    // OCSP about the issuing CA itself would need the root's signature: refused as RFC 6960 says.
    const o = openssl(["ocsp", "-issuer", t.path("root/root.cer.pem"), "-cert", t.path("issuing.cer.pem"), "-url", `${server.url}/ocsp`, "-noverify"]);
    assert.match(o.out, /unauthorized/i, o.out);

    const metrics = (await get("/metrics")).toString();
    const next = /^ukey_root_crl_next_update_seconds (\d+)/m.exec(metrics);
    assert.ok(next, "the metric is there");
    const crlNext = new Date(openssl(["crl", "-in", t.path("root.crl.pem"), "-noout", "-nextupdate"]).out.replace(/^nextUpdate=/, "").trim());
    assert.equal(Number(next[1]), Math.floor(crlNext.getTime() / 1000));

    // The yearly CRL, through the running server's control socket (docs step 5): served at once.
    runExample(t.dir, renewExamples[0]!, env);
    const r = runExample(t.dir, renewExamples[1]!, env);
    assert.match(r, /root CRL replaced: number 4097 \(was 4096\)/, "openssl's crlnumber file is hexadecimal: 1000 is 4096");
    assert.deepEqual(await get("/crl/root.crl"), pemToDer(readFileSync(t.path("root-next.crl.pem"), "utf8"), "X509 CRL"));
    const older = await cli(["ca", "import-root-crl", "--data-dir", dataDir, "--root-crl", "root.crl.pem"]);
    assert.equal(errorCode(older), "ROOT_CRL_OLDER", "the first CRL cannot be put back");
    const foreign = await cli(["ca", "import-root-crl", "--data-dir", dataDir, "--root-crl", "foreign.crl.pem"]);
    assert.equal(errorCode(foreign), "ROOT_CRL_WRONG_ISSUER");
    const importWhileServing = await cli(["ca", "import", "--data-dir", dataDir, "--issuing-cert", "other-key.cer.pem", "--root-cert", "root/root.cer.pem", "--root-crl", "root-next.crl.pem"]);
    assert.equal(errorCode(importWhileServing), "CA_IMPORT_NOT_AWAITED", "a running server's issuing certificate is never replaced");
    const revoking = await cli(["ca", "import-root-crl", "--data-dir", dataDir, "--root-crl", "revoking.crl.pem"]);
    assert.equal(errorCode(revoking), "ROOT_CRL_REVOKES_ISSUING");
    assert.deepEqual(await get("/crl/root.crl"), pemToDer(readFileSync(t.path("root-next.crl.pem"), "utf8"), "X509 CRL"), "refusals changed nothing");
  } finally {
    await server.stop();
  }
  const audit = await cli(["audit", "verify", "--data-dir", dataDir]);
  assert.equal(audit.status, 0, audit.stdout + audit.stderr);
  const db = new Database(`${dataDir}/db/ukey.sqlite`, { readonly: true, fileMustExist: true });
  try {
    const actions = (db.prepare("SELECT action FROM audit_log ORDER BY seq").all() as Array<{ action: string }>).map((a) => a.action);
    assert.ok(actions.includes("ca.issuing-imported"), actions.join());
    assert.equal(actions.filter((a) => a === "ca.root-crl-imported").length, 1, "one replacement, the refusals not");
  } finally {
    db.close();
  }
  // A root CRL put in place by hand must still be the root's: a foreign one stops the start.
  const installed = readFileSync(`${dataDir}/ca/root.crl`);
  writeFileSync(`${dataDir}/ca/root.crl`, pemToDer(readFileSync(t.path("foreign.crl.pem"), "utf8"), "X509 CRL"));
  await assert.rejects(openServerContext(dataDir, env, systemClock), (e: Error & { code?: string }) => e.code === "ROOT_CRL_WRONG_ISSUER");
  writeFileSync(`${dataDir}/ca/root.crl`, installed);
});

test("the root CRL warning starts a month before its nextUpdate", () => {
  const now = new Date("2027-01-01T00:00:00Z");
  const ctxAt = (nextUpdate: string) => ({ ca: { installedRootCrl: () => ({ nextUpdate: new Date(nextUpdate) }) }, clock: { now: () => now } }) as unknown as Parameters<typeof rootCrlDaysLeft>[0];
  assert.equal(rootCrlDaysLeft(ctxAt("2027-03-01T00:00:00Z")), undefined, "two months ahead: quiet");
  assert.equal(rootCrlDaysLeft(ctxAt("2027-01-21T00:00:00Z")), 20);
  assert.equal(rootCrlDaysLeft(ctxAt("2026-12-30T00:00:00Z")), -2, "past: still warned, with a negative count");
  const online = { ca: { installedRootCrl: () => undefined }, clock: { now: () => now } } as unknown as Parameters<typeof rootCrlDaysLeft>[0];
  assert.equal(rootCrlDaysLeft(online), undefined, "a root key on the server signs its own CRL");
});

test("RSA: the same ceremony with an RSA root and issuing key; a database of another CA is refused at import", async () => {
  const rsaDir = t.path("data-rsa");
  const init = await cli(["init", "--data-dir", rsaDir, "--algorithm", "rsa2048", "--org", "Example Bank", "--public-url", "https://pki.example.cn",
    "--offline-root", "--issuing-csr-out", "rsa.csr.pem"]);
  assert.equal(init.status, 0, init.stdout + init.stderr);
  otherRoot("root-rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
  signAt("root-rsa", "rsa.csr.pem", "rsa.cer.pem", "v3_issuing");
  sh(["ca", "-gencrl", "-config", "root-rsa/openssl.cnf", "-passin", "file:root.pass", "-out", "rsa.crl.pem"]);
  const args = ["ca", "import", "--data-dir", rsaDir, "--issuing-cert", "rsa.cer.pem", "--root-cert", "root-rsa/root.cer.pem", "--root-crl", "rsa.crl.pem"];

  // The P-256 CA's database put in its place: bound to another issuing CA, so refused, and no file installed.
  cpSync(`${dataDir}/db`, `${rsaDir}/db`, { recursive: true });
  const mismatch = await cli(args);
  assert.equal(errorCode(mismatch), "DATABASE_CA_MISMATCH", mismatch.stdout + mismatch.stderr);
  assert.ok(!existsSync(`${rsaDir}/ca/issuing.cer.pem`) && !readdirSync(`${rsaDir}/ca`).some((n) => n.endsWith(".importing")));
  rmSync(`${rsaDir}/db`, { recursive: true, force: true });

  const ok = await cli(args);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  const idFile = t.write("R001.idnum", "11010119900307123X\n");
  assert.equal((await cli(["holder", "add", "--data-dir", rsaDir, "--id", "R001", "--name", "Holder R001", "--id-type", "resident-id", "--id-number-file", idFile])).status, 0);
  const { csr } = opensslCsr(t, "rsa-leaf", keyArgs.p256);
  const issued = await cli(["issue", "--data-dir", rsaDir, "--holder", "R001", "--profile", "personal", "--csr", csr, "--out", t.path("rsa-leaf.cer.pem")]);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);
  const ctx = await openServerContext(rsaDir, env, systemClock);
  try {
    writeFileSync(t.path("rsa-root.crl.pem"), derToPem(await ctx.revocation.crl("root"), "X509 CRL"));
    writeFileSync(t.path("rsa-issuing.crl.pem"), derToPem(await ctx.revocation.crl("issuing"), "X509 CRL"));
  } finally {
    await ctx.close();
  }
  const v = openssl(["verify", "-crl_check_all", "-CAfile", t.path("root-rsa/root.cer.pem"), "-untrusted", t.path("rsa.cer.pem"),
    "-CRLfile", t.path("rsa-root.crl.pem"), "-CRLfile", t.path("rsa-issuing.crl.pem"), t.path("rsa-leaf.cer.pem")]);
  assert.equal(v.status, 0, v.out);
});

test("HSM: init --offline-root makes the issuing key on the token (SoftHSM2), the request is signed there, and the import proves it", async () => {
  const hsm = createSoftHsmToken("ukey-offline-root");
  // The PKCS#11 module reads its configuration from this process's environment (the in-process CLI loads it here).
  const previous = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = hsm.conf;
  const saved = env;
  env = { UKEY_HSM_PIN_FILE: t.write("hsm-pin", `${hsm.pin}\n`), SOFTHSM2_CONF: hsm.conf };
  try {
    const hsmDir = t.path("data-hsm");
    const init = await cli(["init", "--data-dir", hsmDir, "--org", "Example Bank", "--public-url", "https://pki.example.cn",
      "--hsm-module", hsm.module, "--hsm-token", hsm.tokenLabel, "--offline-root", "--issuing-csr-out", "hsm.csr.pem"]);
    assert.equal(init.status, 0, init.stdout + init.stderr);
    assert.ok(!readdirSync(`${hsmDir}/ca`).some((n) => n.endsWith(".key.pem")), "no key file: the key is on the token");
    const req = openssl(["req", "-in", t.path("hsm.csr.pem"), "-noout", "-verify"]);
    assert.equal(req.status, 0, req.out);
    signAt("root", "hsm.csr.pem", "hsm.cer.pem", "v3_issuing");
    const args = ["ca", "import", "--data-dir", hsmDir, "--root-cert", "root/root.cer.pem", "--root-crl", "root-next.crl.pem"];
    // The P-256 server's issuing certificate: well signed by the same root, but not for the token's key.
    const wrong = await cli([...args, "--issuing-cert", "issuing.cer.pem"]);
    assert.equal(errorCode(wrong), "ISSUING_CERT_WRONG_KEY");
    const ok = await cli([...args, "--issuing-cert", "hsm.cer.pem"]);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.equal((JSON.parse(readFileSync(`${hsmDir}/config.json`, "utf8")) as { ca: { keyStore: { type: string } } }).ca.keyStore.type, "pkcs11");
  } finally {
    env = saved;
    if (previous === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previous;
    hsm.cleanup();
  }
});

test("SM2: the ceremony with an SM2 root (openssl with the standard distinguishing ID), the issuing key in the key file", async () => {
  // OpenSSL 3.0 signs and checks SM2 with the empty ID unless told: -sigopt for what it signs, -vfyopt for the request it checks.
  const sm2 = ["-md", "sm3", "-sigopt", "distid:1234567812345678"];
  const sm2Dir = t.path("data-sm2");
  const init = await cli(["init", "--data-dir", sm2Dir, "--algorithm", "sm2", "--org", "Example Bank", "--public-url", "https://pki.example.cn",
    "--offline-root", "--issuing-csr-out", "sm2.csr.pem"]);
  assert.equal(init.status, 0, init.stdout + init.stderr);
  otherRoot("root-sm2", ["-algorithm", "SM2"], ["-sm3", "-sigopt", "distid:1234567812345678"]);
  signAt("root-sm2", "sm2.csr.pem", "sm2.cer.pem", "v3_issuing", undefined, "3652", [...sm2, "-vfyopt", "distid:1234567812345678"]);
  sh(["ca", "-gencrl", "-config", "root-sm2/openssl.cnf", "-passin", "file:root.pass", ...sm2, "-out", "sm2.crl.pem"]);
  // The same CRL signed with the empty ID (OpenSSL's default) is not the root's signature under GM/T 0009.
  sh(["ca", "-gencrl", "-config", "root-sm2/openssl.cnf", "-passin", "file:root.pass", "-md", "sm3", "-out", "sm2-empty-id.crl.pem"]);
  const args = ["ca", "import", "--data-dir", sm2Dir, "--issuing-cert", "sm2.cer.pem", "--root-cert", "root-sm2/root.cer.pem"];
  const emptyId = await cli([...args, "--root-crl", "sm2-empty-id.crl.pem"]);
  assert.equal(errorCode(emptyId), "ROOT_CRL_WRONG_ISSUER");
  const ok = await cli([...args, "--root-crl", "sm2.crl.pem"]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  const ctx = await openServerContext(sm2Dir, env, systemClock);
  try {
    assert.deepEqual(await ctx.revocation.crl("root"), pemToDer(readFileSync(t.path("sm2.crl.pem"), "utf8"), "X509 CRL"));
    // The issuing CA signs with its key from the key file: its own CRL verifies with the certificate the root signed.
    assert.ok(signedBy(await ctx.revocation.crl("issuing"), certificateSpki(pemToDer(readFileSync(t.path("sm2.cer.pem"), "utf8"), "CERTIFICATE"))));
  } finally {
    await ctx.close();
  }
});
