import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createDecipheriv } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { KeyRecoveryService } from "../src/kmc/key-recovery-service.js";
import { createKmcMasterKeyFile } from "../src/kmc/kmc-master-key.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, keyArgs, openssl, opensslCsr, tempDir, type TempDir } from "./support/fixtures.js";
import { OrderApi } from "./support/order-api.js";

// Issue 13, RSA pairs: the encryption key reaches the holder's key as a CMS EnvelopedData (RFC 5652) under the
// new RSA signing key (RSAES-OAEP, AES-256 key wrap with padding: "cms-enveloped-data-v2") over its PKCS#8. A software
// client stands in for the agent; OpenSSL opens every envelope with the signing key alone, and the key inside must be
// the encryption certificate's. packages/agent/test/keys/pkcs11-rsa-pair.test.ts opens the same form on SoftHSM2.
const clock = fixedClock(new Date());
let t: TempDir;
let dataDir: string;
let ctx: ServerContext;
let app: FastifyInstance;

interface Cert { serial: string; certId: string; notAfter: string; pem: string }
interface Answer extends Cert {
  encryptionCertificate: Cert;
  envelope: { format: string; value: string };
  recoveredKeys?: Array<{ escrowId: string; envelope: { format: string; value: string }; certificate?: Cert }>;
}

function verify(name: string, pem: string): string {
  const f = t.write(`${name}.cer.pem`, pem);
  // At the test's clock, which the renewal moves years ahead.
  const at = String(Math.floor(Math.max(clock.now().getTime(), Date.now()) / 1000) + 1);
  const v = openssl(["verify", "-x509_strict", "-partial_chain", "-attime", at, "-CAfile", `${dataDir}/ca/issuing.cer.pem`, f]);
  assert.equal(v.status, 0, `${name}: ${v.out}`);
  return f;
}

/**
 * Opens a "cms-enveloped-data-v2" envelope the way a PKCS#11 token does, outside our code: the structure read by
 * `openssl asn1parse`, the content-encryption key by `openssl pkeyutl` (RSAES-OAEP, SHA-1, MGF1-SHA-1) with the
 * signing key, then AES-256 key wrap with padding (RFC 5649) by Node's OpenSSL (the openssl CLI has no wrap-mode
 * cipher, and `openssl cms` 3.0 decrypts a wrap-pad content to nothing). The PKCS#8 inside, as a checked PEM file.
 * Undefined when the signing key does not open it.
 */
function openCms(name: string, envelope: Answer["envelope"], signingKey: string): string | undefined {
  assert.equal(envelope.format, "cms-enveloped-data-v2");
  const der = Buffer.from(envelope.value, "base64");
  const file = t.write(`${name}.cms.der`, der);
  const parsed = openssl(["asn1parse", "-inform", "DER", "-in", file]);
  assert.equal(parsed.status, 0, parsed.out);
  assert.match(parsed.out, /:rsaesOaep\n\s*\d+:d=\d+\s+hl=\d+ l=\s*0 cons: SEQUENCE/, `${name}: RSAES-OAEP with its default (SHA-1) parameters`);
  assert.match(parsed.out, /:id-aes256-wrap-pad/, `${name}: AES-256 key wrap with padding`);
  const fields = parsed.out.split("\n").map((l) => /^\s*(\d+):d=\d+\s+hl=(\d+) l=\s*(\d+) prim: (OCTET STRING|cont \[ 0 \])/.exec(l)).filter((m) => !!m)
    .map((m) => ({ kind: m[4], bytes: der.subarray(Number(m[1]) + Number(m[2]), Number(m[1]) + Number(m[2]) + Number(m[3])) }));
  const encryptedKey = fields.find((f) => f.kind === "OCTET STRING" && f.bytes.length === 256)!.bytes;
  const encryptedContent = fields.filter((f) => f.kind === "cont [ 0 ]").at(-1)!.bytes;
  const cekFile = t.path(`${name}.cek`);
  const oaep = openssl(["pkeyutl", "-decrypt", "-inkey", signingKey, "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1", "-pkeyopt", "rsa_mgf1_md:sha1",
    "-in", t.write(`${name}.ek`, encryptedKey), "-out", cekFile]);
  if (oaep.status !== 0) return undefined;
  const unwrap = createDecipheriv("id-aes256-wrap-pad", readFileSync(cekFile), Buffer.from("a65959a6", "hex"));
  const pk8 = t.write(`${name}.pk8.der`, Buffer.concat([unwrap.update(encryptedContent), unwrap.final()]));
  const pem = t.path(`${name}.key.pem`);
  const check = openssl(["pkey", "-inform", "DER", "-in", pk8, "-check", "-out", pem]);
  assert.equal(check.status, 0, check.out);
  return pem;
}

const pub = (args: string[]) => openssl(args).out;

before(async () => {
  t = tempDir("ukey-rsa-pair-");
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")) as { profiles: unknown[]; kmc?: unknown };
  cfg.profiles.push({
    id: "rsa-pair", keyAlgorithms: ["rsa2048"], extKeyUsage: ["clientAuth"], renewal: { windows: { est: null } }, verification: { idNumber: false, oneTimeCode: null },
    certificates: { signing: { keyUsage: ["digitalSignature", "nonRepudiation"] }, encryption: { keyUsage: ["keyEncipherment", "dataEncipherment"] } },
  });
  cfg.kmc = { masterKey: { type: "file" } };
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  mkdirSync(`${dataDir}/kmc`, { recursive: true, mode: 0o700 });
  await createKmcMasterKeyFile(`${dataDir}/kmc/master-key.json`, "the KMC's own passphrase");
  ctx = await openServerContext(dataDir, { ...env, UKEY_KMC_PASSPHRASE_FILE: t.write("kmc-pass", "the KMC's own passphrase\n") }, clock);
  app = await buildApp(ctx);
  await ctx.store.holders.insert({ id: "R1", kind: "person", name: "赵六", idType: "resident-id", idHash: "b2".repeat(32), idMasked: "1101**********1234", phone: null, email: null, organisationId: null, createdAt: clock.now().getTime() });
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

test("an RSA pair by two codes and by renewal: keyEncipherment + dataEncipherment, the key in a CMS envelope that openssl cms opens with the signing key alone; recovered the same way", async () => {
  const download = (ref: { referenceNumber: string; authorizationCode: string }, csr: string) =>
    app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber: ref.referenceNumber, authorizationCode: ref.authorizationCode, csr: readFileSync(csr, "utf8") } });
  const e = await ctx.enrolments.create({ holderId: "R1", profileId: "rsa-pair", actor: "operator:test" });
  // A P-256 key cannot open an envelope: refused before the KMC makes anything, the code unspent.
  const ec = opensslCsr(t, "ec", keyArgs.p256, "/");
  assert.equal((await download(e, ec.csr)).json<{ code: string }>().code, "KEY_ALGORITHM_NOT_ALLOWED");
  assert.equal((await ctx.store.kmcEscrows.listByHolder("R1")).length, 0);

  const k = opensslCsr(t, "sign", keyArgs.rsa2048, "/");
  const r = await download(e, k.csr);
  assert.equal(r.statusCode, 201, r.body);
  const got = r.json<Answer>();
  const sig = verify("sig", got.pem);
  const enc = verify("enc", got.encryptionCertificate.pem);
  const encText = pub(["x509", "-in", enc, "-noout", "-text"]);
  assert.match(encText, /X509v3 Key Usage: critical\s+Key Encipherment, Data Encipherment\n/);
  assert.match(encText, /Public-Key: \(2048 bit\)/);
  assert.doesNotMatch(encText, /Extended Key Usage/);
  assert.match(pub(["x509", "-in", sig, "-noout", "-text"]), /X509v3 Key Usage: critical\s+Digital Signature\n/);
  const encPub = pub(["x509", "-in", enc, "-noout", "-pubkey"]);
  assert.notEqual(encPub, pub(["x509", "-in", sig, "-noout", "-pubkey"]));
  const key = openCms("first", got.envelope, k.key)!;
  assert.equal(pub(["pkey", "-in", key, "-pubout"]), encPub, "the enveloped key is the encryption certificate's");
  // ...and it reads what is encrypted to the encryption certificate (openssl cms -encrypt to it).
  const plain = t.write("plain.txt", "只给加密证书 / for the encryption certificate only");
  assert.equal(openssl(["cms", "-encrypt", "-aes256", "-in", plain, "-out", `${plain}.p7`, "-outform", "DER", enc]).status, 0);
  assert.equal(openssl(["cms", "-decrypt", "-inform", "DER", "-in", `${plain}.p7`, "-inkey", key, "-out", `${plain}.out`]).status, 0);
  assert.deepEqual(readFileSync(`${plain}.out`), readFileSync(plain));
  // Another RSA key cannot open the envelope.
  const other = opensslCsr(t, "other", keyArgs.rsa2048, "/");
  assert.equal(openCms("first-other", got.envelope, other.key), undefined);
  const escrows = await ctx.store.kmcEscrows.listByHolder("R1");
  assert.deepEqual(escrows.map((x) => x.algorithm), ["rsa"]);

  // The answer lost: the same codes and key get the same pair, the escrowed key enveloped again.
  const again = (await download(e, k.csr)).json<Answer>();
  assert.equal(again.encryptionCertificate.serial, got.encryptionCertificate.serial);
  assert.equal(pub(["pkey", "-in", openCms("again", again.envelope, k.key)!, "-pubout"]), encPub);

  // Renewed through the order API onto a new RSA key: a new pair in the same envelope form, both old ones superseded.
  clock.set(new Date(Date.parse(got.notAfter) - 30 * 86_400_000));
  const api = OrderApi.of(app);
  const { id, proved } = await api.startAndProve(got.certId, k.key);
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  const rk = opensslCsr(t, "renewed", keyArgs.rsa2048, "/");
  const issued = await api.call<{ newCertificate: Cert; encryptionCertificate: Cert; envelope: Answer["envelope"] }>("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(rk.csr, "utf8") });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  verify("renewed-sig", issued.body.newCertificate.pem);
  const renewedEncPub = pub(["x509", "-in", verify("renewed-enc", issued.body.encryptionCertificate.pem), "-noout", "-pubkey"]);
  assert.equal(pub(["pkey", "-in", openCms("renewed", issued.body.envelope, rk.key)!, "-pubout"]), renewedEncPub);
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed");
  for (const serial of [got.serial, got.encryptionCertificate.serial]) assert.equal((await ctx.store.certificates.get(serial))?.status, "superseded", serial);

  // Recovered onto a new RSA key (two people), in the same envelope form.
  const recoveries = new KeyRecoveryService({ store: ctx.store, clock, enrolments: ctx.enrolments });
  const rec = await recoveries.open({ holderId: "R1", profileId: "rsa-pair", reason: "UKey 丢失" }, { id: "olga", role: "operator", actor: "operator:olga" });
  const codes = await recoveries.approve(rec.id, { id: "audrey", role: "auditor", actor: "operator:audrey" });
  const n = opensslCsr(t, "new", keyArgs.rsa2048, "/");
  const third = await download(codes, n.csr);
  assert.equal(third.statusCode, 201, third.body);
  const body = third.json<Answer>();
  verify("new-sig", body.pem);
  assert.deepEqual(body.recoveredKeys?.map((x) => x.certificate?.serial), [got.encryptionCertificate.serial, issued.body.encryptionCertificate.serial]);
  assert.equal(pub(["pkey", "-in", openCms("recovered", body.recoveredKeys![0]!.envelope, n.key)!, "-pubout"]), encPub, "the first encryption key, recovered");
  assert.equal(pub(["pkey", "-in", openCms("recovered2", body.recoveredKeys![1]!.envelope, n.key)!, "-pubout"]), renewedEncPub, "the renewed one too");
  assert.equal(pub(["pkey", "-in", openCms("new-enc", body.envelope, n.key)!, "-pubout"]), pub(["x509", "-in", verify("new-enc", body.encryptionCertificate.pem), "-noout", "-pubkey"]));
  assert.equal((await ctx.store.audit.verify()).ok, true);
});

test("a pair is one certificate to its holder: holding, lifting and revoking either half does the same to the other, each half audited", async () => {
  const e = await ctx.enrolments.create({ holderId: "R1", profileId: "rsa-pair", actor: "operator:test" });
  const k = opensslCsr(t, "pair-unit", keyArgs.rsa2048, "/");
  const r = await app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr: readFileSync(k.csr, "utf8") } });
  assert.equal(r.statusCode, 201, r.body);
  const got = r.json<Answer>();
  const sig = got.serial;
  const enc = got.encryptionCertificate.serial;
  const status = async () => [(await ctx.store.certificates.get(sig))?.status, (await ctx.store.certificates.get(enc))?.status];
  const reasons = async () => [(await ctx.store.certificates.get(sig))?.revocationReason, (await ctx.store.certificates.get(enc))?.revocationReason];
  const entries = async (action: string) => (await ctx.store.audit.list(0, 100_000)).filter((x) => x.action === action && [sig, enc].includes(x.subjectId ?? ""));

  // Held through the signing half: both held (冻结), the encryption half's entry names the signing one.
  await ctx.revocation.revoke(sig, "certificateHold", "operator:test");
  assert.deepEqual(await reasons(), ["certificateHold", "certificateHold"]);
  const held = await entries("certificate.revoked");
  assert.deepEqual(held.map((x) => [x.subjectId, (x.data as { pairOf?: string }).pairOf]), [[sig, undefined], [enc, sig]]);
  // Lifted through the encryption half: both active again.
  await ctx.revocation.releaseHold(enc, "operator:test");
  assert.deepEqual(await status(), ["active", "active"]);
  assert.deepEqual((await entries("certificate.hold-released")).map((x) => [x.subjectId, (x.data as { pairOf?: string }).pairOf]), [[enc, undefined], [sig, enc]]);
  // Revoked through the encryption half: both revoked with its reason, and both on the CRL.
  await ctx.revocation.revoke(enc, "keyCompromise", "operator:test");
  assert.deepEqual(await status(), ["revoked", "revoked"]);
  assert.deepEqual(await reasons(), ["keyCompromise", "keyCompromise"]);
  const crl = t.write("pair-unit.crl", await ctx.revocation.crl("issuing"));
  const text = openssl(["crl", "-inform", "DER", "-in", crl, "-noout", "-text"]).out.toUpperCase();
  for (const serial of [sig, enc]) assert.ok(text.includes(serial.toUpperCase().replace(/^0+/, "")), `${serial} on the CRL`);
  // Either half again: already revoked, nothing changes.
  await assert.rejects(ctx.revocation.revoke(sig, "unspecified", "operator:test"), (err: { code?: string }) => err.code === "CERT_ALREADY_REVOKED");
  assert.deepEqual(await reasons(), ["keyCompromise", "keyCompromise"]);
  assert.equal((await ctx.store.audit.verify()).ok, true);
});
