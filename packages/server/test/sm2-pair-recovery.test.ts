import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock, recipientProofMessage } from "@ukey/policy";
import { derToPem, parseEnvelopedKeyBlob, sm2CipherDer, sm2Pkcs8, verifyCsr } from "@ukey/ca";
import { buildApp } from "../src/app.js";
import { operatorServiceFor } from "../src/admin/operator-service.js";
import { raKeyFiles, readOrCreateKeyFile } from "../src/admin/secret-key-file.js";
import { signSessionToken } from "../src/admin/session-token.js";
import { createKmcMasterKeyFile } from "../src/kmc/kmc-master-key.js";
import { possessionMessage } from "../src/renewal/possession.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { OrderApi } from "./support/order-api.js";
import { initialisedDataDir, openssl, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 13, "Done when": an SM2 pair issued, renewed, downloaded and recovered end to end, through the real app on
// a real embedded database. A software client stands in for the holder's UKey: its SM2 keys, CSRs and proofs are
// made by the OpenSSL CLI with distid:1234567812345678, and it opens every envelope with the OpenSSL CLI alone
// (SM2 decrypt, then SM4-ECB). Every certificate is verified by `openssl verify` with the explicit distid.
const day = 86_400_000;
const distid = "distid:1234567812345678";
const clock = fixedClock(new Date());
let t: TempDir;
let dataDir: string;
let ctx: ServerContext;
let app: FastifyInstance;
let api: OrderApi;
const roles = { olga: "operator", otto: "operator", audrey: "auditor" } as const;
let sessionKey: Buffer;

interface Cert { serial: string; certId: string; notAfter: string; pem: string }
interface Envelope { format: string; value: string }
interface DownloadAnswer extends Cert {
  encryptionCertificate: Cert;
  envelope: Envelope;
  recoveredKeys?: Array<{ escrowId: string; spki: string; envelope: Envelope; certificate?: Cert }>;
}

/** An SM2 key "on the UKey" and a CSR for it, both by OpenSSL. */
function sm2Key(name: string): { key: string; csr: string } {
  const key = t.path(`${name}.key.pem`);
  const csr = t.path(`${name}.csr.pem`);
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", key]).status, 0);
  const r = openssl(["req", "-new", "-key", key, "-sm3", "-sigopt", distid, "-subj", "/", "-out", csr]);
  assert.equal(r.status, 0, r.out);
  return { key, csr };
}

/** `openssl verify` with the distid under the issuing CA; returns the certificate's public key (PEM). */
function verified(name: string, pem: string): string {
  const f = t.write(`${name}.cer.pem`, pem);
  const at = String(Math.floor(Math.max(clock.now().getTime(), Date.now()) / 1000) + 1);
  const v = openssl(["verify", "-x509_strict", "-partial_chain", "-vfyopt", distid, "-attime", at, "-CAfile", `${dataDir}/ca/issuing.cer.pem`, f]);
  assert.equal(v.status, 0, `${name}: ${v.out}`);
  assert.match(openssl(["x509", "-in", f, "-noout", "-text"]).out, /Signature Algorithm: SM2-with-SM3/);
  return openssl(["x509", "-in", f, "-noout", "-pubkey"]).out;
}

/**
 * Opens an ENVELOPEDKEYBLOB as docs/envelopes.md says, with OpenSSL alone: the signing key SM2-decrypts the SM4
 * key, SM4-ECB decrypts the private key. Returns the recovered private key (PEM file), checked by OpenSSL.
 */
function openEnvelope(name: string, envelope: Envelope, signingKey: string): string {
  assert.equal(envelope.format, "gmt0016-enveloped-key-blob");
  const blob = parseEnvelopedKeyBlob(Buffer.from(envelope.value, "base64"));
  const k = t.path(`${name}-sm4.bin`);
  const dec = openssl(["pkeyutl", "-decrypt", "-inkey", signingKey, "-in", t.write(`${name}-c.der`, sm2CipherDer(blob)), "-out", k]);
  assert.equal(dec.status, 0, `${name}: ${dec.out}`);
  const d = t.path(`${name}-d.bin`);
  const sm4 = openssl(["enc", "-d", "-sm4-ecb", "-nopad", "-K", readFileSync(k).toString("hex"), "-in", t.write(`${name}-ep.bin`, blob.encryptedPrivateKey), "-out", d]);
  assert.equal(sm4.status, 0, sm4.out);
  const key = t.write(`${name}-recovered.pem`, derToPem(sm2Pkcs8({ privateKey: readFileSync(d), publicKey: blob.publicKey }), "PRIVATE KEY"));
  const check = openssl(["pkey", "-in", key, "-check", "-noout"]);
  assert.equal(check.status, 0, check.out);
  return key;
}

/** Data encrypted to a certificate's public key (OpenSSL SM2 encrypt) and decrypted with `privateKey`. */
function readsDataFor(name: string, publicKeyPem: string, privateKey: string): boolean {
  const plain = t.write(`${name}-plain.txt`, `加密给 ${name} 的旧数据`);
  assert.equal(openssl(["pkeyutl", "-encrypt", "-pubin", "-inkey", t.write(`${name}-pub.pem`, publicKeyPem), "-in", plain, "-out", `${plain}.enc`]).status, 0);
  return openssl(["pkeyutl", "-decrypt", "-inkey", privateKey, "-in", `${plain}.enc`, "-out", `${plain}.dec`]).status === 0
    && readFileSync(`${plain}.dec`).equals(readFileSync(plain));
}

/** An operator's call of the admin API, with a session signed in just now (the test's clock moves a year). */
function admin(who: keyof typeof roles, method: "GET" | "POST", url: string, payload?: object) {
  const at = clock.now().getTime();
  const token = signSessionToken(sessionKey, { sub: who, role: roles[who], iat: at, exp: at + 3_600_000, amr: "pwd+otp" });
  return app.inject({ method, url: `/api/v1/admin${url}`, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
}

before(async () => {
  t = tempDir("ukey-sm2-recovery-");
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t, "sm2"));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")) as { profiles: unknown[]; kmc?: unknown };
  cfg.profiles.push({ id: "gm", preset: "gov-supervision" });
  cfg.kmc = { masterKey: { type: "file" } };
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  const kmcPassphrase = "the KMC's passphrase, not the CA's";
  mkdirSync(`${dataDir}/kmc`, { recursive: true, mode: 0o700 });
  await createKmcMasterKeyFile(`${dataDir}/kmc/master-key.json`, kmcPassphrase);
  ctx = await openServerContext(dataDir, { ...env, UKEY_KMC_PASSPHRASE_FILE: t.write("kmc-passphrase", `${kmcPassphrase}\n`) }, clock);
  app = await buildApp(ctx);
  api = OrderApi.of(app);
  await ctx.store.holders.insert({ id: "G1", kind: "person", name: "王五", idType: "resident-id", idHash: "a1".repeat(32), idMasked: "1101**********123X", phone: null, email: null, organisationId: null, createdAt: clock.now().getTime() });
  const operators = operatorServiceFor(ctx);
  sessionKey = readOrCreateKeyFile(raKeyFiles(ctx.layout).sessionHmac);
  for (const [id, role] of Object.entries(roles)) await operators.create({ id, role, password: `${id} has a long passphrase`, actor: "test" });
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

test("an SM2 pair issued, renewed, recovered under dual control onto a re-initialised key, and every envelope opened by OpenSSL", async () => {
  // 1. Issued by a two-code download onto key A.
  const a = sm2Key("A");
  const e1 = await ctx.enrolments.create({ holderId: "G1", profileId: "gm", actor: "operator:olga" });
  const r1 = await app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber: e1.referenceNumber, authorizationCode: e1.authorizationCode, csr: readFileSync(a.csr, "utf8") } });
  assert.equal(r1.statusCode, 201, r1.body);
  const first = r1.json<DownloadAnswer>();
  assert.equal(first.recoveredKeys, undefined, "an ordinary download carries no recovered keys");
  const enc1Pub = verified("enc1", first.encryptionCertificate.pem);
  verified("sig1", first.pem);
  assert.equal(openssl(["pkey", "-in", openEnvelope("env1", first.envelope, a.key), "-pubout"]).out, enc1Pub);

  // 2. Renewed through the order API onto key B: a new pair, both old certificates superseded together.
  clock.set(new Date(Date.parse(first.notAfter) - 30 * day));
  const started = await api.start(first.certId);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = started.body.id;
  const msg = t.write("pop.msg", possessionMessage(id, started.body.challenge.value));
  assert.equal(openssl(["dgst", "-sm3", "-sign", a.key, "-sigopt", distid, "-out", `${msg}.sig`, msg]).status, 0);
  const proved = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: started.body.challenge.value, signature: readFileSync(`${msg}.sig`).toString("base64") });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  const b = sm2Key("B");
  const issued = await api.call<{ newCertificate: Cert; encryptionCertificate: Cert; envelope: Envelope }>("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(b.csr, "utf8") });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  const second = issued.body;
  const enc2Pub = verified("enc2", second.encryptionCertificate.pem);
  verified("sig2", second.newCertificate.pem);
  assert.equal(openssl(["pkey", "-in", openEnvelope("env2", second.envelope, b.key), "-pubout"]).out, enc2Pub);
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed");
  for (const serial of [first.serial, first.encryptionCertificate.serial]) assert.equal((await ctx.store.certificates.get(serial))?.status, "superseded", serial);

  // 3. The UKey is re-initialised: keys A and B (and the encryption keys installed with them) are gone.
  rmSync(a.key);
  rmSync(b.key);
  const c = sm2Key("C");

  // 4. Recovery under dual control: one operator alone cannot release it, nor the same operator twice; an auditor can.
  const opened = await admin("olga", "POST", "/kmc-recoveries", { holderId: "G1", profileId: "gm", reason: "UKey 重新初始化，旧加密数据需要读取" });
  assert.equal(opened.statusCode, 201, opened.body);
  const rec = opened.json<{ id: string; escrowIds: string[] }>();
  assert.equal(rec.escrowIds.length, 2, "both escrowed encryption keys of the holder");
  for (let i = 0; i < 2; i++) {
    const own = await admin("olga", "POST", `/kmc-recoveries/${rec.id}/approve`);
    assert.equal(own.statusCode, 403, own.body);
    assert.equal(own.json<{ code: string }>().code, "KMC_RECOVERY_SAME_PERSON");
  }
  assert.equal((await ctx.store.kmcRecoveries.get(rec.id))?.status, "pending", "refusals change nothing");
  const approved = await admin("audrey", "POST", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(approved.statusCode, 200, approved.body);
  const { referenceNumber, authorizationCode } = approved.json<{ referenceNumber: string; authorizationCode: string }>();
  const twice = await admin("otto", "POST", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(twice.json<{ code: string }>().code, "KMC_RECOVERY_NOT_PENDING", "approved once");

  // 5. The two codes download a new pair onto key C, with both old encryption keys enveloped for C.
  const download = (csr: string) => app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber, authorizationCode, csr: readFileSync(csr, "utf8") } });
  const r3 = await download(c.csr);
  assert.equal(r3.statusCode, 201, r3.body);
  const third = r3.json<DownloadAnswer>();
  verified("sig3", third.pem);
  const enc3Pub = verified("enc3", third.encryptionCertificate.pem);
  const enc3Key = openEnvelope("env3", third.envelope, c.key);
  assert.equal(openssl(["pkey", "-in", enc3Key, "-pubout"]).out, enc3Pub, "the new envelope opens to the new encryption certificate's key");
  assert.ok(readsDataFor("enc3", enc3Pub, enc3Key));
  const recovered = third.recoveredKeys ?? [];
  assert.deepEqual(recovered.map((k) => k.escrowId), rec.escrowIds);
  assert.deepEqual(recovered.map((k) => k.certificate?.serial), [first.encryptionCertificate.serial, second.encryptionCertificate.serial],
    "each recovered key names the old encryption certificate that certifies it");
  for (const [i, [k, oldPub]] of recovered.map((k, j) => [k, [enc1Pub, enc2Pub][j]!] as const).entries()) {
    assert.equal(k.certificate?.pem, [first.encryptionCertificate.pem, second.encryptionCertificate.pem][i]);
    verified(`old-enc${i + 1}`, k.certificate!.pem);
    const key = openEnvelope(`recovered${i + 1}`, k.envelope, c.key);
    assert.equal(openssl(["pkey", "-in", key, "-pubout"]).out, oldPub, "the recovered key is the old encryption certificate's");
    assert.equal(derToPem(Buffer.from(k.spki, "base64"), "PUBLIC KEY"), oldPub);
    assert.ok(readsDataFor(`old${i + 1}`, oldPub, key), "data encrypted to the old certificate is readable again");
    assert.notEqual(openssl(["pkey", "-in", key, "-pubout"]).out, enc3Pub);
  }

  // The answer lost: the same codes and key C get the same certificates and the same keys again; key D gets nothing.
  const again = await download(c.csr);
  assert.equal(again.statusCode, 201, again.body);
  const againBody = again.json<DownloadAnswer>();
  assert.equal(againBody.serial, third.serial);
  assert.deepEqual(againBody.recoveredKeys?.map((k) => [k.escrowId, k.certificate?.serial]), recovered.map((k) => [k.escrowId, k.certificate?.serial]));
  assert.equal(openssl(["pkey", "-in", openEnvelope("again1", againBody.recoveredKeys![0]!.envelope, c.key), "-pubout"]).out, enc1Pub);
  const d = sm2Key("D");
  const other = await download(d.csr);
  assert.equal(other.statusCode, 409, other.body);
  assert.equal(other.json<{ code: string }>().code, "KMC_RECOVERY_OTHER_KEY");
  const escrowsAfter = (await ctx.store.kmcEscrows.listByHolder("G1")).length;
  assert.equal(escrowsAfter, 3, "one escrow per pair; the refused key made none");

  const audit = (await ctx.store.audit.list(0, 100_000)).filter((e) => e.subjectId === rec.id).map((e) => [e.action, e.actor, (e.data as { again?: boolean; reason?: string }).again ?? (e.data as { reason?: string }).reason ?? null]);
  assert.deepEqual(audit, [
    ["kmc.recovery-requested", "operator:olga", "UKey 重新初始化，旧加密数据需要读取"],
    ["kmc.recovery-refused", "operator:olga", "same-person"],
    ["kmc.recovery-refused", "operator:olga", "same-person"],
    ["kmc.recovery-approved", "operator:audrey", null],
    ["kmc.recovery-refused", "operator:otto", "not-pending-released"],
    ["kmc.recovery-delivered", "holder", false],
    ["kmc.recovery-delivered", "holder", true],
    ["kmc.recovery-refused", "holder", "delivered-to-another-key"],
  ]);
  assert.equal((await ctx.store.audit.verify()).ok, true);
});

/** The DER SubjectPublicKeyInfo of an OpenSSL key file. */
function spkiDer(key: string): Buffer {
  const out = `${key}.spki.der`;
  assert.equal(openssl(["pkey", "-in", key, "-pubout", "-outform", "DER", "-out", out]).status, 0);
  return readFileSync(out);
}

let proofs = 0;
/** A recipient key's proof for a download's CSR, signed by `signer` (SM3withSM2, standard ID) with OpenSSL. */
function recipientProof(csr: string, signer: string, spkiOf: string = signer): { spki: string; signature: string } {
  const msg = t.write(`proof-${++proofs}.msg`, Buffer.from(recipientProofMessage(verifyCsr(readFileSync(csr, "utf8")).der, (b) => createHash("sha256").update(b).digest())));
  assert.equal(openssl(["dgst", "-sm3", "-sign", signer, "-sigopt", distid, "-out", `${msg}.sig`, msg]).status, 0);
  return { spki: spkiDer(spkiOf).toString("base64"), signature: readFileSync(`${msg}.sig`).toString("base64") };
}

test("recovered keys enveloped each for its own recipient key (one SKF container each), only when each proves possession over this CSR", async () => {
  await ctx.store.holders.insert({ id: "G2", kind: "person", name: "赵六", idType: "resident-id", idHash: "b2".repeat(32), idMasked: "1101**********456X", phone: null, email: null, organisationId: null, createdAt: clock.now().getTime() });
  const a = sm2Key("G2-A");
  const e1 = await ctx.enrolments.create({ holderId: "G2", profileId: "gm", actor: "operator:olga" });
  const r1 = await app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber: e1.referenceNumber, authorizationCode: e1.authorizationCode, csr: readFileSync(a.csr, "utf8") } });
  assert.equal(r1.statusCode, 201, r1.body);
  const oldPub = verified("G2-enc1", r1.json<DownloadAnswer>().encryptionCertificate.pem);

  const opened = await admin("olga", "POST", "/kmc-recoveries", { holderId: "G2", profileId: "gm", reason: "UKey 丢失，补办后读取旧加密数据" });
  assert.equal(opened.statusCode, 201, opened.body);
  const rec = opened.json<{ id: string; escrowIds: string[] }>();
  assert.equal(rec.escrowIds.length, 1);
  const approved = await admin("audrey", "POST", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(approved.statusCode, 200, approved.body);
  const { referenceNumber, authorizationCode } = approved.json<{ referenceNumber: string; authorizationCode: string }>();
  const codes = { referenceNumber, authorizationCode };

  // The preview tells the agent how many recipient keys to make; an ordinary enrolment's tells 0.
  const check = await app.inject({ method: "POST", url: "/api/v1/downloads/check", payload: codes });
  assert.equal(check.statusCode, 200, check.body);
  assert.equal(check.json<{ recoveredKeys: number }>().recoveredKeys, 1);
  const plain = await ctx.enrolments.create({ holderId: "G2", profileId: "gm", actor: "operator:olga" });
  assert.equal((await app.inject({ method: "POST", url: "/api/v1/downloads/check", payload: { referenceNumber: plain.referenceNumber, authorizationCode: plain.authorizationCode } })).json<{ recoveredKeys: number }>().recoveredKeys, 0);

  const c = sm2Key("G2-C");
  const r = sm2Key("G2-R");
  const other = sm2Key("G2-X");
  const download = (recipients: unknown) => app.inject({ method: "POST", url: "/api/v1/downloads", payload: { ...codes, csr: readFileSync(c.csr, "utf8"), recoveredKeyRecipients: recipients } });

  // Refused, each with its code, and nothing spent or bound: no recipient for the one key; a recipient key whose
  // signature was made by another key (someone else's public key); a signature over another CSR; the signing key
  // itself as recipient; two recipients for one key.
  const refusals: Array<[string, unknown]> = [
    ["none", []],
    ["another key's signature", [recipientProof(c.csr, other.key, r.key)]],
    ["over another CSR", [recipientProof(other.csr, r.key)]],
    ["the signing key", [recipientProof(c.csr, c.key)]],
    ["two", [recipientProof(c.csr, r.key), recipientProof(c.csr, other.key)]],
  ];
  for (const [what, recipients] of refusals) {
    const refused = await download(recipients);
    assert.equal(refused.statusCode, 400, `${what}: ${refused.body}`);
    assert.equal(refused.json<{ code: string }>().code, "KMC_RECOVERY_RECIPIENT_INVALID", what);
  }
  assert.equal((await ctx.store.kmcRecoveries.get(rec.id))?.status, "released", "the refusals neither spent the codes nor bound the recovery");
  const malformed = await download([{ spki: spkiDer(r.key).toString("base64") }]);
  assert.equal(malformed.statusCode, 400, malformed.body);

  const good = await download([recipientProof(c.csr, r.key)]);
  assert.equal(good.statusCode, 201, good.body);
  const answer = good.json<DownloadAnswer & { recoveredKeys: Array<{ recipientSpki?: string }> }>();
  const k = answer.recoveredKeys[0]!;
  assert.equal(k.recipientSpki, spkiDer(r.key).toString("base64"), "the answer names the recipient the envelope is for");
  const key = openEnvelope("G2-recovered", k.envelope, r.key);
  assert.equal(openssl(["pkey", "-in", key, "-pubout"]).out, oldPub, "the recipient key opens the old encryption key");
  assert.ok(readsDataFor("G2-old", oldPub, key));
  const blob = parseEnvelopedKeyBlob(Buffer.from(k.envelope.value, "base64"));
  const byC = openssl(["pkeyutl", "-decrypt", "-inkey", c.key, "-in", t.write("G2-c.der", sm2CipherDer(blob)), "-out", t.path("G2-c.bin")]);
  assert.notEqual(byC.status, 0, "the signing key does not open an envelope made for a recipient key");
  // The pair's own encryption key still comes enveloped for the signing key.
  openEnvelope("G2-enc2", answer.envelope, c.key);

  // The answer lost: the same signing key, with a fresh recipient key (the agent made a new container), gets them again.
  const r2 = sm2Key("G2-R2");
  const again = await download([recipientProof(c.csr, r2.key)]);
  assert.equal(again.statusCode, 201, again.body);
  assert.equal(again.json<DownloadAnswer>().serial, answer.serial);
  assert.equal(openssl(["pkey", "-in", openEnvelope("G2-again", again.json<DownloadAnswer>().recoveredKeys![0]!.envelope, r2.key), "-pubout"]).out, oldPub);

  const delivered = (await ctx.store.audit.list(0, 100_000)).filter((e) => e.subjectId === rec.id && e.action === "kmc.recovery-delivered")
    .map((e) => (e.data as { recipientSpkiSha256?: string[] }).recipientSpkiSha256?.length);
  assert.deepEqual(delivered, [1, 1], "each delivery records the recipient keys it enveloped for");
  assert.equal((await ctx.store.audit.verify()).ok, true);
});
