import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { ContentInfo, SignedData } from "@peculiar/asn1-cms";
import { AsnConvert } from "@peculiar/asn1-schema";
import { systemClock, type UkeyError } from "@ukey/policy";
import { enrolmentServiceFor } from "../src/enrolment-service.js";
import { decodeEstBase64, certsOnlyPkcs7, csrAttributes, encodeEstBase64, requestedSans } from "../src/est/est-encoding.js";
import { EstService, profileKeyAlgorithms } from "../src/est/est-service.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, tempDir, type TempDir } from "./support/fixtures.js";

// EstService against a real context (embedded database, real CA), for what
// a TLS client cannot easily stage: races, revoked and altered client
// certificates, profiles without EST. The HTTP side is in est.test.ts.
const day = 86_400_000;
let t: TempDir;
let ctx: ServerContext;
let est: EstService;

function csr(subject: string, extra: string[] = []): Buffer {
  return execFileSync("openssl", ["req", "-new", ...keyArgs.p256, "-nodes", "-keyout", t.path(`k-${Math.random()}.pem`), "-subj", subject, "-outform", "DER", ...extra], { stdio: ["ignore", "pipe", "pipe"] });
}

async function issue(holderId: string, profileId: string, daysLeft: number) {
  const key = t.path(`${holderId}-${Math.random()}.key.pem`);
  const req = execFileSync("openssl", ["req", "-new", ...keyArgs.p256, "-nodes", "-keyout", key, "-subj", "/CN=x", "-outform", "DER"], { stdio: ["ignore", "pipe", "pipe"] });
  const c = await ctx.issuance.issue({ holderId, profileId, csr: req, actor: "test", notAfter: new Date(Date.now() + daysLeft * day) });
  return { record: c, der: c.der!, key };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as UkeyError).code;
  }
  return "no refusal";
}

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gateway", preset: "securities-gateway", certificateKind: "hardware" }, { id: "ukey", preset: "bank-personal-ukey" });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  for (const id of ["R1", "R2", "R3", "R4"]) assert.equal(addHolder(t, dataDir, env, id, ["--email", `${id.toLowerCase()}@example.com`]).status, 0);
  ctx = await openServerContext(dataDir, env, systemClock);
  est = new EstService({
    store: ctx.store, issuance: ctx.issuance, orders: ctx.orders, enrolments: enrolmentServiceFor(ctx), clock: ctx.clock,
    institution: ctx.config.institution, caCertificates: [ctx.ca.issuing.der, ctx.ca.root.der], keyAlgorithms: profileKeyAlgorithms(ctx.config.profiles),
  });
});

after(async () => {
  await ctx?.close();
  t?.cleanup();
});

test("two simpleenrolls with one code at once: one certificate, the other told the code is used", async () => {
  const e = await enrolmentServiceFor(ctx).create({ holderId: "R1", profileId: "gateway", actor: "test" });
  const creds = { referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode };
  const results = await Promise.allSettled([est.enroll(creds, csr("/")), est.enroll(creds, csr("/"))]);
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  assert.equal(won.length, 1);
  assert.equal((lost[0]?.reason as UkeyError).code, "CODE_ALREADY_USED");
  const issued = await ctx.store.certificates.search({ holderId: "R1" });
  // The loser's certificate, if it was signed in the same batch, never left the server alive.
  assert.equal(issued.filter((c) => c.status === "active").length, 1);
  assert.ok(issued.every((c) => c.status === "active" || c.revokedAt !== null));
  assert.equal((await ctx.store.enrolments.getByReference(e.referenceNumber))?.status, "used");
});

test("simpleenroll refuses SANs the record does not give, and the code stays usable", async () => {
  const e = await enrolmentServiceFor(ctx).create({ holderId: "R2", profileId: "gateway", actor: "test" });
  const creds = { referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode };
  assert.equal(await refusal(est.enroll(creds, csr("/", ["-addext", "subjectAltName=DNS:evil.example"]))), "CSR_SAN_MISMATCH");
  assert.equal(await refusal(est.enroll(creds, Buffer.from("not a CSR"))), "CSR_MALFORMED");
  assert.equal(await refusal(est.enroll(undefined, csr("/"))), "EST_CREDENTIALS_REQUIRED");
  assert.equal((await ctx.store.enrolments.getByReference(e.referenceNumber))?.status, "open");
  const p7 = await est.enroll(creds, csr("/C=CN/O=ukey-renew demo/CN=Holder R2/serialNumber=R2"));
  assert.equal(openssl(["pkcs7", "-inform", "DER", "-print_certs", "-noout"], p7).status, 0);
});

test("the personal profile's SAN (e-mail from the record) may be asked for exactly", async () => {
  const e = await enrolmentServiceFor(ctx).create({ holderId: "R3", profileId: "personal", actor: "test" });
  const creds = { referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode };
  assert.equal(await refusal(est.enroll(creds, csr("/", ["-addext", "subjectAltName=email:other@example.com"]))), "CSR_SAN_MISMATCH");
  const p7 = await est.enroll(creds, csr("/", ["-addext", "subjectAltName=email:r3@example.com"]));
  assert.match(openssl(["pkcs7", "-inform", "DER", "-print_certs", "-text", "-noout"], p7).out, /email:r3@example\.com/);
});

test("simplereenroll refusals: revoked, altered, no EST window, not EST-verifiable; no order is left behind", async () => {
  const subject = (h: string) => `/C=CN/O=ukey-renew demo/CN=Holder ${h}/serialNumber=${h}`;
  const revoked = await issue("R4", "gateway", 30);
  await ctx.revocation.revoke(revoked.record.serial, "keyCompromise", "test");
  assert.equal(await refusal(est.reenroll(revoked.der, csr(subject("R4")))), "CERT_REVOKED");

  const altered = Buffer.from((await issue("R4", "gateway", 30)).der);
  altered[altered.length - 1]! ^= 1; // the signature's last byte: same serial and issuer, not our certificate
  assert.equal(await refusal(est.reenroll(altered, csr(subject("R4")))), "EST_CLIENT_CERT_UNKNOWN");
  assert.equal(await refusal(est.reenroll(Buffer.from("garbage"), csr(subject("R4")))), "EST_CLIENT_CERT_UNKNOWN");
  assert.equal(await refusal(est.reenroll(undefined, csr(subject("R4")))), "EST_CLIENT_CERT_REQUIRED");

  const noWindow = await issue("R4", "ukey", 30);
  assert.equal(await refusal(est.reenroll(noWindow.der, csr(subject("R4")))), "RENEWAL_CHANNEL_NOT_OFFERED");
  const personal = await issue("R4", "personal", 30);
  assert.equal(await refusal(est.reenroll(personal.der, csr(subject("R4")))), "EST_VERIFICATION_NOT_POSSIBLE");

  for (const c of [revoked, noWindow, personal]) assert.equal(await ctx.store.orders.findOpenForCertificate(c.record.serial), undefined);
});

test("simplereenroll with an empty subject is refused: RFC 7030 wants the current one", async () => {
  const current = await issue("R4", "gateway", 30);
  assert.equal(await refusal(est.reenroll(current.der, csr("/"))), "CSR_SUBJECT_MISMATCH");
  assert.equal(await ctx.store.orders.findOpenForCertificate(current.record.serial), undefined);
});

test("RFC 8951 base64: line breaks and spaces allowed, anything else refused", () => {
  const der = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x07]);
  const b64 = der.toString("base64");
  assert.deepEqual(decodeEstBase64(`${b64.slice(0, 4)}\r\n${b64.slice(4)}\n`), der);
  assert.deepEqual(decodeEstBase64(Buffer.from(` ${b64} `)), der);
  // One line ended by LF (issue 17): libest's OpenSSL decoder wants the final newline; strongSwan takes no break inside.
  assert.equal(encodeEstBase64(der), `${b64}\n`);
  const long = Buffer.alloc(100, 0xab);
  assert.deepEqual(encodeEstBase64(long).split("\n").map((l) => l.length), [136, 0]);
  assert.deepEqual(decodeEstBase64(encodeEstBase64(long)), long);
  for (const bad of ["", "\r\n", "MA==MA==", "MAMA!", "-----BEGIN X-----", "M"]) {
    assert.throws(() => decodeEstBase64(bad), (e: UkeyError) => e.code === "EST_BASE64_MALFORMED", JSON.stringify(bad));
  }
});

test("certs-only PKCS#7 carries the certificates byte for byte and no signers", () => {
  const p7 = est.caCertificates();
  const signed = AsnConvert.parse(AsnConvert.parse(p7, ContentInfo).content, SignedData);
  assert.equal(signed.signerInfos.length, 0);
  const got = Array.from(signed.certificates ?? [], (c) => Buffer.from(AsnConvert.serialize(c.certificate!)));
  // SET OF in DER order (issue 17): by the certificates' encodings, whichever order they are given in.
  assert.deepEqual(got, [ctx.ca.issuing.der, ctx.ca.root.der].sort(Buffer.compare));
  assert.deepEqual(certsOnlyPkcs7([ctx.ca.root.der, ctx.ca.issuing.der]), certsOnlyPkcs7([ctx.ca.issuing.der, ctx.ca.root.der]));
  assert.deepEqual(certsOnlyPkcs7([ctx.ca.root.der]).subarray(-ctx.ca.root.der.length - 2, -2), ctx.ca.root.der, "the certificate set, then an empty signer set");
});

test("csrattrs follows the profiles' key algorithms", () => {
  const parse = (der: Buffer) => openssl(["asn1parse", "-inform", "DER"], der).out;
  const rsaOnly = parse(csrAttributes(["rsa2048"]));
  assert.match(rsaOnly, /rsaEncryption/);
  assert.match(rsaOnly, /sha256WithRSAEncryption/);
  assert.doesNotMatch(rsaOnly, /ecPublicKey|ecdsa/);
  const ecOnly = parse(csrAttributes(["p256"]));
  assert.match(ecOnly, /id-ecPublicKey[\s\S]*prime256v1/);
  assert.doesNotMatch(ecOnly, /rsa|secp384r1/);
  // The curves' SET OF in DER order (issue 17): P-384 (1.3.132.0.34) encodes before P-256 (1.2.840.10045.3.1.7).
  const both = parse(csrAttributes(["p256", "p384"]));
  assert.ok(both.indexOf("secp384r1") < both.indexOf("prime256v1"), both);
  assert.deepEqual(csrAttributes(["p256", "p384"]), csrAttributes(["p384", "p256"]));
  assert.deepEqual(requestedSans(csr("/", ["-addext", "subjectAltName=DNS:b.example,email:a@example.com"])), ["dns:b.example", "email:a@example.com"]);
});
