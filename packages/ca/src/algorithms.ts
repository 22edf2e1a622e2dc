import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import { children, contents, derNull, oid, oidToString, readNode, readWhole, seq, Tag } from "./der.js";

/** Object identifiers this package reads or writes. */
export const Oid = {
  ecPublicKey: "1.2.840.10045.2.1",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
  secp256k1: "1.3.132.0.10",
  sm2: "1.2.156.10197.1.301",
  sm3WithSm2: "1.2.156.10197.1.501",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsassaPss: "1.2.840.113549.1.1.10",
  sha1WithRsa: "1.2.840.113549.1.1.5",
  sha256WithRsa: "1.2.840.113549.1.1.11",
  sha384WithRsa: "1.2.840.113549.1.1.12",
  sha512WithRsa: "1.2.840.113549.1.1.13",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  ecdsaSha384: "1.2.840.10045.4.3.3",
  ecdsaSha512: "1.2.840.10045.4.3.4",
  ed25519: "1.3.101.112",
  ed448: "1.3.101.113",
  sha1: "1.3.14.3.2.26",
  sha256: "2.16.840.1.101.3.4.2.1",
  sha384: "2.16.840.1.101.3.4.2.2",
  sha512: "2.16.840.1.101.3.4.2.3",
  mgf1: "1.2.840.113549.1.1.8",
} as const;

const names: Record<string, string> = {
  [Oid.secp256k1]: "EC secp256k1",
  [Oid.sm2]: "SM2",
  [Oid.ed25519]: "Ed25519",
  [Oid.ed448]: "Ed448",
  [Oid.rsassaPss]: "RSASSA-PSS key",
  "1.2.840.10040.4.1": "DSA",
  "1.2.840.10046.2.1": "DH",
  "1.3.101.110": "X25519",
};

/** A readable name for an algorithm OID, for error messages. */
export function algorithmName(dotted: string): string {
  return names[dotted] ?? dotted;
}

function unsupported(algorithm: string): UkeyError {
  return new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm } });
}

/**
 * The KeyAlgorithm of a DER SubjectPublicKeyInfo, read structurally (no key
 * object is built, so this is cheap enough for every issuance). Throws
 * DER_MALFORMED when it is not an SPKI, KEY_ALGORITHM_UNSUPPORTED for
 * other algorithms and curves, KEY_TOO_WEAK for RSA under 2048 bits.
 */
export function keyAlgorithmOfSpki(spki: Buffer): KeyAlgorithm {
  const top = readWhole(spki);
  const [algNode, keyNode] = children(spki, top);
  if (top.tag !== Tag.sequence || !algNode || !keyNode || algNode.tag !== Tag.sequence || keyNode.tag !== Tag.bitString) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "not a SubjectPublicKeyInfo" } });
  }
  const [algOid, params] = children(spki, algNode);
  if (!algOid || algOid.tag !== Tag.oid) throw new UkeyError("DER_MALFORMED", { params: { reason: "no key algorithm" } });
  const alg = oidToString(contents(spki, algOid));
  if (alg === Oid.ecPublicKey) {
    const curve = params && params.tag === Tag.oid ? oidToString(contents(spki, params)) : "explicit curve parameters";
    if (curve === Oid.p256) return "p256";
    if (curve === Oid.p384) return "p384";
    if (curve === Oid.sm2) {
      const bits = contents(spki, keyNode);
      // An uncompressed point 04||x||y; whether it lies on the curve is checked where it is used (sm2.ts).
      if (bits.length !== 66 || bits[0] !== 0 || bits[1] !== 0x04) throw new UkeyError("DER_MALFORMED", { params: { reason: "an SM2 public key is an uncompressed point" } });
      return "sm2";
    }
    throw unsupported(algorithmName(curve) === curve ? `EC ${curve}` : algorithmName(curve));
  }
  if (alg === Oid.rsaEncryption) {
    const bits = rsaModulusBits(contents(spki, keyNode));
    if (bits < 2048) throw new UkeyError("KEY_TOO_WEAK", { params: { algorithm: `RSA ${bits}` } });
    if (bits === 2048) return "rsa2048";
    if (bits === 3072) return "rsa3072";
    if (bits === 4096) return "rsa4096";
    throw unsupported(`RSA ${bits}`);
  }
  throw unsupported(algorithmName(alg));
}

function rsaModulusBits(bitStringContents: Buffer): number {
  if (bitStringContents[0] !== 0) throw new UkeyError("DER_MALFORMED", { params: { reason: "RSA key bit string" } });
  const key = bitStringContents.subarray(1);
  const [n] = children(key, readWhole(key));
  if (!n || n.tag !== Tag.integer) throw new UkeyError("DER_MALFORMED", { params: { reason: "RSA modulus" } });
  let p = n.contentStart;
  while (p < n.end && key[p] === 0) p++;
  if (p === n.end) return 0;
  return (n.end - p - 1) * 8 + (32 - Math.clz32(key[p]!));
}

/** The subjectPublicKey BIT STRING contents without the unused-bits octet (what SKI and OCSP key hashes cover). */
export function subjectPublicKeyBits(spki: Buffer): Buffer {
  const top = readWhole(spki);
  const key = children(spki, top)[1];
  if (!key || key.tag !== Tag.bitString) throw new UkeyError("DER_MALFORMED", { params: { reason: "not a SubjectPublicKeyInfo" } });
  return spki.subarray(key.contentStart + 1, key.end);
}

/** Hash used with signatures made by keys of this algorithm (SM2 signs with SM3 over Z || M, see sm2.ts). */
export function hashFor(alg: KeyAlgorithm): "sha256" | "sha384" | "sm3" {
  return alg === "p384" ? "sha384" : alg === "sm2" ? "sm3" : "sha256";
}

/** DER AlgorithmIdentifier of the signatures a key of `alg` makes here. */
export function signatureAlgorithmFor(alg: KeyAlgorithm): Buffer {
  switch (alg) {
    case "p256": return seq(oid(Oid.ecdsaSha256));
    case "p384": return seq(oid(Oid.ecdsaSha384));
    // GM/T 0015: SM3withSM2 with absent parameters.
    case "sm2": return seq(oid(Oid.sm3WithSm2));
    default: return seq(oid(Oid.sha256WithRsa), derNull);
  }
}

/** DER of the namedCurve parameters of an EC algorithm. */
export function curveOidFor(alg: "p256" | "p384"): Buffer {
  return oid(alg === "p256" ? Oid.p256 : Oid.p384);
}

/** Reads the first OID inside an AlgorithmIdentifier DER. */
export function algorithmIdentifierOid(der: Buffer): string {
  const n = readNode(der);
  const first = children(der, n)[0];
  if (!first || first.tag !== Tag.oid) throw new UkeyError("DER_MALFORMED", { params: { reason: "AlgorithmIdentifier" } });
  return oidToString(contents(der, first));
}
