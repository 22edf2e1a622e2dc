import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { derToPem, parseEnvelopedKeyBlob, parseSm2EnvelopedKey, sm2CipherDer, sm2EnvelopedKeyFromBlob, sm2Pkcs8 } from "@ukey/ca";
import { isUkeyError } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { possessionMessage } from "../src/renewal/possession.js";
import { OrderApi } from "./support/order-api.js";
import { IssuanceService } from "../src/issuance-service.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 13: SM2 signing + encryption certificate pairs (preset gov-supervision, seed 004) end to end, with a
// software client standing in for the agent: its SM2 signing keys, CSRs and proofs are made by the OpenSSL CLI
// with distid:1234567812345678; it receives the pair and the GM/T 0016 envelope, opens the envelope with its
// own key by the OpenSSL CLI (SM2 decrypt, SM4-ECB), and checks that the recovered key is the encryption
// certificate's. Every certificate is verified by OpenSSL with the explicit distid.
const day = 86_400_000;
const distid = "distid:1234567812345678";
let t: TempDir;
let ctx: ServerContext | undefined;
let app: FastifyInstance;
let dataDir: string;
let env: Record<string, string>;
let api: OrderApi;
const clock = fixedClock(new Date());

function sm2Csr(name: string, subject = "/"): { csr: string; key: string } {
  const key = t.path(`${name}.key.pem`);
  const csr = t.path(`${name}.csr.pem`);
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", key]).status, 0);
  const r = openssl(["req", "-new", "-key", key, "-sm3", "-sigopt", distid, "-subj", subject, "-out", csr]);
  assert.equal(r.status, 0, r.out);
  return { csr, key };
}

function sm2Possession(orderId: string, challenge: string, keyFile: string): string {
  const msg = t.write(`pop-${orderId}-${challenge.slice(0, 8)}.msg`, possessionMessage(orderId, challenge));
  const r = openssl(["dgst", "-sm3", "-sign", keyFile, "-sigopt", distid, "-out", `${msg}.sig`, msg]);
  assert.equal(r.status, 0, r.out);
  return readFileSync(`${msg}.sig`).toString("base64");
}

interface PairAnswer {
  pem: string;
  serial: string;
  encryptionCertificate?: { serial: string; pem: string; certId: string };
  envelope?: { format: string; value: string };
}

/**
 * What the test agent checks of a delivered pair: both certificates verify under the issuing CA (openssl,
 * distid), their key usages, and the envelope opened by openssl with `signingKey` gives the private key of the
 * encryption certificate. Returns the recovered key's PEM file.
 */
function checkPair(name: string, got: PairAnswer, signingKey: string): string {
  // The download's certificates start with the CA made moments ago (after the test's clock was fixed).
  const at = String(Math.floor(Math.max(clock.now().getTime(), Date.now()) / 1000) + 1);
  const enc = got.encryptionCertificate;
  assert.ok(enc, "the encryption certificate is delivered");
  assert.equal(got.envelope?.format, "gmt0016-enveloped-key-blob");
  const files = { signing: t.write(`${name}-sig.pem`, got.pem), encryption: t.write(`${name}-enc.pem`, enc.pem) };
  for (const f of Object.values(files)) {
    const v = openssl(["verify", "-x509_strict", "-partial_chain", "-vfyopt", distid, "-attime", at, "-CAfile", `${dataDir}/ca/issuing.cer.pem`, f]);
    assert.equal(v.status, 0, v.out);
  }
  const sigText = openssl(["x509", "-in", files.signing, "-noout", "-text"]).out;
  const encText = openssl(["x509", "-in", files.encryption, "-noout", "-text"]).out;
  assert.match(sigText, /Signature Algorithm: SM2-with-SM3/);
  assert.match(sigText, /X509v3 Key Usage: critical\s+Digital Signature\n/);
  assert.match(encText, /X509v3 Key Usage: critical\s+Data Encipherment, Key Agreement\n/);
  assert.doesNotMatch(encText, /Extended Key Usage/);
  const subject = (f: string) => openssl(["x509", "-in", f, "-noout", "-subject"]).out;
  assert.equal(subject(files.encryption), subject(files.signing), "both certify the same holder");
  // The signing certificate certifies the CSR's key; the encryption one another key (the KMC's).
  const pub = (args: string[]) => openssl(args).out;
  const signingPub = pub(["pkey", "-in", signingKey, "-pubout"]);
  assert.equal(pub(["x509", "-in", files.signing, "-noout", "-pubkey"]), signingPub);
  const encPub = pub(["x509", "-in", files.encryption, "-noout", "-pubkey"]);
  assert.notEqual(encPub, signingPub);

  // Open the envelope as docs/envelopes.md says: SM2-decrypt the SM4 key with the signing key, SM4-ECB the private key.
  const blob = parseEnvelopedKeyBlob(Buffer.from(got.envelope!.value, "base64"));
  const k = t.path(`${name}-k.bin`);
  const dec = openssl(["pkeyutl", "-decrypt", "-inkey", signingKey, "-in", t.write(`${name}-c.der`, sm2CipherDer(blob)), "-out", k]);
  assert.equal(dec.status, 0, dec.out);
  const d = t.path(`${name}-d.bin`);
  assert.equal(openssl(["enc", "-d", "-sm4-ecb", "-nopad", "-K", readFileSync(k).toString("hex"), "-in", t.write(`${name}-ep.bin`, blob.encryptedPrivateKey), "-out", d]).status, 0);
  const recovered = t.write(`${name}-recovered.pem`, derToPem(sm2Pkcs8({ privateKey: readFileSync(d), publicKey: blob.publicKey }), "PRIVATE KEY"));
  const check = openssl(["pkey", "-in", recovered, "-check", "-noout"]);
  assert.equal(check.status, 0, check.out);
  assert.equal(pub(["pkey", "-in", recovered, "-pubout"]), encPub, "the recovered private key is the encryption certificate's");
  // And it decrypts what is encrypted to the encryption certificate (openssl SM2 encrypt, then decrypt).
  const secret = t.write(`${name}-secret.txt`, "只有加密证书的持有人能读 / only the encryption key holder reads this");
  const encPubFile = t.write(`${name}-enc-pub.pem`, encPub);
  assert.equal(openssl(["pkeyutl", "-encrypt", "-pubin", "-inkey", encPubFile, "-in", secret, "-out", `${secret}.enc`]).status, 0);
  assert.equal(openssl(["pkeyutl", "-decrypt", "-inkey", recovered, "-in", `${secret}.enc`, "-out", `${secret}.dec`]).status, 0);
  assert.deepEqual(readFileSync(`${secret}.dec`), readFileSync(secret));
  // Another key cannot open the envelope.
  const other = sm2Csr(`${name}-other`);
  assert.notEqual(openssl(["pkeyutl", "-decrypt", "-inkey", other.key, "-in", t.path(`${name}-c.der`), "-out", t.path(`${name}-k2.bin`)]).status, 0);
  return recovered;
}

function writeConfig(change: (cfg: Record<string, unknown>) => void): void {
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")) as Record<string, unknown>;
  change(cfg);
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
}

function startRefusal(extraEnv: Record<string, string>): { code: string; message: { "zh-CN": string; en: string } } {
  const r = runUkeyServer(["start", "--data-dir", dataDir, "--port", "0", "--json"], { ...env, ...extraEnv });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  return (JSON.parse(r.stdout.trim().split("\n").pop()!) as { error: { code: string; message: { "zh-CN": string; en: string } } }).error;
}

let kmcEnv: Record<string, string>;

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t, "sm2"));
  kmcEnv = { UKEY_KMC_PASSPHRASE_FILE: t.write("kmc-passphrase", "a separate kmc passphrase\n") };
  writeConfig((cfg) => { (cfg.profiles as unknown[]).push({ id: "gm", preset: "gov-supervision" }); });
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

test("a pair profile without a KMC, or with a wrong KMC passphrase, refuses the start with its code and changes nothing", () => {
  const noKmc = startRefusal({});
  assert.equal(noKmc.code, "KMC_REQUIRED");
  assert.match(noKmc.message["zh-CN"], /gm/);
  // kmc init works with the pair profile configured (it makes what the start needs).
  const init = runUkeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], { ...env, ...kmcEnv });
  assert.equal(init.status, 0, init.stdout + init.stderr);
  writeConfig((cfg) => { cfg.kmc = { masterKey: { type: "file" } }; });
  const before = readFileSync(`${dataDir}/kmc/master-key.json`);
  assert.equal(startRefusal({ UKEY_KMC_PASSPHRASE_FILE: t.write("wrong-kmc", "not the kmc passphrase\n") }).code, "KMC_PASSPHRASE_WRONG");
  assert.equal(startRefusal({}).code, "SECRET_FILE_REQUIRED");
  assert.deepEqual(readFileSync(`${dataDir}/kmc/master-key.json`), before, "the master key file is untouched");
  // An RSA pair with the SM2 pair's key usages (keyAgreement) is refused at load with its own code.
  writeConfig((cfg) => { (cfg.profiles as unknown[]).push({ id: "rsa-pair", preset: "gov-supervision", keyAlgorithms: ["rsa2048"] }); });
  assert.equal(startRefusal(kmcEnv).code, "PROFILE_PAIR_ALGORITHM_UNSUPPORTED");
  writeConfig((cfg) => { cfg.profiles = (cfg.profiles as Array<{ id: string }>).filter((p) => p.id !== "rsa-pair"); });
});

test("counter issuance of a pair (ukey-server issue): both certificates and the envelope, which opens with the CSR's key", () => {
  assert.equal(addHolder(t, dataDir, { ...env, ...kmcEnv }, "S1").status, 0);
  const k = sm2Csr("counter");
  const files = { encryption: t.path("counter-enc.pem"), envelope: t.path("counter.env") };
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "S1", "--profile", "gm", "--csr", k.csr, "--encryption-out", files.encryption, "--envelope-out", files.envelope, "--json"], { ...env, ...kmcEnv });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.json<PairAnswer>();
  assert.equal(readFileSync(files.encryption, "utf8"), out.encryptionCertificate!.pem);
  assert.equal(readFileSync(files.envelope).toString("base64"), out.envelope!.value);
  checkPair("counter", out, k.key);
});

let lastEnvelope = "";
let first: { serial: string; certId: string; encryptionSerial: string; key: string; notAfter: number };

test("a two-code download of a pair: both certificates and the envelope; bad keys refused and nothing changed", async () => {
  ctx = await openServerContext(dataDir, { ...env, ...kmcEnv }, clock);
  app = await buildApp(ctx);
  api = OrderApi.of(app);
  const e = await ctx.enrolments.create({ holderId: "S1", profileId: "gm", actor: "operator:test" });
  const download = (csr: string) => app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr } });
  const escrowsBefore = (await ctx.store.kmcEscrows.listByHolder("S1")).length;
  // A P-256 or RSA key for the SM2 pair profile: refused before the KMC makes anything, the code still unused.
  for (const [name, args] of [["p256", keyArgs.p256], ["rsa", keyArgs.rsa2048]] as const) {
    const c = opensslCsr(t, `dl-${name}`, args, "/");
    const r = await download(readFileSync(c.csr, "utf8"));
    assert.equal(r.statusCode, 400, r.body);
    assert.equal(r.json().code, "KEY_ALGORITHM_NOT_ALLOWED");
  }
  assert.equal((await ctx.store.kmcEscrows.listByHolder("S1")).length, escrowsBefore, "no escrow for a refused request");
  // And the reverse: an SM2 key for a profile of RSA and ECDSA keys ("personal"), its code left unused.
  const rsaProfile = await ctx.enrolments.create({ holderId: "S1", profileId: "personal", actor: "operator:test" });
  const sm2ForRsa = await app.inject({ method: "POST", url: "/api/v1/downloads", payload: { referenceNumber: rsaProfile.referenceNumber, authorizationCode: rsaProfile.authorizationCode, csr: readFileSync(sm2Csr("sm2-for-rsa").csr, "utf8") } });
  assert.equal(sm2ForRsa.json().code, "KEY_ALGORITHM_NOT_ALLOWED", sm2ForRsa.body);
  assert.equal((await ctx.store.enrolments.getByReference(rsaProfile.referenceNumber))?.status, "open");
  const k = sm2Csr("dl");
  const r = await download(readFileSync(k.csr, "utf8"));
  assert.equal(r.statusCode, 201, r.body);
  const body = r.json<PairAnswer & { certId: string; notAfter: string }>();
  checkPair("dl", body, k.key);
  lastEnvelope = body.envelope!.value;
  const pair = await ctx.store.certificatePairs.getBySigning(body.serial);
  assert.equal(pair?.encryptionSerial, body.encryptionCertificate!.serial);
  const escrow = await ctx.store.kmcEscrows.get(pair!.escrowId);
  assert.equal(escrow?.holderId, "S1");
  const encRec = await ctx.store.certificates.get(pair!.encryptionSerial);
  assert.equal(encRec?.status, "active");
  assert.equal((await ctx.store.enrolments.getByReference(e.referenceNumber))?.status, "used");
  // The answer lost: the same codes and the same key get the same pair, the escrowed key enveloped again for that key.
  const again = await download(readFileSync(k.csr, "utf8"));
  assert.equal(again.statusCode, 201, again.body);
  const againBody = again.json<PairAnswer>();
  assert.equal(againBody.serial, body.serial);
  assert.equal(againBody.encryptionCertificate?.serial, body.encryptionCertificate!.serial);
  checkPair("dl-again", againBody, k.key);
  assert.ok((await ctx.store.audit.list(0, 10_000)).some((a) => a.action === "kmc.re-enveloped" && a.subjectId === pair!.escrowId));
  const otherKey = sm2Csr("dl-other");
  assert.equal((await download(readFileSync(otherKey.csr, "utf8"))).json().code, "CODE_ALREADY_USED", "another key gets nothing");
  assert.equal((await ctx.store.kmcEscrows.listByHolder("S1")).length, escrowsBefore + 1, "one escrow for the download, however often it is asked");
  first = { serial: body.serial, certId: body.certId, encryptionSerial: pair!.encryptionSerial, key: k.key, notAfter: Date.parse(body.notAfter) };
  assert.equal((await ctx.store.audit.verify()).ok, true);
});

test("renewing a pair through the order API issues a new pair and supersedes both old certificates; the old encryption key stays escrowed", async () => {
  assert.ok(ctx && first);
  clock.set(new Date(first.notAfter - 30 * day));
  const started = await api.start(first.certId);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = started.body.id;
  const proved = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: started.body.challenge.value, signature: sm2Possession(id, started.body.challenge.value, first.key) });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));

  // Bad keys: refused with their codes; the order and the escrows stay as they were.
  const escrows = (await ctx.store.kmcEscrows.listByHolder("S1")).length;
  const ec = opensslCsr(t, "renew-ec", keyArgs.p256, "/");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(ec.csr, "utf8") })).body.code, "KEY_ALGORITHM_NOT_ALLOWED");
  const truncated = await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(sm2Csr("tr").csr, "utf8").slice(0, 200) });
  assert.equal(truncated.status, 400);
  assert.equal(truncated.body.code, "CSR_MALFORMED");
  assert.equal((await api.call("GET", `/api/v1/orders/${id}`)).body.state, "verified", "refusals change nothing");
  assert.equal((await ctx.store.kmcEscrows.listByHolder("S1")).length, escrows);

  const k = sm2Csr("renew");
  const issued = await api.call<PairAnswer & { state: string; newCertificate: PairAnswer }>("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(k.csr, "utf8"), tokenSerial: "PF20FA0001" });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  assert.equal(issued.body.state, "issued");
  const answer = { ...issued.body.newCertificate, encryptionCertificate: issued.body.encryptionCertificate, envelope: issued.body.envelope };
  checkPair("renew", answer, k.key);
  // Asked again (the agent lost the answer), the same pair and envelope.
  const again = await api.call<PairAnswer & { newCertificate: PairAnswer }>("GET", `/api/v1/orders/${id}`);
  assert.equal(again.body.encryptionCertificate?.serial, issued.body.encryptionCertificate?.serial);
  assert.equal(again.body.envelope?.value, issued.body.envelope?.value);

  assert.equal((await api.call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed");
  for (const serial of [first.serial, first.encryptionSerial]) {
    const rec = await ctx.store.certificates.get(serial);
    assert.equal(rec?.status, "superseded", serial);
    assert.equal(rec?.revocationReason, "superseded");
  }
  const newPair = await ctx.store.certificatePairs.getBySigning(issued.body.newCertificate.serial);
  assert.equal(newPair?.encryptionSerial, issued.body.encryptionCertificate!.serial);
  const oldPair = await ctx.store.certificatePairs.getBySigning(first.serial);
  assert.ok(await ctx.store.kmcEscrows.get(oldPair!.escrowId), "the old encryption key stays escrowed");
  assert.equal((await ctx.store.kmcEscrows.listByHolder("S1")).length, escrows + 1);
  const audit = (await ctx.store.audit.list(0, 10_000)).map((a) => `${a.action} ${a.subjectId}`);
  assert.ok(audit.includes(`kmc.escrowed ${newPair!.escrowId}`));
  assert.ok(audit.includes(`certificate.superseded ${first.encryptionSerial}`));
  assert.equal((await ctx.store.audit.verify()).ok, true);
});

test("the OpenAPI document names both certificates and the envelope's format; a corrupt or truncated envelope is refused with ENVELOPE_MALFORMED", async () => {
  const doc = (await app.inject({ method: "GET", url: "/api/v1/openapi.json" })).json<{ paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { schema: { properties: Record<string, { properties?: Record<string, { enum?: string[] }> }> } }> }> }>> }>();
  for (const [path, method, status] of [["/api/v1/downloads", "post", "201"], ["/api/v1/orders/{id}/csr", "post", "200"], ["/api/v1/orders/{id}", "get", "200"]] as const) {
    const schema = doc.paths[path]![method]!.responses[status]!.content["application/json"]!.schema;
    assert.deepEqual(schema.properties.envelope!.properties!.format!.enum, ["gmt0016-enveloped-key-blob", "cms-enveloped-data-v2", "cms-enveloped-data"], path);
    assert.ok(schema.properties.encryptionCertificate!.properties!.pem, path);
  }
  // What the agent does with a damaged envelope (issue 15 installs it): a catalogue error, never a wrong key.
  const good = parseEnvelopedKeyBlob(Buffer.from(lastEnvelope, "base64"));
  assert.equal(good.publicKey.length, 65);
  for (const bad of [Buffer.from(lastEnvelope, "base64").subarray(0, 200), Buffer.alloc(388), Buffer.concat([Buffer.from(lastEnvelope, "base64"), Buffer.from([0])])]) {
    assert.throws(() => parseEnvelopedKeyBlob(bad), (e: unknown) => isUkeyError(e, "ENVELOPE_MALFORMED"));
  }
  const asn1 = sm2EnvelopedKeyFromBlob(Buffer.from(lastEnvelope, "base64"));
  assert.throws(() => parseSm2EnvelopedKey(asn1.subarray(0, asn1.length - 5)), (e: unknown) => isUkeyError(e, "ENVELOPE_MALFORMED", "DER_MALFORMED"));
});

test("a pair whose second signature fails is abandoned whole: neither certificate, no pair record; the escrow stays, never delivered", async () => {
  assert.ok(ctx);
  const failing = Object.create(ctx.ca) as typeof ctx.ca;
  let calls = 0;
  failing.signTbs = async (tbs: Buffer) => {
    if (++calls === 2) throw new Error("token pulled");
    return ctx!.ca.signTbs(tbs);
  };
  const svc = new IssuanceService({ store: ctx.store, ca: failing, clock, institution: ctx.config.institution });
  const k = sm2Csr("fail");
  const csr = ctx.ca.verifyCsr(readFileSync(k.csr, "utf8"));
  const kmc = ctx.kmc!.kmc;
  const prepared = await kmc.prepareEncryptionKey({ holderId: "S1", holderSigningSpki: csr.spki, actor: "test" });
  await assert.rejects(svc.issuePair({
    holderId: "S1", profileId: "gm", csr, actor: "test", encryption: { spki: prepared.spki, escrowId: prepared.escrowId },
    onIntent: async (r) => { await kmc.recordIn(r, prepared, clock.now().getTime()); return undefined; },
  }), (e: unknown) => isUkeyError(e, "HSM_OPERATION_FAILED"));
  assert.equal(calls, 2);
  const abandoned = await ctx.store.certificates.search({ holderId: "S1", status: "abandoned" });
  assert.equal(abandoned.length, 2, "both intents abandoned");
  for (const c of abandoned) assert.equal(await ctx.store.certificatePairs.getBySigning(c.serial), undefined);
  assert.equal((await ctx.store.certificates.search({ holderId: "S1", status: "pending" })).length, 0);
  assert.ok(await ctx.store.kmcEscrows.get(prepared.escrowId), "the escrow committed with the intents stays (its key certified by nothing)");
  // Without the encryption key a pair profile issues nothing.
  await assert.rejects(ctx.issuance.issue({ holderId: "S1", profileId: "gm", csr, actor: "test" }), (e: unknown) => isUkeyError(e, "REQUEST_INVALID"));
  assert.equal((await ctx.store.audit.verify()).ok, true);
});
