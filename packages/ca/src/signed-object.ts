import { randomBytes, verify as cryptoVerify } from "node:crypto";
import { keyAlgorithmOfSpki, Oid } from "./algorithms.js";
import { bitString, children, contents, octetString, oidToString, readWhole, seq, smallInteger, Tag, tlv } from "./der.js";
import { publicKeyFromSpki } from "./public-key.js";
import { sm2PointOfSpki, sm2Verify } from "./sm2.js";
import type { CaSigner } from "./types.js";

// Signature algorithms a CA certificate or CRL may carry here: what init signs with, and what openssl signs with
// at an offline ceremony. SHA-1 is not among them: a collision on a CA certificate would be a forged CA.
const ecdsaHashes: Record<string, string> = { [Oid.ecdsaSha256]: "sha256", [Oid.ecdsaSha384]: "sha384", [Oid.ecdsaSha512]: "sha512" };
const pkcs1Hashes: Record<string, string> = { [Oid.sha256WithRsa]: "sha256", [Oid.sha384WithRsa]: "sha384", [Oid.sha512WithRsa]: "sha512" };

/**
 * Whether a signed X.509 object (a certificate or a CRL: SEQUENCE of the
 * signed part, its AlgorithmIdentifier and the signature BIT STRING) was
 * signed by the key `issuerSpki`. ECDSA and PKCS#1 v1.5 RSA with SHA-2, and
 * SM3withSM2 with the standard distinguishing ID. Anything that cannot be
 * parsed, an algorithm not listed, or a key of another type is simply not
 * signed by it: this never throws.
 */
export function signedBy(der: Buffer, issuerSpki: Buffer): boolean {
  try {
    const top = readWhole(der);
    const [tbsN, algN, sigN, ...extra] = children(der, top);
    if (!tbsN || !algN || !sigN || extra.length || tbsN.tag !== Tag.sequence || algN.tag !== Tag.sequence || sigN.tag !== Tag.bitString) return false;
    const tbs = der.subarray(tbsN.start, tbsN.end);
    const [oidN] = children(der, algN);
    if (!oidN || oidN.tag !== Tag.oid) return false;
    const sigOid = oidToString(contents(der, oidN));
    const bits = contents(der, sigN);
    if (bits.length < 2 || bits[0] !== 0) return false;
    const signature = bits.subarray(1);
    const alg = keyAlgorithmOfSpki(issuerSpki);
    if (alg === "sm2") return sigOid === Oid.sm3WithSm2 && sm2Verify(tbs, signature, sm2PointOfSpki(issuerSpki));
    const key = publicKeyFromSpki(issuerSpki, alg);
    if (alg === "p256" || alg === "p384") {
      const hash = ecdsaHashes[sigOid];
      return hash !== undefined && cryptoVerify(hash, tbs, { key, dsaEncoding: "der" }, signature);
    }
    const hash = pkcs1Hashes[sigOid];
    return hash !== undefined && cryptoVerify(hash, tbs, key, signature);
  } catch {
    return false;
  }
}

/**
 * A PKCS#10 certification request (DER) for the key `signer` holds, with
 * the subject Name `subjectName` (DER) and no attributes, signed by that
 * key: what an offline root signs the issuing CA's certificate from.
 * Throws what signer.sign throws (HSM_*).
 */
export async function buildCsr(signer: CaSigner, subjectName: Buffer): Promise<Buffer> {
  const info = seq(smallInteger(0), subjectName, signer.spki, tlv(0xa0));
  return seq(info, signer.signatureAlgorithm, bitString(await signer.sign(info)));
}

/**
 * Whether `signer` holds the private key of `spki`: it signs a fresh random
 * challenge (as the signed part of a signed object, with its own signature
 * algorithm) and `spki` must verify the signature. Comparing public keys
 * alone would trust whatever file names the key; this trusts only the key.
 * Throws what signer.sign throws (HSM_*).
 */
export async function holdsKeyOf(signer: CaSigner, spki: Buffer): Promise<boolean> {
  const tbs = seq(octetString(randomBytes(32)));
  const signed = seq(tbs, signer.signatureAlgorithm, bitString(await signer.sign(tbs)));
  return signer.spki.equals(spki) && signedBy(signed, spki);
}
