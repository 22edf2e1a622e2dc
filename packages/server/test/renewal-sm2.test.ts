import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { derToPem, pemToDer } from "@ukey/ca";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { possessionMessage } from "../src/renewal/possession.js";
import { OrderApi } from "./support/order-api.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";
import { assertOpensslSm2Signature, basicOcspResponse } from "../../ca/test/support/sm2-openssl.js";
import { tempDir as caTempDir } from "../../ca/test/support/openssl.js";

// Issue 13: a renewal end to end on an SM2 CA (`ukey-server init --algorithm sm2`) with an SM2 profile,
// through the holder-bound order API. The software client stands in for the agent (SM2 on keys is the
// next issue): its SM2 keys, CSRs and proofs of possession are made by the OpenSSL CLI with
// distid:1234567812345678, and every SM2 certificate, CRL and OCSP response is checked by OpenSSL.
const day = 86_400_000;
const distid = "distid:1234567812345678";
let t: TempDir;
const sigTmp = caTempDir("ukey-sm2-e2e-");
let ctx: ServerContext;
let app: FastifyInstance;
let dataDir: string;
let api: OrderApi;
const clock = fixedClock(new Date());
let old: { serial: string; certId: string; notAfter: number; keyFile: string };

/** An SM2 key and its CSR, both by openssl; `sigopt` null signs with OpenSSL's default, the empty ID. */
function sm2Csr(name: string, subject: string, sigopt: string | null = distid): { csr: string; key: string } {
  const key = t.path(`${name}.key.pem`);
  const csr = t.path(`${name}.csr.pem`);
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", key]).status, 0);
  const r = openssl(["req", "-new", "-key", key, "-sm3", ...(sigopt ? ["-sigopt", sigopt] : []), "-subj", subject, "-out", csr]);
  assert.equal(r.status, 0, r.out);
  return { csr, key };
}

/** The agent's proof of possession, signed by openssl with the SM2 key and the standard ID (`id` "" for the empty one). */
function sm2Possession(orderId: string, challenge: string, keyFile: string, id = "1234567812345678"): string {
  const msg = t.write(`pop-${orderId}-${challenge.slice(0, 8)}.msg`, possessionMessage(orderId, challenge));
  const sig = `${msg}.sig`;
  const r = openssl(["dgst", "-sm3", "-sign", keyFile, ...(id ? ["-sigopt", `distid:${id}`] : []), "-out", sig, msg]);
  assert.equal(r.status, 0, r.out);
  return readFileSync(sig).toString("base64");
}

const issuingSpki = () => {
  const out = t.path("issuing.spki.der");
  assert.equal(openssl(["x509", "-in", `${dataDir}/ca/issuing.cer.pem`, "-pubkey", "-noout", "-out", `${out}.pem`]).status, 0);
  return pemToDer(readFileSync(`${out}.pem`, "utf8"), "PUBLIC KEY");
};

before(async () => {
  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t, "sm2"));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gm", preset: "gov-supervision", keyAlgorithms: ["sm2"], certificates: null });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, env, "S1").status, 0);
  const { csr, key } = sm2Csr("old", "/CN=old");
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "S1", "--profile", "gm", "--csr", csr, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.json<{ serial: string; certId: string; notAfter: string }>();
  old = { serial: out.serial, certId: out.certId, notAfter: Date.parse(out.notAfter), keyFile: key };
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  api = OrderApi.of(app);
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
  sigTmp.cleanup();
});

test("init --algorithm sm2 made SM2 CA certificates that openssl checks with distid", () => {
  const root = readFileSync(`${dataDir}/ca/root.cer.pem`, "utf8");
  const issuing = readFileSync(`${dataDir}/ca/issuing.cer.pem`, "utf8");
  assertOpensslSm2Signature(sigTmp, "root", pemToDer(root, "CERTIFICATE"), pemToDer(openssl(["x509", "-in", `${dataDir}/ca/root.cer.pem`, "-pubkey", "-noout"]).out, "PUBLIC KEY"));
  const v = openssl(["verify", "-vfyopt", distid, "-CAfile", `${dataDir}/ca/root.cer.pem`, `${dataDir}/ca/issuing.cer.pem`]);
  assert.equal(v.status, 0, v.out);
  assert.match(issuing, /BEGIN CERTIFICATE/);
  const key = openssl(["pkey", "-in", `${dataDir}/ca/issuing.key.pem`, "-passin", "pass:correct horse battery staple", "-noout", "-text"]);
  assert.equal(key.status, 0, key.out);
  assert.match(key.out, /ASN1 OID: SM2/);
});

test("init --algorithm sm2 with an HSM is refused before anything is written", () => {
  const pass = t.write("hsm-pin", "1234\n");
  const r = runUkeyServer(["init", "--data-dir", t.path("hsm-sm2"), "--algorithm", "sm2", "--hsm-module", "/nonexistent.so", "--hsm-token", "x", "--json"], { UKEY_HSM_PIN_FILE: pass });
  assert.notEqual(r.status, 0);
  assert.match(r.stdout + r.stderr, /CLI_USAGE/);
  assert.equal(existsSync(t.path("hsm-sm2")), false, "nothing written");
});

test("an SM2 renewal through the order API: possession with the ID, bad CSRs refused and nothing changed, issued SM3withSM2, completed", async () => {
  clock.set(new Date(old.notAfter - 30 * day));
  const started = await api.start(old.certId);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = started.body.id;
  const c1 = started.body.challenge.value;

  // Possession signed with the empty ID proves nothing.
  const emptyId = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c1, signature: sm2Possession(id, c1, old.keyFile, "") });
  assert.equal(emptyId.body.code, "POSSESSION_PROOF_FAILED");
  const c2 = (await api.call<{ challenge: { value: string } }>("POST", `/api/v1/orders/${id}/challenge`)).body.challenge.value;
  const proved = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c2, signature: sm2Possession(id, c2, old.keyFile) });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  assert.deepEqual(proved.body.keyAlgorithms, ["sm2"]);

  // Bad CSRs: each refused with its code, and the order stays where it was.
  const empty = sm2Csr("empty-id", "/", null);
  const r1 = await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(empty.csr, "utf8") });
  assert.equal(r1.status, 400, JSON.stringify(r1.body));
  assert.equal(r1.body.code, "CSR_SM2_ID_EMPTY");
  assert.match(r1.body.message!["zh-CN"], /1234567812345678/);
  const other = sm2Csr("other-id", "/", "distid:ALICE123@YAHOO.COM");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(other.csr, "utf8") })).body.code, "CSR_SM2_SIGNATURE_INVALID");
  const ec = opensslCsr(t, "ec", keyArgs.p256, "/");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(ec.csr, "utf8") })).body.code, "KEY_ALGORITHM_NOT_ALLOWED");
  assert.equal((await api.call("GET", `/api/v1/orders/${id}`)).body.state, "verified", "refusals change nothing");

  const fresh = sm2Csr("new", "/");
  const issued = await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(fresh.csr, "utf8"), tokenSerial: "PF20FA0001" });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  assert.equal(issued.body.state, "issued");
  const cert = issued.body.newCertificate!;
  const certPath = t.write("issued.pem", cert.pem);
  const at = String(Math.floor(clock.now().getTime() / 1000));
  const v = openssl(["verify", "-x509_strict", "-partial_chain", "-vfyopt", distid, "-attime", at, "-CAfile", `${dataDir}/ca/issuing.cer.pem`, certPath]);
  assert.equal(v.status, 0, v.out);
  assertOpensslSm2Signature(sigTmp, "issued", pemToDer(cert.pem, "CERTIFICATE"), issuingSpki());
  const text = openssl(["x509", "-in", certPath, "-noout", "-text"]).out;
  assert.match(text, /Signature Algorithm: SM2-with-SM3/);
  assert.match(text, /ASN1 OID: SM2/);

  assert.equal((await api.call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed");
  const oldRec = await ctx.store.certificates.get(old.serial);
  assert.equal(oldRec!.status, "superseded");
  assert.equal((await ctx.store.audit.verify()).ok, true);

  // The superseded certificate on the SM2 CRL and in an SM2 OCSP response, both checked by openssl with distid.
  const crlRes = await app.inject({ method: "GET", url: "/crl/issuing.crl" });
  assert.equal(crlRes.statusCode, 200);
  const crl = crlRes.rawPayload;
  assertOpensslSm2Signature(sigTmp, "crl", crl, issuingSpki());
  const crlText = openssl(["crl", "-inform", "DER", "-in", t.write("issuing.crl", crl), "-noout", "-text"]).out;
  assert.match(crlText, new RegExp(`Serial Number: ${old.serial.replace(/:/g, "").toUpperCase()}`));
  const oldPem = t.path("old.cer.pem");
  writeFileSync(oldPem, derToPem((await ctx.store.certificates.get(old.serial))!.der!, "CERTIFICATE"));
  const reqFile = t.path("ocsp.req");
  assert.equal(openssl(["ocsp", "-issuer", `${dataDir}/ca/issuing.cer.pem`, "-cert", oldPem, "-reqout", reqFile, "-no_nonce"]).status, 0);
  const ocspRes = await app.inject({ method: "POST", url: "/ocsp", headers: { "content-type": "application/ocsp-request" }, payload: readFileSync(reqFile) });
  assert.equal(ocspRes.statusCode, 200);
  const respFile = t.write("ocsp.resp", ocspRes.rawPayload);
  const o = openssl(["ocsp", "-respin", respFile, "-noverify", "-resp_text"]);
  assert.match(o.out, /Signature Algorithm: SM2-with-SM3/);
  assert.match(o.out, /Cert Status: revoked/);
  assertOpensslSm2Signature(sigTmp, "ocsp", basicOcspResponse(ocspRes.rawPayload), issuingSpki());
});
