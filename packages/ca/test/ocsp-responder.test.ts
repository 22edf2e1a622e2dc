import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { defaultProfile, isUkeyError } from "@ukey/policy";
import {
  buildOcspResponse, derToPem, matchesIssuer, newSerial, ocspErrorResponse, parseOcspRequest, serialHex, type OcspCertStatus,
} from "../src/index.js";
import { caNow, epoch, makeTestCa, subjectKey, type TestCa } from "./support/hierarchy.js";
import { openssl, tempDir } from "./support/openssl.js";

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const tmp = tempDir();
const at = epoch(new Date("2025-06-01T00:00:00Z"));
let ca: TestCa;
let other: TestCa;
const leaves: Record<string, { path: string; serial: string }> = {};
let root: string, issuing: string;

before(async () => {
  ca = await makeTestCa();
  other = await makeTestCa();
  const builder = ca.builder();
  const spki = subjectKey("p256").spki;
  for (const name of ["good", "revoked"]) {
    const serial = newSerial();
    const der = await builder.sign(builder.buildTbs({
      serial, subject: { rdns: [["CN", name]] }, spki, notBefore: caNow, notAfter: new Date("2027-03-01T00:00:00Z"), profile: defaultProfile,
    }));
    leaves[name] = { path: tmp.write(`${name}.pem`, derToPem(der, "CERTIFICATE")), serial: serialHex(serial) };
  }
  root = tmp.write("root.pem", derToPem(ca.root.der, "CERTIFICATE"));
  issuing = tmp.write("issuing.pem", derToPem(ca.issuing.der, "CERTIFICATE"));
});
after(() => {
  ca.cleanup();
  other.cleanup();
  tmp.cleanup();
});

/** An OCSP request made by openssl for the given -cert/-serial arguments. */
function opensslRequest(name: string, args: string[]): { path: string; der: Buffer } {
  const path = `${tmp.dir}/${name}.req`;
  const r = openssl(["ocsp", "-issuer", issuing, ...args, "-reqout", path]);
  assert.equal(r.status, 0, r.stderr);
  return { path, der: readFileSync(path) };
}

const day = 86_400_000;

test("parses openssl's requests, with CertIDs, serials and nonce", () => {
  const cases: Array<[string, string[], string[], boolean, string]> = [
    ["two certificates with nonce", ["-cert", "good.pem", "-cert", "revoked.pem"], ["good", "revoked"], true, "sha1"],
    ["sha256 CertID without nonce", ["-sha256", "-cert", "good.pem", "-no_nonce"], ["good"], false, "sha256"],
  ];
  for (const [name, args, want, nonce, hash] of cases) {
    const req = opensslRequest(name.replace(/\W/g, ""), args.map((a) => (a.endsWith(".pem") ? `${tmp.dir}/${a}` : a)));
    const info = parseOcspRequest(req.der);
    assert.deepEqual(info.certIds.map((c) => c.serial), want.map((n) => leaves[n]!.serial), name);
    assert.equal(info.nonce !== undefined, nonce, name);
    for (const id of info.certIds) {
      assert.equal(id.hashAlgorithm, hash);
      assert.ok(matchesIssuer(id, ca.issuing), `${name}: matches its issuer`);
      assert.ok(!matchesIssuer(id, other.issuing), `${name}: not another CA`);
      assert.ok(!matchesIssuer(id, ca.root), `${name}: not the root`);
      assert.ok(req.der.includes(id.der), "CertID bytes are the request's own");
    }
  }
});

test("the RFC 5019 shape (no nonce) is read as the full parser reads the same CertIDs with a nonce (issue 17)", () => {
  const cases: Array<[string, string[]]> = [
    ["one certificate, SHA-1", ["-cert", leaves.good!.path]],
    ["two certificates, SHA-256", ["-sha256", "-cert", leaves.good!.path, "-cert", leaves.revoked!.path]],
    ["a serial with the high bit set", ["-serial", "0x80ff"]],
  ];
  for (const [name, args] of cases) {
    const plain = parseOcspRequest(opensslRequest(`plain${name.length}`, [...args, "-no_nonce"]).der);
    const full = parseOcspRequest(opensslRequest(`full${name.length}`, args).der);
    assert.ok(full.nonce && !plain.nonce, name);
    assert.deepEqual(plain.certIds, full.certIds, name);
  }
  // Trailing bytes after the plain shape: refused, as the full parser refuses them.
  const one = opensslRequest("odd", ["-cert", leaves.good!.path, "-no_nonce"]).der;
  assert.throws(() => parseOcspRequest(Buffer.concat([one, Buffer.from([0])])), code("OCSP_REQUEST_MALFORMED"));
});

test("openssl verifies good, revoked and unknown answers and sees its nonce echoed", async () => {
  const req = opensslRequest("mixed", ["-cert", leaves.good!.path, "-cert", leaves.revoked!.path, "-serial", "0x0123456789"]);
  const info = parseOcspRequest(req.der);
  assert.equal(info.certIds[2]!.serial, "0123456789");
  const statuses: OcspCertStatus[] = [
    { status: "good" },
    { status: "revoked", revokedAt: new Date("2025-04-01T10:00:00Z"), reason: "keyCompromise" },
    { status: "unknown" },
  ];
  const producedAt = new Date("2025-05-31T12:00:00Z");
  const resp = await buildOcspResponse({
    issuer: ca.issuing, signer: ca.issuingSigner, producedAt, nonce: info.nonce,
    responses: info.certIds.map((certId, i) => ({ certId, status: statuses[i]!, thisUpdate: producedAt, nextUpdate: new Date(producedAt.getTime() + day) })),
  });
  const respPath = tmp.write("mixed.resp", resp);
  const r = openssl(["ocsp", "-reqin", req.path, "-respin", respPath, "-issuer", issuing, "-CAfile", root, "-attime", at, "-resp_text"]);
  const out = r.stdout + r.stderr;
  assert.equal(r.status, 0, out);
  assert.match(out, /Response verify OK/);
  assert.doesNotMatch(out, /Nonce Verify error|no nonce in response/i);
  assert.match(out, new RegExp(`OCSP Nonce: \\n\\s+${info.nonce!.toString("hex").toUpperCase()}`));
  assert.match(out, /Responder Id: [0-9A-F]{40}/);
  assert.match(out, /Cert Status: good/);
  assert.match(out, /Cert Status: revoked\n\s+Revocation Time: Apr {2}1 10:00:00 2025 GMT\n\s+Revocation Reason: keyCompromise/);
  assert.match(out, /Cert Status: unknown/);

  // The same answers, looked up per certificate as a client would.
  const noNonce = opensslRequest("per-cert", ["-cert", leaves.good!.path, "-cert", leaves.revoked!.path, "-no_nonce"]);
  const perCert = await buildOcspResponse({
    issuer: ca.issuing, signer: ca.issuingSigner, producedAt,
    responses: parseOcspRequest(noNonce.der).certIds.map((certId, i) => ({ certId, status: statuses[i]!, thisUpdate: producedAt })),
  });
  const c = openssl(["ocsp", "-respin", tmp.write("per-cert.resp", perCert), "-issuer", issuing, "-CAfile", root, "-attime", at,
    "-no_nonce", "-cert", leaves.good!.path, "-cert", leaves.revoked!.path]);
  assert.equal(c.status, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /good\.pem: good/);
  assert.match(c.stdout, /revoked\.pem: revoked/);
});

test("openssl notices a missing or wrong nonce", async () => {
  const req = opensslRequest("nonce", ["-cert", leaves.good!.path]);
  const info = parseOcspRequest(req.der);
  const answer = { certId: info.certIds[0]!, status: { status: "good" } as const, thisUpdate: caNow };
  const cases: Array<[string, Buffer | undefined, RegExp]> = [
    ["missing", undefined, /no nonce in response/i],
    ["wrong", Buffer.from("0410000102030405060708090a0b0c0d0e0f", "hex"), /Nonce Verify error/],
  ];
  for (const [name, nonce, want] of cases) {
    const resp = await buildOcspResponse({ issuer: ca.issuing, signer: ca.issuingSigner, producedAt: caNow, nonce, responses: [answer] });
    const r = openssl(["ocsp", "-reqin", req.path, "-respin", tmp.write(`nonce-${name}.resp`, resp), "-issuer", issuing, "-CAfile", root, "-attime", at]);
    assert.match(r.stdout + r.stderr, want, name);
  }
});

test("parses NSS's request, whose Request carries a Service Locator in its [0] singleRequestExtensions", () => {
  // Captured from NSS 3.87's ocspclnt -S (as Firefox asks): one CertID with a single-request Service Locator
  // extension (RFC 6960 4.4.6) and an Acceptable Responses request extension; it went in by GET.
  const der = Buffer.from("MIGaMIGXMHUwczBNMAkGBSsOAwIaBQAEFHEdOXZxyfrPIkIJWSWXmgaY5GsRBBRZXdecKBzmlJ+c28j47CSP8yaeewIUTpOYs91rawY3a4LI6QzXEd9+9vqgIjAgMB4GCSsGAQUFBzABBwQRMA8wDTELMAkGA1UEAwwCQ0GiHjAcMBoGCSsGAQUFBzABBAQNMAsGCSsGAQUFBzABAQ==", "base64");
  const info = parseOcspRequest(der);
  assert.equal(info.certIds.length, 1);
  assert.equal(info.certIds[0]!.hashAlgorithm, "sha1");
  assert.equal(info.certIds[0]!.serial, "4e9398b3dd6b6b06376b82c8e90cd711df7ef6fa");
  assert.equal(info.certIds[0]!.issuerNameHash.toString("hex"), "711d397671c9facf2242095925979a0698e46b11");
  // The CertID's own DER, without the extension that follows it in the Request.
  assert.equal(info.certIds[0]!.der.length, 79);
  assert.equal(info.nonce, undefined);
  // The same request with its Service Locator marked critical: an extension we do not act on may not be critical (RFC 6960 4.4).
  const critical = Buffer.from("MIGdMIGaMHgwdjBNMAkGBSsOAwIaBQAEFHEdOXZxyfrPIkIJWSWXmgaY5GsRBBRZXdecKBzmlJ+c28j47CSP8yaeewIUTpOYs91rawY3a4LI6QzXEd9+9vqgJTAjMCEGCSsGAQUFBzABBwEB/wQRMA8wDTELMAkGA1UEAwwCQ0GiHjAcMBoGCSsGAQUFBzABBAQNMAsGCSsGAQUFBzABAQ==", "base64");
  assert.throws(() => parseOcspRequest(critical), (e: unknown) => code("OCSP_REQUEST_MALFORMED")(e) && /critical extension 1\.3\.6\.1\.5\.5\.7\.48\.1\.7/.test(String((e as Error).message)));
});

test("refuses malformed requests", () => {
  const one = opensslRequest("one", ["-cert", leaves.good!.path, "-no_nonce"]).der;
  const many = opensslRequest("many", [...Array.from({ length: 17 }, (_, i) => ["-serial", String(i + 1)]).flat(), "-no_nonce"]).der;
  assert.equal(parseOcspRequest(opensslRequest("sixteen", [...Array.from({ length: 16 }, (_, i) => ["-serial", String(i + 1)]).flat()]).der).certIds.length, 16);
  // tbsRequest with an empty requestList: SEQUENCE { SEQUENCE { SEQUENCE {} } }.
  const empty = Buffer.from("30043002" + "3000", "hex");
  const table: Array<[string, Buffer, string]> = [
    ["garbage", Buffer.from("hello, OCSP"), "OCSP_REQUEST_MALFORMED"],
    ["truncated", one.subarray(0, one.length - 3), "OCSP_REQUEST_MALFORMED"],
    ["empty request list", empty, "OCSP_REQUEST_MALFORMED"],
    ["seventeen CertIDs", many, "OCSP_REQUEST_MALFORMED"],
    ["a certificate", readFileSync(leaves.good!.path), "OCSP_REQUEST_MALFORMED"],
    ["too large", Buffer.alloc(9000, 0x30), "REQUEST_TOO_LARGE"],
  ];
  for (const [name, der, want] of table) assert.throws(() => parseOcspRequest(der), code(want), name);
});

test("error responses are what openssl expects", () => {
  const cases = [["malformedRequest", 1], ["internalError", 2], ["tryLater", 3], ["unauthorized", 6]] as const;
  for (const [status, value] of cases) {
    const der = ocspErrorResponse(status);
    assert.equal(der.toString("hex"), `30030a010${value}`);
    const r = openssl(["ocsp", "-respin", tmp.write(`${status}.resp`, der), "-resp_text", "-noverify"]);
    assert.match(r.stdout + r.stderr, new RegExp(`Responder Error: ${status.toLowerCase()} \\(${value}\\)`));
  }
});
