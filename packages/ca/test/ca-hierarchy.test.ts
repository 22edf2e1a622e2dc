import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { defaultProfile, isUkeyError } from "@ukey/policy";
import {
  buildCrl, createCaHierarchy, crlPemLabel, derToPem, FileKeyStore, loadIssuerCertificate, newSerial, serialHex, type RevokedEntry,
} from "../src/index.js";
import { caNow, epoch, makeTestCa, subjectKey, type TestCa } from "./support/hierarchy.js";
import { openssl, tempDir } from "./support/openssl.js";

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const tmp = tempDir();
const at = epoch(new Date("2025-06-01T00:00:00Z"));
let ec: TestCa;
let rsa: TestCa;

before(async () => {
  ec = await makeTestCa({ algorithm: "p256" });
  rsa = await makeTestCa({ algorithm: "rsa2048" });
});
after(() => {
  ec.cleanup();
  rsa.cleanup();
  tmp.cleanup();
});

async function leaf(ca: TestCa, name: string): Promise<{ path: string; serial: string }> {
  const builder = ca.builder();
  const serial = newSerial();
  const der = await builder.sign(builder.buildTbs({
    serial, subject: { rdns: [["C", "CN"], ["CN", name]] }, spki: subjectKey("p256").spki,
    notBefore: caNow, notAfter: new Date("2027-03-01T00:00:00Z"), profile: defaultProfile,
  }));
  return { path: tmp.write(`${name}.pem`, derToPem(der, "CERTIFICATE")), serial: serialHex(serial) };
}

test("the CA certificates carry the extensions a relying party checks", () => {
  const root = tmp.write("ec-root.pem", derToPem(ec.root.der, "CERTIFICATE"));
  const issuing = tmp.write("ec-issuing.pem", derToPem(ec.issuing.der, "CERTIFICATE"));
  const rootText = openssl(["x509", "-in", root, "-noout", "-text"]).stdout;
  assert.match(rootText, /Basic Constraints: critical\s+CA:TRUE\n/);
  assert.match(rootText, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
  assert.match(rootText, /Subject Key Identifier/);
  assert.match(rootText, /Not After : Jan {2}1 00:00:00 2045 GMT/);
  const issuingText = openssl(["x509", "-in", issuing, "-noout", "-text"]).stdout;
  assert.match(issuingText, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  assert.match(issuingText, /Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
  assert.match(issuingText, /Authority Key Identifier/);
  assert.match(issuingText, /URI:http:\/\/ca\.example\.test\/crl\/root\.crl/);
  assert.match(issuingText, /CA Issuers - URI:http:\/\/ca\.example\.test\/ca\/root\.cer/);
  assert.doesNotMatch(issuingText, /OCSP - URI/);
  assert.match(issuingText, /Not After : Jan {2}1 00:00:00 2035 GMT/);
  const v = openssl(["verify", "-x509_strict", "-attime", at, "-CAfile", root, issuing]);
  assert.equal(v.status, 0, v.stdout + v.stderr);

  assert.equal(ec.issuing.subjectDn, "C=CN, O=Example Bank, CN=Example Bank Issuing CA 1");
  const again = loadIssuerCertificate(derToPem(ec.issuing.der, "CERTIFICATE"));
  assert.deepEqual(again, ec.issuing);
  assert.equal(ec.issuing.notBefore.toISOString(), "2025-01-01T00:00:00.000Z");
});

test("a hierarchy is never created twice in the same key store", async () => {
  const store = new FileKeyStore(`${tmp.dir}/twice`, "pw");
  const opts = {
    keyStore: store, now: caNow, rootSubject: { rdns: [["CN", "R"]] as Array<[string, string]> },
    issuingSubject: { rdns: [["CN", "I"]] as Array<[string, string]> },
    issuingUrls: { crl: "http://x.test/r.crl", ocsp: "http://x.test/ocsp", caIssuers: "http://x.test/r.cer" },
  };
  await createCaHierarchy(opts);
  await assert.rejects(createCaHierarchy(opts), code("CA_ALREADY_INITIALISED"));
  await assert.rejects(createCaHierarchy({ ...opts, keyStore: new FileKeyStore(`${tmp.dir}/bad-url`, "pw"), issuingUrls: { ...opts.issuingUrls, crl: "not a url" } }),
    code("REQUEST_INVALID"));
});

test("loadIssuerCertificate refuses end-entity certificates and garbage", async () => {
  const { path } = await leaf(ec, "not-a-ca");
  const { readFileSync } = await import("node:fs");
  assert.throws(() => loadIssuerCertificate(readFileSync(path, "utf8")), code("DER_MALFORMED"));
  assert.throws(() => loadIssuerCertificate(Buffer.from("3003020101", "hex")), code("DER_MALFORMED"));
  assert.throws(() => loadIssuerCertificate("nothing"), code("PEM_MALFORMED"));
});

for (const [name, getCa] of [["EC P-256", () => ec], ["RSA 2048", () => rsa]] as const) {
  test(`${name}: CRLs that openssl reads and enforces`, async () => {
    const ca = getCa();
    const tag = name.replace(/\W/g, "");
    const root = tmp.write(`${tag}-root.pem`, derToPem(ca.root.der, "CERTIFICATE"));
    const issuing = tmp.write(`${tag}-issuing.pem`, derToPem(ca.issuing.der, "CERTIFICATE"));
    const good = await leaf(ca, `${tag}-good`);
    const revoked = await leaf(ca, `${tag}-revoked`);
    const entries: RevokedEntry[] = [
      { serial: revoked.serial, revokedAt: new Date("2025-04-01T10:00:00Z"), reason: "keyCompromise" },
      { serial: "01:02:03", revokedAt: new Date("2025-04-02T10:00:00Z"), reason: "unspecified" },
    ];
    const crlDer = await buildCrl({
      issuer: ca.issuing, signer: ca.issuingSigner, number: 7,
      thisUpdate: new Date("2025-05-01T00:00:00Z"), nextUpdate: new Date("2025-05-08T00:00:00Z"), revoked: entries,
    });
    const crl = tmp.write(`${tag}-issuing.crl`, derToPem(crlDer, crlPemLabel));
    const rootCrl = tmp.write(`${tag}-root.crl`, derToPem(await buildCrl({
      issuer: ca.root, signer: ca.rootSigner, number: 1n,
      thisUpdate: new Date("2025-05-01T00:00:00Z"), nextUpdate: new Date("2025-08-01T00:00:00Z"), revoked: [],
    }), crlPemLabel));

    const text = openssl(["crl", "-in", crl, "-noout", "-text"]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /Version 2/);
    assert.match(text.stdout, /X509v3 CRL Number: \n\s+7/);
    assert.match(text.stdout, /X509v3 Authority Key Identifier/);
    assert.match(text.stdout, new RegExp(`Serial Number: ${revoked.serial.toUpperCase()}[\\s\\S]*?Key Compromise`));
    assert.match(text.stdout, /Serial Number: 010203\n\s+Revocation Date: Apr {2}2 10:00:00 2025 GMT\n(?!\s+CRL entry extensions)/);
    const sig = openssl(["crl", "-in", crl, "-CAfile", issuing, "-noout"]);
    assert.match(sig.stderr + sig.stdout, /verify OK/);
    assert.match(openssl(["crl", "-in", rootCrl, "-noout", "-text"]).stdout, /No Revoked Certificates/);

    const crlAt = epoch(new Date("2025-05-02T00:00:00Z"));
    const verify = (cert: string) => openssl(["verify", "-crl_check_all", "-attime", crlAt, "-CAfile", root, "-untrusted", issuing,
      "-CRLfile", crl, "-CRLfile", rootCrl, cert]);
    const ok = verify(good.path);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    const refused = verify(revoked.path);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stdout + refused.stderr, /certificate revoked/);
  });
}

test("buildCrl refuses what it cannot encode", async () => {
  const base = { issuer: ec.issuing, signer: ec.issuingSigner, number: 1, thisUpdate: new Date("2025-05-01T00:00:00Z"), nextUpdate: new Date("2025-05-08T00:00:00Z") };
  const entry = { serial: "0a", revokedAt: new Date("2025-04-01T00:00:00Z"), reason: "superseded" };
  const table: Array<[string, Parameters<typeof buildCrl>[0], string]> = [
    ["unknown reason", { ...base, revoked: [{ ...entry, reason: "lost it" }] }, "REVOCATION_REASON_INVALID"],
    ["delta-only reason", { ...base, revoked: [{ ...entry, reason: "removeFromCRL" }] }, "REVOCATION_REASON_INVALID"],
    ["bad serial", { ...base, revoked: [{ ...entry, serial: "zz" }] }, "SERIAL_MALFORMED"],
    ["nextUpdate before thisUpdate", { ...base, nextUpdate: base.thisUpdate, revoked: [] }, "REQUEST_INVALID"],
    ["negative number", { ...base, number: -1, revoked: [] }, "REQUEST_INVALID"],
    ["a delta numbered like its base", { ...base, number: 5, deltaOf: 5, revoked: [] }, "REQUEST_INVALID"],
    ["a delta numbered below its base", { ...base, number: 5, deltaOf: 6, revoked: [] }, "REQUEST_INVALID"],
    ["a delta with a freshestCRL", { ...base, number: 5, deltaOf: 4, freshestCrl: "http://ca.example/d.crl", revoked: [] }, "REQUEST_INVALID"],
    ["a freshestCRL that is not a URI", { ...base, freshestCrl: "not a uri", revoked: [] }, "REQUEST_INVALID"],
  ];
  for (const [name, input, want] of table) await assert.rejects(buildCrl(input), code(want), name);
});

test("buildCrl makes a delta CRL: critical deltaCRLIndicator, removeFromCRL entries, no freshestCRL", async () => {
  const der = await buildCrl({
    issuer: ec.issuing, signer: ec.issuingSigner, number: 9, deltaOf: 7,
    thisUpdate: new Date("2025-05-01T00:00:00Z"), nextUpdate: new Date("2025-05-01T00:15:00Z"),
    revoked: [{ serial: "0a", revokedAt: new Date("2025-04-30T23:00:00Z"), reason: "removeFromCRL" }, { serial: "0b", revokedAt: new Date("2025-04-30T23:01:00Z"), reason: "keyCompromise" }],
  });
  const text = openssl(["crl", "-inform", "DER", "-in", tmp.write("delta.crl", der), "-noout", "-text"]).stdout;
  assert.match(text, /X509v3 Delta CRL Indicator: critical\n\s+7\n/);
  assert.match(text, /X509v3 CRL Number: \n\s+9\n/);
  assert.match(text, /Serial Number: 0A[\s\S]*?Remove From CRL/);
  assert.match(text, /Serial Number: 0B[\s\S]*?Key Compromise/);
  assert.doesNotMatch(text, /Freshest CRL/);
  const complete = await buildCrl({
    issuer: ec.issuing, signer: ec.issuingSigner, number: 7, freshestCrl: "http://ca.example/crl/issuing-delta.crl",
    thisUpdate: new Date("2025-05-01T00:00:00Z"), nextUpdate: new Date("2025-05-08T00:00:00Z"), revoked: [],
  });
  const c = openssl(["crl", "-inform", "DER", "-in", tmp.write("complete.crl", complete), "-noout", "-text"]).stdout;
  assert.match(c, /X509v3 Freshest CRL: \n\s+Full Name:\n\s+URI:http:\/\/ca\.example\/crl\/issuing-delta\.crl/);
  assert.doesNotMatch(c, /Delta CRL Indicator/);
});

test("buildCrl keeps every entry, in order, across the blocks it packs them into (9,000 entries: two blocks and part of a third)", async () => {
  const count = 9000;
  async function* revoked() {
    for (let i = 1; i <= count; i++) yield { serial: i.toString(16).padStart(4, "0"), revokedAt: new Date("2025-04-30T23:00:00Z"), reason: i % 2 ? "keyCompromise" : "unspecified" };
  }
  const der = await buildCrl({
    issuer: ec.issuing, signer: ec.issuingSigner, number: 11,
    thisUpdate: new Date("2025-05-01T00:00:00Z"), nextUpdate: new Date("2025-05-08T00:00:00Z"), revoked: revoked(),
  });
  const file = tmp.write("large.crl", der);
  // Its text is larger than a pipe's default buffer here: openssl writes it to a file.
  const textFile = tmp.write("large.txt", "");
  assert.equal(openssl(["crl", "-inform", "DER", "-in", file, "-noout", "-text", "-out", textFile]).status, 0);
  const text = readFileSync(textFile, "utf8");
  const serials = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => parseInt(m[1]!, 16));
  assert.deepEqual(serials, Array.from({ length: count }, (_, i) => i + 1));
  assert.equal([...text.matchAll(/Key Compromise/g)].length, count / 2);
  // The signature covers the whole list: openssl checks it with the issuing CA's key.
  const verified = openssl(["crl", "-inform", "DER", "-in", file, "-noout", "-CAfile", tmp.write("issuing-for-large.pem", derToPem(ec.issuing.der, "CERTIFICATE"))]);
  assert.match(verified.stderr + verified.stdout, /verify OK/);
});
