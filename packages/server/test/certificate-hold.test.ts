import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, startUkeyServer, tempDir, addHolder, type RunningServer, type TempDir } from "./support/fixtures.js";

// Seed 003's 冻结 (issue 16): an operator puts a certificate on hold and lifts it;
// OCSP, the CRL, renewal and the renewal-info document follow, all audited.
// The real server, its CLI (through the running server) and openssl.
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let server: RunningServer;
let serial: string;
let certId: string;
let leaf: string;
let token: string;

before(async () => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "F1").status, 0);
  const { csr } = opensslCsr(t, "leaf", keyArgs.p256);
  leaf = t.path("leaf.pem");
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "F1", "--profile", "personal", "--csr", csr, "--out", leaf, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  ({ serial, certId } = r.json<{ serial: string; certId: string }>());
  const op = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", "op1", "--role", "operator", "--password-file", t.write("op.pw", "operator one passphrase"), "--json"], env);
  assert.equal(op.status, 0, op.stdout + op.stderr);
  server = await startUkeyServer(dataDir, env);
  const { totpCodeAt } = await import("../src/admin/operator-credentials.js");
  const s = await fetch(`${server.url}/api/v1/admin/sign-in`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ operatorId: "op1", password: "operator one passphrase", totp: totpCodeAt(op.json<{ totpSecret: string }>().totpSecret, new Date()) }),
  });
  assert.equal(s.status, 200);
  token = ((await s.json()) as { token: string }).token;
});
after(async () => {
  await server?.stop();
  t?.cleanup();
});

const admin = async (method: string, path: string) => {
  const r = await fetch(`${server.url}/api/v1/admin${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: await r.json() as Record<string, unknown> };
};
const ocsp = () => openssl(["ocsp", "-issuer", `${dataDir}/ca/issuing.cer.pem`, "-cert", leaf, "-url", `${server.url}/ocsp`, "-CAfile", `${dataDir}/ca/root.cer.pem`]).out;
const crlText = async () => {
  const der = t.write(`crl-${Date.now()}.der`, Buffer.from(await (await fetch(`${server.url}/crl/issuing.crl`)).arrayBuffer()));
  return openssl(["crl", "-inform", "DER", "-in", der, "-noout", "-text"]).out;
};
const serialInCrl = (text: string) => text.toUpperCase().replace(/[\s:]/g, "").includes(`SERIALNUMBER${serial.toUpperCase()}`);
const renewalRefusal = async () => {
  const r = await fetch(`${server.url}/api/v1/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ certId }) });
  return { status: r.status, body: await r.json() as { code?: string; message?: Record<string, string> } };
};

test("hold through the CLI beside the running server: OCSP says certificateHold, the CRL lists it, renewal is refused with CERT_ON_HOLD in Chinese", async () => {
  assert.match(ocsp(), /: good/);
  const r = await promisify(execFile)(process.execPath, [(await import("./support/fixtures.js")).ukeyServerBin, "hold", "--data-dir", dataDir, "--serial", serial, "--json"], { env: { PATH: process.env.PATH ?? "" } });
  assert.equal(JSON.parse(r.stdout.trim()).reason, "certificateHold");
  const answer = ocsp();
  assert.match(answer, /Response verify OK/);
  assert.match(answer, /: revoked/);
  assert.match(answer, /Reason: certificateHold/);
  const crl = await crlText();
  assert.ok(serialInCrl(crl), crl);
  assert.match(crl, /Certificate Hold/);
  const refused = await renewalRefusal();
  assert.equal(refused.status, 409);
  assert.equal(refused.body.code, "CERT_ON_HOLD");
  assert.match(refused.body.message!["zh-CN"]!, /已被冻结/);
  const info = await (await fetch(`${server.url}/api/v1/renewal-info/${certId}?channel=web`)).json() as { state: string; explanation: Record<string, string> };
  assert.equal(info.state, "revoked");
  assert.match(info.explanation["zh-CN"]!, /被机构冻结（暂停使用）/);
  assert.doesNotMatch(info.explanation["zh-CN"]!, /[A-Za-z]/, "no English in the Chinese explanation");
  // A hold placed twice is refused and changes nothing.
  assert.equal((await admin("POST", `/certificates/${serial}/hold`)).body.code, "CERT_ALREADY_REVOKED");
});

test("lifting the hold through the admin API: OCSP good again, the next CRL leaves it out, renewal no longer refused for the hold; both audited", async () => {
  const lifted = await admin("POST", `/certificates/${serial}/hold/release`);
  assert.equal(lifted.status, 200, JSON.stringify(lifted.body));
  assert.equal(lifted.body.status, "active");
  assert.match(ocsp(), /: good/);
  const crl = await crlText();
  assert.ok(!serialInCrl(crl), crl);
  const after = await renewalRefusal();
  assert.notEqual(after.body.code, "CERT_ON_HOLD");
  assert.notEqual(after.body.code, "CERT_REVOKED");
  // Lifting again, or lifting a real revocation, is refused: CERT_NOT_ON_HOLD.
  assert.equal((await admin("POST", `/certificates/${serial}/hold/release`)).body.code, "CERT_NOT_ON_HOLD");
  assert.equal((await admin("POST", `/certificates/${serial}/revoke`)).status, 400, "the revoke route still needs its reason");
  const audit = await admin("GET", "/audit?limit=500");
  const actions = (audit.body.entries as Array<{ action: string; subjectId: string; actor: string; data: Record<string, unknown> }>)
    .filter((e) => e.subjectId === serial).map((e) => `${e.action} ${e.actor} ${String(e.data.reason ?? "")}`.trim());
  assert.deepEqual(actions.filter((a) => !a.startsWith("certificate.issued") && !a.startsWith("certificate.viewed")), [
    "certificate.revoked cli certificateHold",
    "certificate.hold-released operator:op1",
  ]);
  const v = await admin("GET", "/audit/verify");
  assert.equal(v.body.ok, true);
});
