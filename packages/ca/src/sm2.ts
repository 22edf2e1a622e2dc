import { sm2 as smSm2, sm3 as smSm3 } from "sm-crypto-v2";
import { UkeyError } from "@ukey/policy";
import { bitString, children, contents, octetString, oid, oidToString, readWhole, seq, tlv, Tag, unsignedInteger } from "./der.js";

// SM2 (GB/T 32918, GM/T 0003) through sm-crypto-v2, never Node's crypto:
// Node signs and verifies SM2 only with an empty distinguishing ID, while
// every Chinese CA, UKey and OpenSSL with `distid:1234567812345678` uses the
// standard one. Keys here are plain bytes: a private key is the 32-octet
// scalar d, a public key the 65-octet uncompressed point 04||x||y.

/** The default distinguishing ID of GM/T 0009 (ENTL 0x0080), which CSRs, certificates, CRLs and OCSP responses are signed with. */
export const SM2_DEFAULT_ID = "1234567812345678";

/** SM2 object identifiers (GM/T 0006). */
export const Sm2Oid = {
  /** The SM2 curve, as the namedCurve of an id-ecPublicKey SubjectPublicKeyInfo (GM/T 0015). */
  curve: "1.2.156.10197.1.301",
  /** SM3withSM2 signatures (GM/T 0015: AlgorithmIdentifier without parameters). */
  sm3WithSm2: "1.2.156.10197.1.501",
  /** SM2 encryption (GM/T 0006 sm2-3). */
  sm2Encrypt: "1.2.156.10197.1.301.3",
  /** SM4 (GM/T 0006), and SM4-ECB below it. */
  sm4: "1.2.156.10197.1.104",
  sm4Ecb: "1.2.156.10197.1.104.1",
  ecPublicKey: "1.2.840.10045.2.1",
} as const;

/** The order n of the SM2 curve's base point. */
const n = 0xfffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123n;

/** An SM2 key pair: `privateKey` the 32-octet scalar d, `publicKey` 04||x||y (65 octets). */
export interface Sm2KeyPair {
  privateKey: Buffer;
  publicKey: Buffer;
}

function bad(reason: string): UkeyError {
  return new UkeyError("DER_MALFORMED", { params: { reason } });
}

function checkPoint(publicKey: Buffer): void {
  if (publicKey.length !== 65 || publicKey[0] !== 0x04) throw bad("an SM2 public key is a 65-octet uncompressed point");
  let onCurve = false;
  try {
    onCurve = smSm2.verifyPublicKey(publicKey.toString("hex"));
  } catch {
    onCurve = false;
  }
  if (!onCurve) throw bad("the SM2 public key is not a point on the curve");
}

function checkScalar(privateKey: Buffer): bigint {
  const d = privateKey.length === 32 ? BigInt(`0x${privateKey.toString("hex")}`) : 0n;
  // GB/T 32918.1 6.1: d in [1, n-2], since signing divides by 1+d.
  if (d < 1n || d > n - 2n) throw bad("an SM2 private key is a 32-octet integer in [1, n-2]");
  return d;
}

/** SM3 of `data`. Never throws. */
export function sm3(data: Uint8Array): Buffer {
  return Buffer.from(smSm3(data), "hex");
}

/** A fresh SM2 key pair from the platform's CSPRNG. */
export function sm2GenerateKeyPair(): Sm2KeyPair {
  const k = smSm2.generateKeyPairHex();
  return { privateKey: Buffer.from(k.privateKey.padStart(64, "0"), "hex"), publicKey: Buffer.from(k.publicKey, "hex") };
}

/** The public point of a private scalar. Throws DER_MALFORMED for a scalar out of range. */
export function sm2PublicKeyOf(privateKey: Buffer): Buffer {
  checkScalar(privateKey);
  return Buffer.from(smSm2.getPublicKeyFromPrivateKey(privateKey.toString("hex")), "hex");
}

/**
 * Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA) of GB/T 32918.2 5.5,
 * for `id` (default SM2_DEFAULT_ID; "" for the empty ID). Throws
 * DER_MALFORMED for a point not on the curve, REQUEST_INVALID for an ID
 * longer than 8191 octets (ENTL is 16 bits of bit length).
 */
export function sm2Z(publicKey: Buffer, id: string = SM2_DEFAULT_ID): Buffer {
  checkPoint(publicKey);
  if (Buffer.byteLength(id) > 8191) throw new UkeyError("REQUEST_INVALID", { params: { reason: "SM2 ID too long" } });
  return Buffer.from(smSm2.getZ(publicKey.toString("hex"), id));
}

/** e = SM3(Z || M), what an SM2 signature signs. Throws what sm2Z throws. */
export function sm2Digest(message: Buffer, publicKey: Buffer, id: string = SM2_DEFAULT_ID): Buffer {
  return sm3(Buffer.concat([sm2Z(publicKey, id), message]));
}

/** DER SM2Signature ::= SEQUENCE { r INTEGER, s INTEGER } (GM/T 0009) from the 64-hex-digit r||s. */
function derSignature(rs: string): Buffer {
  return seq(unsignedInteger(Buffer.from(rs.slice(0, 64), "hex")), unsignedInteger(Buffer.from(rs.slice(64), "hex")));
}

/**
 * A signing function for one key with its Z computed once: `sign(message)`
 * returns a DER SM2Signature over SM3(Z || message) with ID `id` (default
 * SM2_DEFAULT_ID). The nonce k comes from the platform's CSPRNG.
 * Throws DER_MALFORMED for a bad key.
 */
export function sm2Signer(key: Sm2KeyPair, id: string = SM2_DEFAULT_ID): (message: Buffer) => Buffer {
  checkScalar(key.privateKey);
  const z = sm2Z(key.publicKey, id);
  const d = key.privateKey.toString("hex");
  if (!sm2PublicKeyOf(key.privateKey).equals(key.publicKey)) throw bad("the SM2 public key does not belong to the private key");
  return (message) => derSignature(smSm2.doSignature(sm3(Buffer.concat([z, message])), d, { hash: false }));
}

/** sm2Signer's signature, once. Throws what sm2Signer throws. */
export function sm2Sign(message: Buffer, key: Sm2KeyPair, id: string = SM2_DEFAULT_ID): Buffer {
  return sm2Signer(key, id)(message);
}

/**
 * An SM2 signature with a chosen nonce `k`: for the known-answer tests of
 * GM/T 0003.5 only. A k used twice gives the private key away, so nothing
 * but a test may call this.
 */
export function sm2SignWithNonceForTest(message: Buffer, key: Sm2KeyPair, k: Buffer, id: string = SM2_DEFAULT_ID): Buffer {
  const kPoint = smSm2.getPublicKeyFromPrivateKey(k.toString("hex"));
  const x1 = BigInt(`0x${kPoint.slice(2, 66)}`);
  const e = sm2Digest(message, key.publicKey, id);
  return derSignature(smSm2.doSignature(e, key.privateKey.toString("hex"), { hash: false, pointPool: [{ k: BigInt(`0x${k.toString("hex")}`), x1 }] }));
}

/**
 * r and s of a DER SM2Signature, read strictly: a SEQUENCE of exactly two
 * minimally encoded positive INTEGERs in [1, n-1]. Undefined for anything
 * else; never throws.
 */
export function sm2SignatureValues(der: Buffer): { r: bigint; s: bigint } | undefined {
  try {
    const top = readWhole(der);
    const parts = children(der, top);
    if (top.tag !== Tag.sequence || parts.length !== 2) return undefined;
    const values = parts.map((p) => {
      const c = contents(der, p);
      if (p.tag !== Tag.integer || c.length === 0 || c.length > 33 || c[0]! & 0x80) return 0n;
      if (c.length > 1 && c[0] === 0 && !(c[1]! & 0x80)) return 0n; // not minimal
      return BigInt(`0x${c.toString("hex")}`);
    });
    const [r, s] = values as [bigint, bigint];
    if (r < 1n || r >= n || s < 1n || s >= n) return undefined;
    return { r, s };
  } catch {
    return undefined;
  }
}

/**
 * Whether `signature` (DER SM2Signature) is a valid SM2 signature of
 * `message` by `publicKey` (04||x||y) with distinguishing ID `id` (default
 * SM2_DEFAULT_ID). False for anything malformed, including a point off the
 * curve; never throws.
 */
export function sm2Verify(message: Buffer, signature: Buffer, publicKey: Buffer, id: string = SM2_DEFAULT_ID): boolean {
  const rs = sm2SignatureValues(signature);
  if (!rs) return false;
  try {
    const e = sm2Digest(message, publicKey, id);
    const hex = rs.r.toString(16).padStart(64, "0") + rs.s.toString(16).padStart(64, "0");
    return smSm2.doVerifySignature(e, hex, publicKey.toString("hex"), { hash: false });
  } catch {
    return false;
  }
}

/** DER AlgorithmIdentifier of SM3withSM2, without parameters (GM/T 0015). */
export const sm3WithSm2AlgorithmIdentifier: Buffer = seq(oid(Sm2Oid.sm3WithSm2));

/** The SubjectPublicKeyInfo of an SM2 key: id-ecPublicKey with namedCurve SM2 (GM/T 0015). Throws DER_MALFORMED for a bad point. */
export function sm2Spki(publicKey: Buffer): Buffer {
  checkPoint(publicKey);
  return seq(seq(oid(Sm2Oid.ecPublicKey), oid(Sm2Oid.curve)), bitString(publicKey));
}

/** The point of an SM2 SubjectPublicKeyInfo (as keyAlgorithmOfSpki reads it "sm2"). Throws DER_MALFORMED. */
export function sm2PointOfSpki(spki: Buffer): Buffer {
  const top = readWhole(spki);
  const [alg, key] = children(spki, top);
  if (!alg || !key || key.tag !== Tag.bitString) throw bad("not a SubjectPublicKeyInfo");
  const [a, c] = children(spki, alg);
  if (!a || !c || oidToString(contents(spki, a)) !== Sm2Oid.ecPublicKey || c.tag !== Tag.oid || oidToString(contents(spki, c)) !== Sm2Oid.curve) {
    throw bad("not an SM2 public key");
  }
  const bits = contents(spki, key);
  if (bits[0] !== 0) throw bad("SM2 public key bit string");
  const point = Buffer.from(bits.subarray(1));
  checkPoint(point);
  return point;
}

/**
 * The unencrypted PKCS#8 PrivateKeyInfo of an SM2 key (RFC 5915
 * ECPrivateKey with the public key, under id-ecPublicKey/SM2), as
 * `openssl pkey` reads and writes it. Throws DER_MALFORMED for a bad key.
 */
export function sm2Pkcs8(key: Sm2KeyPair): Buffer {
  checkScalar(key.privateKey);
  checkPoint(key.publicKey);
  const ecPrivateKey = seq(tlv(Tag.integer, Buffer.from([1])), octetString(key.privateKey), tlv(0xa1, bitString(key.publicKey)));
  return seq(tlv(Tag.integer, Buffer.from([0])), seq(oid(Sm2Oid.ecPublicKey), oid(Sm2Oid.curve)), octetString(ecPrivateKey));
}

/**
 * The SM2 key of a PKCS#8 PrivateKeyInfo, or undefined when it is not an
 * SM2 key (another algorithm or curve). The public key is computed when the
 * file does not carry it, and must match when it does. Throws DER_MALFORMED.
 */
export function sm2KeyFromPkcs8(der: Buffer): Sm2KeyPair | undefined {
  const top = readWhole(der);
  const [version, alg, keyOctets] = children(der, top);
  if (!version || !alg || !keyOctets || alg.tag !== Tag.sequence || keyOctets.tag !== Tag.octetString) throw bad("not a PKCS#8 PrivateKeyInfo");
  const [a, c] = children(der, alg);
  if (!a || oidToString(contents(der, a)) !== Sm2Oid.ecPublicKey) return undefined;
  if (!c || c.tag !== Tag.oid || oidToString(contents(der, c)) !== Sm2Oid.curve) return undefined;
  const ec = Buffer.from(contents(der, keyOctets));
  const fields = children(ec, readWhole(ec));
  const dNode = fields[1];
  if (!dNode || dNode.tag !== Tag.octetString) throw bad("ECPrivateKey");
  let d = Buffer.from(contents(ec, dNode));
  if (d.length < 32) d = Buffer.concat([Buffer.alloc(32 - d.length), d]);
  const publicKey = sm2PublicKeyOf(d);
  const pubField = fields.find((f) => f.tag === 0xa1);
  if (pubField) {
    const bits = children(ec, pubField)[0];
    if (!bits || bits.tag !== Tag.bitString || !contents(ec, bits).subarray(1).equals(publicKey)) throw bad("the SM2 public key does not belong to the private key");
  }
  return { privateKey: d, publicKey };
}
