import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { isUkeyError } from "@ukey/policy";
import { derToPem, verifyCsr } from "../src/index.js";
import { derNull, oid, seq, bitString, tlv, smallInteger } from "../src/der.js";
import { encodeName } from "../src/names.js";
import { openssl, tempDir } from "./support/openssl.js";

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const tmp = tempDir();
const csrs = new Map<string, Buffer>();

/** Generates a key with openssl genpkey and a DER CSR for it with openssl req. */
function opensslCsr(name: string, genpkey: string[], reqArgs: string[] = []): void {
  const key = `${tmp.dir}/${name}.key`;
  const g = openssl(["genpkey", ...genpkey, "-out", key]);
  assert.equal(g.status, 0, g.stderr);
  const r = openssl(["req", "-new", "-key", key, "-subj", `/C=CN/O=Example/CN=${name}`, "-outform", "DER", "-out", `${tmp.dir}/${name}.csr`, ...reqArgs]);
  assert.equal(r.status, 0, r.stderr);
}

const readCsr = (name: string): Buffer => readFileSync(`${tmp.dir}/${name}.csr`);

before(() => {
  opensslCsr("p256", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
  opensslCsr("p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], ["-sha384"]);
  opensslCsr("rsa2048", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
  // Same key, PSS padding: a second request, not a second key.
  const r = openssl(["req", "-new", "-key", `${tmp.dir}/rsa2048.key`, "-subj", "/CN=pss", "-sigopt", "rsa_padding_mode:pss",
    "-sigopt", "rsa_pss_saltlen:32", "-sha256", "-outform", "DER", "-out", `${tmp.dir}/rsa2048-pss.csr`]);
  assert.equal(r.status, 0, r.stderr);
  opensslCsr("rsa1024", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
  opensslCsr("secp256k1", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"]);
  opensslCsr("ed25519", ["-algorithm", "ED25519"]);
  opensslCsr("sm2", ["-algorithm", "SM2"], ["-sm3"]);
  for (const n of ["p256", "p384", "rsa2048", "rsa2048-pss", "rsa1024", "secp256k1", "ed25519", "sm2"]) csrs.set(n, readCsr(n));
});
after(() => tmp.cleanup());

const csr = (name: string): Buffer => {
  const c = csrs.get(name);
  assert.ok(c, name);
  return Buffer.from(c);
};

test("accepts requests made by openssl", () => {
  const cases: Array<[string, string]> = [
    ["p256", "p256"], ["p384", "p384"], ["rsa2048", "rsa2048"], ["rsa2048-pss", "rsa2048"],
  ];
  for (const [name, algorithm] of cases) {
    const v = verifyCsr(csr(name));
    assert.equal(v.algorithm, algorithm, name);
    assert.equal(v.spki[0], 0x30);
    assert.deepEqual(v.der, csr(name));
  }
  assert.equal(verifyCsr(csr("p256")).requestedSubject, "C=CN, O=Example, CN=p256");
});

test("accepts PEM as text or bytes, with CRLF and the old NEW CERTIFICATE REQUEST label", () => {
  const pem = derToPem(csr("p256"), "CERTIFICATE REQUEST");
  const cases: Array<[string, Buffer | string]> = [
    ["text", pem],
    ["bytes", Buffer.from(pem)],
    ["CRLF", pem.replace(/\n/g, "\r\n")],
    ["old label", derToPem(csr("p256"), "NEW CERTIFICATE REQUEST")],
  ];
  for (const [name, input] of cases) assert.equal(verifyCsr(input).algorithm, "p256", name);
});

test("refuses weak, unsupported and broken requests with the right code", () => {
  const flipLast = (b: Buffer) => { b[b.length - 1]! ^= 0x01; return b; };
  const flipSubject = (b: Buffer) => { const i = b.indexOf("p256"); b[i] = "q".charCodeAt(0); return b; };
  const cases: Array<[string, Buffer | string, string]> = [
    ["RSA 1024", csr("rsa1024"), "KEY_TOO_WEAK"],
    ["secp256k1", csr("secp256k1"), "KEY_ALGORITHM_UNSUPPORTED"],
    ["Ed25519", csr("ed25519"), "KEY_ALGORITHM_UNSUPPORTED"],
    // SM2 is issued for since issue 13; OpenSSL without -sigopt distid signs with the empty ID.
    ["SM2 signed with the empty ID", csr("sm2"), "CSR_SM2_ID_EMPTY"],
    ["signature changed", flipLast(csr("p256")), "CSR_SIGNATURE_INVALID"],
    ["subject changed after signing", flipSubject(csr("p256")), "CSR_SIGNATURE_INVALID"],
    ["RSA signature changed", flipLast(csr("rsa2048")), "CSR_SIGNATURE_INVALID"],
    ["truncated", csr("p256").subarray(0, 100), "CSR_MALFORMED"],
    ["garbage", Buffer.from("not a request at all"), "CSR_MALFORMED"],
    ["empty", Buffer.alloc(0), "CSR_MALFORMED"],
    ["a certificate PEM", derToPem(csr("p256"), "CERTIFICATE"), "CSR_MALFORMED"],
    ["trailing bytes", Buffer.concat([csr("p256"), Buffer.from([0])]), "CSR_MALFORMED"],
    ["over 64 KiB", Buffer.alloc(65537, 0x30), "REQUEST_TOO_LARGE"],
    ["over 64 KiB of PEM text", "-".repeat(70000), "REQUEST_TOO_LARGE"],
  ];
  for (const [name, input, want] of cases) {
    assert.throws(() => verifyCsr(input), (e: unknown) => {
      assert.ok(isUkeyError(e), `${name}: ${String(e)}`);
      assert.equal(e.code, want, `${name}: ${e.message}`);
      return true;
    }, name);
  }
});

/** A CSR assembled here, to pair keys and signature algorithms that no tool would. */
function handMadeCsr(spki: Buffer, sigAlg: Buffer, signer: (data: Buffer) => Buffer, version = 0): Buffer {
  const info = seq(smallInteger(version), encodeName([["CN", "hand made"]]), spki, tlv(0xa0));
  return seq(info, sigAlg, bitString(signer(info)));
}

test("refuses a signature algorithm that does not fit the key", () => {
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = ec.publicKey.export({ type: "spki", format: "der" });
  const ecdsa = (d: Buffer) => sign("sha256", d, ec.privateKey);
  assert.equal(verifyCsr(handMadeCsr(spki, seq(oid("1.2.840.10045.4.3.2")), ecdsa)).algorithm, "p256");
  assert.throws(() => verifyCsr(handMadeCsr(spki, seq(oid("1.2.840.113549.1.1.11"), derNull), ecdsa)), code("KEY_ALGORITHM_UNSUPPORTED"));
  assert.throws(() => verifyCsr(handMadeCsr(spki, seq(oid("1.2.156.10197.1.501")), ecdsa)), code("KEY_ALGORITHM_UNSUPPORTED"));
  assert.throws(() => verifyCsr(handMadeCsr(spki, seq(oid("1.2.840.10045.4.3.2")), ecdsa, 1)), code("CSR_MALFORMED"));
  const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
  assert.throws(() => verifyCsr(handMadeCsr(spki, seq(oid("1.2.840.10045.4.3.2")), (d) => sign("sha256", d, other.privateKey))), code("CSR_SIGNATURE_INVALID"));
});
