import { randomBytes } from "node:crypto";
import { sm2 as smSm2, sm4 as smSm4 } from "sm-crypto-v2";
import { UkeyError } from "@ukey/policy";
import { bitString, children, contents, octetString, oid, oidToString, readWhole, seq, tlv, Tag, unsignedInteger } from "./der.js";
import { Sm2Oid, sm2PublicKeyOf, type Sm2KeyPair } from "./sm2.js";

// GM/T 0016 (SKF) ENVELOPEDKEYBLOB: how an SM2 encryption key pair made by
// the KMC reaches a UKey, the argument of SKF_ImportECCKeyPair. Every
// field, offset and choice is in docs/envelopes.md; in short (ULONG is a
// 32-bit little-endian integer, the structures are packed):
//
//   0  ULONG Version = 1
//   4  ULONG ulSymmAlgID = SGD_SM4_ECB (0x00000401)
//   8  ULONG ulBits = 256
//  12  BYTE  cbEncryptedPriKey[64]: 32 zero octets, then SM4-ECB(d) (32 octets, no padding)
//  76  ECCPUBLICKEYBLOB PubKey: ULONG BitLen = 256, X[64], Y[64] (each 32 zero octets, then the coordinate)
// 208  ECCCIPHERBLOB: X[64], Y[64] (C1, right-aligned), HASH[32] (C3), ULONG CipherLen = 16, Cipher[16] (C2)
// 388  end
//
// The SM4 key is SM2-encrypted (GB/T 32918.4, C1 || C3 || C2) under the
// holder's new signing public key, so only the key that made the CSR can
// open it.

/** SGD_SM4_ECB of GM/T 0006: the only symmetric algorithm written or read here. */
export const SGD_SM4_ECB = 0x00000401;
/** Size in octets of an ENVELOPEDKEYBLOB with a 16-octet SM4 key. */
export const ENVELOPED_KEY_BLOB_SIZE = 388;

/** An ENVELOPEDKEYBLOB, decoded. Points are 04||x||y. */
export interface EnvelopedKeyBlob {
  version: number;
  symmAlgId: number;
  bits: number;
  /** The 32 octets of SM4-ECB ciphertext of the private key (the right half of cbEncryptedPriKey). */
  encryptedPrivateKey: Buffer;
  /** The encryption key pair's public key. */
  publicKey: Buffer;
  /** The SM2 ciphertext of the SM4 key: C1 (a point), C3 (SM3 hash), C2. */
  c1: Buffer;
  c3: Buffer;
  c2: Buffer;
}

function malformed(reason: string): UkeyError {
  return new UkeyError("ENVELOPE_MALFORMED", { params: { reason } });
}

const right = (b: Buffer, size = 64): Buffer => Buffer.concat([Buffer.alloc(size - b.length), b]);
const ulong = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

function sm4Ecb(data: Buffer, key: Buffer, decrypt: boolean): Buffer {
  const opts = { mode: "ecb", padding: "none", output: "array" } as const;
  return Buffer.from(decrypt ? smSm4.decrypt(data, key, opts) : smSm4.encrypt(data, key, opts));
}

/**
 * The ENVELOPEDKEYBLOB that delivers `encryptionKey` to the UKey holding
 * the private key of `holderPublicKey` (04||x||y: the new signing key of
 * the CSR). A fresh SM4 key from the CSPRNG protects the private key; it is
 * never returned. Throws DER_MALFORMED for a bad key or point.
 */
export function buildEnvelopedKeyBlob(encryptionKey: Sm2KeyPair, holderPublicKey: Buffer): Buffer {
  if (!sm2PublicKeyOf(encryptionKey.privateKey).equals(encryptionKey.publicKey)) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "the encryption public key does not belong to its private key" } });
  }
  const sm4Key = randomBytes(16);
  try {
    return envelopeWith(encryptionKey, holderPublicKey, sm4Key);
  } finally {
    sm4Key.fill(0);
  }
}

function envelopeWith(encryptionKey: Sm2KeyPair, holderPublicKey: Buffer, sm4Key: Buffer): Buffer {
  let onCurve = false;
  try {
    onCurve = holderPublicKey.length === 65 && holderPublicKey[0] === 0x04 && smSm2.verifyPublicKey(holderPublicKey.toString("hex"));
  } catch {
    onCurve = false;
  }
  if (!onCurve) throw new UkeyError("DER_MALFORMED", { params: { reason: "the holder's SM2 public key is not a point on the curve" } });
  // sm-crypto-v2 returns x1 || y1 || C3 || C2 in hex (C1 without its 04), cipher mode 1 being C1C3C2.
  const c = Buffer.from(smSm2.doEncrypt(sm4Key, holderPublicKey.toString("hex"), 1), "hex");
  const x1 = c.subarray(0, 32), y1 = c.subarray(32, 64), c3 = c.subarray(64, 96), c2 = c.subarray(96);
  const pub = encryptionKey.publicKey;
  return Buffer.concat([
    ulong(1), ulong(SGD_SM4_ECB), ulong(256),
    right(sm4Ecb(encryptionKey.privateKey, sm4Key, false)),
    ulong(256), right(pub.subarray(1, 33)), right(pub.subarray(33, 65)),
    right(x1), right(y1), c3, ulong(c2.length), c2,
  ]);
}

/** Reads a 64-octet right-aligned 256-bit value; its left 32 octets must be zero. */
function value256(b: Buffer, at: number, name: string): Buffer {
  const field = b.subarray(at, at + 64);
  if (!field.subarray(0, 32).equals(Buffer.alloc(32))) throw malformed(`${name} is longer than 256 bits`);
  return Buffer.from(field.subarray(32));
}

/**
 * Decodes an ENVELOPEDKEYBLOB (no decryption). Throws ENVELOPE_MALFORMED
 * for a truncated or over-long blob, another version, algorithm or key
 * size, a CipherLen other than 16, or points off the curve.
 */
export function parseEnvelopedKeyBlob(blob: Buffer): EnvelopedKeyBlob {
  if (blob.length < ENVELOPED_KEY_BLOB_SIZE) throw malformed(`${blob.length} octets, an ENVELOPEDKEYBLOB has ${ENVELOPED_KEY_BLOB_SIZE}`);
  const version = blob.readUInt32LE(0), symmAlgId = blob.readUInt32LE(4), bits = blob.readUInt32LE(8);
  if (version !== 1) throw malformed(`version ${version}`);
  if (symmAlgId !== SGD_SM4_ECB) throw malformed(`symmetric algorithm 0x${symmAlgId.toString(16)}, not SGD_SM4_ECB`);
  if (bits !== 256 || blob.readUInt32LE(76) !== 256) throw malformed("an SM2 key has 256 bits");
  const cipherLen = blob.readUInt32LE(368);
  if (cipherLen !== 16) throw malformed(`CipherLen ${cipherLen}, an SM4 key has 16 octets`);
  if (blob.length !== ENVELOPED_KEY_BLOB_SIZE) throw malformed(`${blob.length} octets, an ENVELOPEDKEYBLOB has ${ENVELOPED_KEY_BLOB_SIZE}`);
  const point = (x: Buffer, y: Buffer, name: string) => {
    const p = Buffer.concat([Buffer.from([4]), x, y]);
    let ok = false;
    try {
      ok = smSm2.verifyPublicKey(p.toString("hex"));
    } catch {
      ok = false;
    }
    if (!ok) throw malformed(`${name} is not a point on the SM2 curve`);
    return p;
  };
  return {
    version, symmAlgId, bits,
    encryptedPrivateKey: value256(blob, 12, "cbEncryptedPriKey"),
    publicKey: point(value256(blob, 80, "PubKey.X"), value256(blob, 144, "PubKey.Y"), "PubKey"),
    c1: point(value256(blob, 208, "C1.X"), value256(blob, 272, "C1.Y"), "C1"),
    c3: Buffer.from(blob.subarray(336, 368)),
    c2: Buffer.from(blob.subarray(372, 388)),
  };
}

/**
 * The GB/T 35276 / GM/T 0009 SM2Cipher DER (SEQUENCE { x INTEGER, y
 * INTEGER, hash OCTET STRING, cipherText OCTET STRING }) of the blob's SM4
 * key ciphertext: what `openssl pkeyutl -decrypt` takes.
 */
export function sm2CipherDer(blob: EnvelopedKeyBlob): Buffer {
  return seq(unsignedInteger(blob.c1.subarray(1, 33)), unsignedInteger(blob.c1.subarray(33)), octetString(blob.c3), tlv(Tag.octetString, blob.c2));
}

/**
 * Opens an ENVELOPEDKEYBLOB with the holder's private key, as the UKey does
 * in SKF_ImportECCKeyPair: for test agents and the conformance tests.
 * Throws ENVELOPE_MALFORMED (also when the SM2 ciphertext does not open
 * with this key, or the private key does not match the public key).
 */
export function openEnvelopedKeyBlob(blob: Buffer, holder: Sm2KeyPair): Sm2KeyPair {
  const e = parseEnvelopedKeyBlob(blob);
  const c = Buffer.concat([e.c1.subarray(1), e.c3, e.c2]).toString("hex");
  const sm4Key = Buffer.from(smSm2.doDecrypt(c, holder.privateKey.toString("hex"), 1, { output: "array" }));
  // doDecrypt gives an empty result when C3 does not match (wrong key or damage).
  if (sm4Key.length !== 16) throw malformed("the SM4 key does not open with this private key");
  const d = sm4Ecb(e.encryptedPrivateKey, sm4Key, true);
  sm4Key.fill(0);
  let pub: Buffer;
  try {
    pub = sm2PublicKeyOf(d);
  } catch {
    throw malformed("the decrypted private key is not an SM2 private key");
  }
  if (!pub.equals(e.publicKey)) throw malformed("the decrypted private key does not match PubKey");
  return { privateKey: d, publicKey: pub };
}

/**
 * The GM/T 0009 (GB/T 35276) SM2EnvelopedKey of the same key delivery, the
 * ASN.1 form of the envelope:
 *
 *   SM2EnvelopedKey ::= SEQUENCE {
 *     symAlgID               AlgorithmIdentifier,  -- SM4-ECB, 1.2.156.10197.1.104.1, no parameters
 *     symEncryptedKey        SM2Cipher,            -- the SM4 key under the holder's signing key
 *     sm2PublicKey           SM2PublicKey,         -- BIT STRING 04||x||y of the encryption key
 *     sm2EncryptedPrivateKey BIT STRING }          -- SM4-ECB of the 32-octet private key
 *
 * Built from an ENVELOPEDKEYBLOB, so both forms carry the very same
 * ciphertexts (one SM4 key, one SM2 encryption). Throws ENVELOPE_MALFORMED
 * for a bad blob.
 */
export function sm2EnvelopedKeyFromBlob(blob: Buffer): Buffer {
  const e = parseEnvelopedKeyBlob(blob);
  return seq(seq(oid(Sm2Oid.sm4Ecb)), sm2CipherDer(e), bitString(e.publicKey), bitString(e.encryptedPrivateKey));
}

/**
 * Reads an SM2EnvelopedKey strictly (DER, SM4-ECB, an on-curve public key,
 * 32 octets of encrypted private key) into the fields of an
 * ENVELOPEDKEYBLOB. Throws ENVELOPE_MALFORMED.
 */
export function parseSm2EnvelopedKey(der: Buffer): EnvelopedKeyBlob {
  try {
    const top = readWhole(der);
    const parts = children(der, top);
    const [alg, cipher, pub, priv] = parts;
    if (top.tag !== Tag.sequence || parts.length !== 4 || !alg || !cipher || !pub || !priv) throw malformed("not an SM2EnvelopedKey");
    const algParts = children(der, alg);
    if (algParts.length !== 1 || algParts[0]!.tag !== Tag.oid || oidToString(contents(der, algParts[0]!)) !== Sm2Oid.sm4Ecb) throw malformed("symAlgID is not SM4-ECB");
    const [x, y, hash, c2, ...rest] = children(der, cipher);
    if (!x || !y || !hash || !c2 || rest.length || x.tag !== Tag.integer || y.tag !== Tag.integer || hash.tag !== Tag.octetString || c2.tag !== Tag.octetString) {
      throw malformed("symEncryptedKey is not an SM2Cipher");
    }
    const coord = (n: typeof x) => {
      let v = contents(der, n);
      while (v.length > 32 && v[0] === 0) v = v.subarray(1);
      if (v.length > 32) throw malformed("SM2Cipher coordinate");
      return Buffer.concat([Buffer.alloc(32 - v.length), v]);
    };
    const bits = (n: typeof x, size: number, name: string) => {
      const b = contents(der, n);
      if (n.tag !== Tag.bitString || b[0] !== 0 || b.length !== size + 1) throw malformed(name);
      return Buffer.from(b.subarray(1));
    };
    const publicKey = bits(pub, 65, "sm2PublicKey");
    const encryptedPrivateKey = bits(priv, 32, "sm2EncryptedPrivateKey");
    if (contents(der, hash).length !== 32 || contents(der, c2).length !== 16) throw malformed("SM2Cipher sizes");
    // Re-encoded as a blob and parsed again, so both forms pass the same point and size checks.
    const blob = Buffer.concat([
      ulong(1), ulong(SGD_SM4_ECB), ulong(256), right(encryptedPrivateKey),
      ulong(256), right(publicKey.subarray(1, 33)), right(publicKey.subarray(33)),
      right(coord(x)), right(coord(y)), contents(der, hash), ulong(16), contents(der, c2),
    ]);
    if (publicKey[0] !== 4) throw malformed("sm2PublicKey is not an uncompressed point");
    return parseEnvelopedKeyBlob(blob);
  } catch (e) {
    if (e instanceof UkeyError && e.code === "ENVELOPE_MALFORMED") throw e;
    throw malformed("not a DER SM2EnvelopedKey");
  }
}
