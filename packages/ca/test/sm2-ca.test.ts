import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { defaultProfile, isUkeyError, type CertificateProfile } from "@ukey/policy";
import {
  buildCrl, buildOcspResponse, createCaHierarchy, derToPem, FileKeyStore, caKeyNames, CertificateBuilder, newSerial, parseOcspRequest,
  serialHex, verifyCsr, type CaSigner, type IssuerCertificate,
} from "../src/index.js";
import { sm2GenerateKeyPair, sm2Sign, sm2Spki } from "../src/sm2.js";
import { epoch, subjectKey, testUrls } from "./support/hierarchy.js";
import { openssl, tempDir } from "./support/openssl.js";
import { assertOpensslSm2Signature, basicOcspResponse } from "./support/sm2-openssl.js";
import { encodeName } from "../src/names.js";
import { bitString, seq, tlv, Tag } from "../src/der.js";

// The SM2 CA (issue 13): root and issuing CA keys in the encrypted key file,
// certificates, CRLs and OCSP responses signed SM3withSM2 with the standard
// distinguishing ID, each checked by the OpenSSL CLI with an explicit distid.

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const distid = "distid:1234567812345678";
const tmp = tempDir("ukey-sm2-ca-");
const keys = tempDir("ukey-sm2-keys-");
const at = epoch(new Date("2025-06-01T00:00:00Z"));
let root: IssuerCertificate, issuing: IssuerCertificate, rootSigner: CaSigner, issuingSigner: CaSigner;
let rootPem: string, issuingPem: string;
const sm2Profile: CertificateProfile = { ...defaultProfile, id: "gm-personal", keyAlgorithms: ["sm2"] };

before(async () => {
  const store = new FileKeyStore(keys.dir, "test passphrase");
  ({ root, issuing } = await createCaHierarchy({
    keyStore: store, algorithm: "sm2",
    rootSubject: { rdns: [["C", "CN"], ["O", "示例银行"], ["CN", "示例银行 SM2 根 CA"]] },
    issuingSubject: { rdns: [["C", "CN"], ["O", "示例银行"], ["CN", "示例银行 SM2 签发 CA 1"]] },
    now: new Date("2025-01-01T00:00:00Z"),
    issuingUrls: { crl: "http://ca.example.test/crl/root.crl", ocsp: "http://ca.example.test/ocsp", caIssuers: "http://ca.example.test/ca/root.cer" },
  }));
  rootSigner = await store.load(caKeyNames.root);
  issuingSigner = await store.load(caKeyNames.issuing);
  rootPem = tmp.write("root.pem", derToPem(root.der, "CERTIFICATE"));
  issuingPem = tmp.write("issuing.pem", derToPem(issuing.der, "CERTIFICATE"));
});
after(() => {
  tmp.cleanup();
  keys.cleanup();
});

/** An SM2 key made by OpenSSL and its CSR signed with `sigopt` (none: OpenSSL's empty ID). */
function opensslCsr(name: string, sigopt?: string): { csr: Buffer; keyPath: string } {
  const keyPath = `${tmp.dir}/${name}.key.pem`;
  const g = openssl(["genpkey", "-algorithm", "SM2", "-out", keyPath]);
  assert.equal(g.status, 0, g.stderr);
  const r = openssl(["req", "-new", "-key", keyPath, "-sm3", ...(sigopt ? ["-sigopt", sigopt] : []), "-subj", "/CN=张三", "-utf8", "-outform", "DER", "-out", `${tmp.dir}/${name}.csr`]);
  assert.equal(r.status, 0, r.stderr);
  return { csr: readFileSync(`${tmp.dir}/${name}.csr`), keyPath };
}

test("the key files hold SM2 keys that openssl pkcs8 opens with the passphrase", () => {
  for (const name of ["root", "issuing"]) {
    const r = openssl(["pkey", "-in", `${keys.dir}/${name}.key.pem`, "-passin", "pass:test passphrase", "-noout", "-text"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /ASN1 OID: SM2/);
    const wrong = openssl(["pkey", "-in", `${keys.dir}/${name}.key.pem`, "-passin", "pass:wrong", "-noout"]);
    assert.notEqual(wrong.status, 0);
  }
  assert.equal(rootSigner.algorithm, "sm2");
});

test("a wrong passphrase is CA_PASSPHRASE_WRONG for an SM2 key file", async () => {
  await assert.rejects(new FileKeyStore(keys.dir, "wrong").load("issuing"), code("CA_PASSPHRASE_WRONG"));
});

test("root and issuing CA: SM3withSM2 (1.2.156.10197.1.501), SM2 keys as id-ecPublicKey on curve 1.2.156.10197.1.301", () => {
  for (const [name, path] of [["root", rootPem], ["issuing", issuingPem]] as const) {
    const text = openssl(["x509", "-in", path, "-noout", "-text", "-certopt", "ext_parse"]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /Signature Algorithm: SM2-with-SM3/, name);
    assert.match(text.stdout, /Public Key Algorithm: id-ecPublicKey/, name);
    assert.match(text.stdout, /ASN1 OID: SM2/, name);
  }
  const asn1 = openssl(["asn1parse", "-in", issuingPem]).stdout;
  assert.match(asn1, /:SM2-with-SM3/);
  assert.match(asn1, /:id-ecPublicKey\n.*:sm2\n/);
});

test("the self-signed root's signature verifies with openssl dgst -sm3 and distid over its TBS (verify -check_ss_sig has an OpenSSL bug)", () => {
  assertOpensslSm2Signature(tmp, "root", root.der, root.spki);
});

test("openssl verify -vfyopt distid:1234567812345678 accepts the issuing CA, and not without the ID", () => {
  const ok = openssl(["verify", "-x509_strict", "-vfyopt", distid, "-attime", at, "-CAfile", rootPem, issuingPem]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /issuing\.pem: OK/);
  const noId = openssl(["verify", "-attime", at, "-CAfile", rootPem, issuingPem]);
  assert.notEqual(noId.status, 0, "OpenSSL without distid uses the empty ID");
  assertOpensslSm2Signature(tmp, "issuing", issuing.der, root.spki);
});

test("SM2 CSRs: the standard ID is accepted, the empty ID and another ID refused with their own codes", () => {
  const good = opensslCsr("good", distid);
  const v = verifyCsr(good.csr);
  assert.equal(v.algorithm, "sm2");
  assert.throws(() => verifyCsr(opensslCsr("empty").csr), code("CSR_SM2_ID_EMPTY"));
  assert.throws(() => verifyCsr(opensslCsr("other", "distid:ALICE123@YAHOO.COM").csr), code("CSR_SM2_SIGNATURE_INVALID"));
  const damaged = Buffer.from(good.csr);
  damaged[damaged.length - 5]! ^= 0x01;
  assert.throws(() => verifyCsr(damaged), code("CSR_SM2_SIGNATURE_INVALID"));
});

test("an SM2 CSR signed with ECDSA's OID is refused", () => {
  const key = sm2GenerateKeyPair();
  const info = seq(tlv(Tag.integer, Buffer.from([0])), encodeName([["CN", "x"]]), sm2Spki(key.publicKey), tlv(0xa0));
  const csr = seq(info, seq(tlv(Tag.oid, Buffer.from("2a8648ce3d040302", "hex"))), bitString(sm2Sign(info, key)));
  assert.throws(() => verifyCsr(csr), code("KEY_ALGORITHM_UNSUPPORTED"));
  // The same request with SM3withSM2 is accepted: only the OID was wrong.
  const right = seq(info, seq(tlv(Tag.oid, Buffer.from("2a811ccf55018375", "hex"))), bitString(sm2Sign(info, key)));
  assert.equal(verifyCsr(right).algorithm, "sm2");
});

test("an end-entity certificate for an SM2 CSR, DER-template path, that openssl verify accepts with distid", async () => {
  const csr = verifyCsr(opensslCsr("leaf", distid).csr);
  const builder = new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile: sm2Profile, urls: testUrls });
  const tbs = builder.buildTbs({
    serial: newSerial(), subject: { rdns: [["C", "CN"], ["CN", "张三"]] }, spki: csr.spki,
    notBefore: new Date("2025-03-01T00:00:00Z"), notAfter: new Date("2030-03-01T00:00:00Z"), profile: sm2Profile,
  });
  const der = await builder.sign(tbs);
  const leafPem = tmp.write("leaf.pem", derToPem(der, "CERTIFICATE"));
  // OpenSSL 3.0 applies -vfyopt to the target certificate only (an -untrusted issuing CA is checked with the
  // empty ID and fails), so each link is verified on its own: the leaf against the issuing CA as a partial-chain
  // anchor here, the issuing CA against the root in the test above.
  const v = openssl(["verify", "-x509_strict", "-partial_chain", "-vfyopt", distid, "-attime", at, "-CAfile", issuingPem, leafPem]);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /leaf\.pem: OK/);
  const noId = openssl(["verify", "-partial_chain", "-attime", at, "-CAfile", issuingPem, leafPem]);
  assert.notEqual(noId.status, 0);
  assertOpensslSm2Signature(tmp, "leaf", der, issuing.spki);
  const text = openssl(["x509", "-in", leafPem, "-noout", "-text"]).stdout;
  assert.match(text, /Signature Algorithm: SM2-with-SM3/);
  assert.match(text, /ASN1 OID: SM2/);
});

test("an SM2 key for an RSA/EC profile, and an EC or RSA key for an SM2 profile, are refused", () => {
  const csr = verifyCsr(opensslCsr("mismatch", distid).csr);
  const rsaProfile: CertificateProfile = { ...defaultProfile, id: "rsa-only", keyAlgorithms: ["rsa2048"] };
  const input = { serial: newSerial(), subject: { rdns: [["CN", "x"]] as Array<[string, string]> }, notBefore: new Date("2025-03-01T00:00:00Z"), notAfter: new Date("2026-03-01T00:00:00Z") };
  const forRsa = new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile: rsaProfile, urls: testUrls });
  assert.throws(() => forRsa.buildTbs({ ...input, spki: csr.spki, profile: rsaProfile }), code("KEY_ALGORITHM_NOT_ALLOWED"));
  const forDefault = new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile: defaultProfile, urls: testUrls });
  assert.throws(() => forDefault.buildTbs({ ...input, spki: csr.spki, profile: defaultProfile }), code("KEY_ALGORITHM_NOT_ALLOWED"));
  const forSm2 = new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile: sm2Profile, urls: testUrls });
  for (const k of ["p256", "rsa2048"] as const) {
    assert.throws(() => forSm2.buildTbs({ ...input, spki: subjectKey(k).spki, profile: sm2Profile }), code("KEY_ALGORITHM_NOT_ALLOWED"));
  }
});

test("CRLs signed SM2: openssl reads them, dgst -sm3 with distid verifies them", async () => {
  const csr = verifyCsr(opensslCsr("revoked", distid).csr);
  const builder = new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile: sm2Profile, urls: testUrls });
  const serial = newSerial();
  const der = await builder.sign(builder.buildTbs({
    serial, subject: { rdns: [["CN", "李四"]] }, spki: csr.spki, profile: sm2Profile,
    notBefore: new Date("2025-03-01T00:00:00Z"), notAfter: new Date("2030-03-01T00:00:00Z"),
  }));
  const leafPem = tmp.write("revoked.pem", derToPem(der, "CERTIFICATE"));
  const crl = await buildCrl({
    issuer: issuing, signer: issuingSigner, number: 7,
    thisUpdate: new Date("2025-05-31T00:00:00Z"), nextUpdate: new Date("2025-06-07T00:00:00Z"),
    revoked: [{ serial: serialHex(serial), revokedAt: new Date("2025-05-30T00:00:00Z"), reason: "keyCompromise" }],
  });
  const crlPem = tmp.write("issuing.crl", derToPem(crl, "X509 CRL"));
  const text = openssl(["crl", "-in", crlPem, "-noout", "-text"]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /Signature Algorithm: SM2-with-SM3/);
  assert.match(text.stdout, /Key Compromise/);
  assertOpensslSm2Signature(tmp, "crl", crl, issuing.spki);

  const rootCrl = await buildCrl({
    issuer: root, signer: rootSigner, number: 1, revoked: [],
    thisUpdate: new Date("2025-05-31T00:00:00Z"), nextUpdate: new Date("2025-06-30T00:00:00Z"),
  });
  assertOpensslSm2Signature(tmp, "root-crl", rootCrl, root.spki);
  // OpenSSL 3.0 checks a CRL's SM2 signature with the empty ID whatever -vfyopt says ("CRL signature
  // failure"), so `verify -crl_check` cannot use SM2 CRLs; relying parties with GM/T stacks can.
  const v = openssl(["verify", "-partial_chain", "-vfyopt", distid, "-crl_check", "-attime", at, "-CAfile", issuingPem, "-CRLfile", crlPem, leafPem]);
  assert.match(v.stdout + v.stderr, /CRL signature failure/, "if OpenSSL learns SM2 CRLs, enforce revocation here");
});

test("OCSP responses signed SM2: openssl ocsp reads them, dgst -sm3 with distid verifies the signature", async () => {
  const csr = verifyCsr(opensslCsr("ocsp-leaf", distid).csr);
  const builder = new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile: sm2Profile, urls: testUrls });
  const der = await builder.sign(builder.buildTbs({
    serial: newSerial(), subject: { rdns: [["CN", "王五"]] }, spki: csr.spki, profile: sm2Profile,
    notBefore: new Date("2025-03-01T00:00:00Z"), notAfter: new Date("2030-03-01T00:00:00Z"),
  }));
  const leafPem = tmp.write("ocsp-leaf.pem", derToPem(der, "CERTIFICATE"));
  const reqPath = `${tmp.dir}/ocsp.req`;
  const q = openssl(["ocsp", "-issuer", issuingPem, "-cert", leafPem, "-reqout", reqPath]);
  assert.equal(q.status, 0, q.stderr);
  const info = parseOcspRequest(readFileSync(reqPath));
  const producedAt = new Date("2025-06-01T00:00:00Z");
  const resp = await buildOcspResponse({
    issuer: issuing, signer: issuingSigner, producedAt, nonce: info.nonce,
    responses: info.certIds.map((certId) => ({ certId, status: { status: "good" as const }, thisUpdate: producedAt })),
  });
  const respPath = tmp.write("ocsp.resp", resp);
  const r = openssl(["ocsp", "-reqin", reqPath, "-respin", respPath, "-noverify", "-resp_text"]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Signature Algorithm: SM2-with-SM3/);
  assert.match(r.stdout, /Cert Status: good/);
  assertOpensslSm2Signature(tmp, "ocsp", basicOcspResponse(resp), issuing.spki);
});
