import assert from "node:assert/strict";
import { children, contents, raw, readWhole, Tag } from "../../src/der.js";
import { derToPem } from "../../src/index.js";
import { SM2_DEFAULT_ID } from "../../src/sm2.js";
import { openssl, type tempDir } from "./openssl.js";

/** TBS and signature bits of a signed X.509 structure (certificate, CRL, BasicOCSPResponse). */
export function tbsAndSignature(der: Buffer): { tbs: Buffer; algorithm: Buffer; signature: Buffer } {
  const [tbs, alg, sig] = children(der, readWhole(der));
  assert.ok(tbs && alg && sig && sig.tag === Tag.bitString, "a signed structure");
  return { tbs: raw(der, tbs), algorithm: raw(der, alg), signature: contents(der, sig).subarray(1) };
}

/** The BasicOCSPResponse inside a successful OCSPResponse. */
export function basicOcspResponse(der: Buffer): Buffer {
  const [, bytes] = children(der, readWhole(der));
  assert.ok(bytes && bytes.tag === 0xa0, "responseBytes");
  const rb = children(der, bytes)[0]!;
  const [, octets] = children(der, rb);
  return Buffer.from(contents(der, octets!));
}

/**
 * Checks with the OpenSSL CLI that `der`'s signature is SM3withSM2 with the
 * standard distinguishing ID under `signerSpki`, over its TBS bytes
 * (`openssl dgst -sm3 -verify ... -sigopt distid:1234567812345678`): what
 * `openssl verify -check_ss_sig`, `openssl crl` and `openssl ocsp` cannot
 * do today, as they verify SM2 with the empty ID. Also checks that the
 * empty ID does NOT verify it, so the ID is really in the signature.
 */
export function assertOpensslSm2Signature(tmp: ReturnType<typeof tempDir>, name: string, der: Buffer, signerSpki: Buffer): void {
  const { tbs, algorithm, signature } = tbsAndSignature(der);
  assert.equal(algorithm.toString("hex"), "300a06082a811ccf55018375", `${name}: SM3withSM2 without parameters`);
  const tbsPath = tmp.write(`${name}.tbs`, tbs);
  const sigPath = tmp.write(`${name}.sig`, signature);
  const pub = tmp.write(`${name}.signer.pem`, derToPem(signerSpki, "PUBLIC KEY"));
  const ok = openssl(["dgst", "-sm3", "-verify", pub, "-sigopt", `distid:${SM2_DEFAULT_ID}`, "-signature", sigPath, tbsPath]);
  assert.equal(ok.status, 0, `${name}: ${ok.stdout}${ok.stderr}`);
  assert.match(ok.stdout, /Verified OK/);
  const empty = openssl(["dgst", "-sm3", "-verify", pub, "-signature", sigPath, tbsPath]);
  assert.notEqual(empty.status, 0, `${name}: verifies with the empty ID too`);
}
