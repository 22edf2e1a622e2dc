import { sm2 as smSm2, sm3 as smSm3 } from "sm-crypto-v2";

// SM2 on the agent's side of a UKey: the key stays on the token, the agent
// only computes what GM/T 0016 leaves to the caller (SM3(Z || M)) and moves
// public keys between SKF blobs and SubjectPublicKeyInfo. Through
// sm-crypto-v2 as packages/ca/src/sm2.ts does, never Node's crypto, which
// knows SM2 only with an empty ID.

/** The default distinguishing ID of GM/T 0009, which CSRs and certificates are signed with. */
export const SM2_DEFAULT_ID = "1234567812345678";
/** SM3withSM2 (GM/T 0006): a signature AlgorithmIdentifier without parameters. */
export const SM3_WITH_SM2_OID = "1.2.156.10197.1.501";
/** The SM2 curve, the namedCurve of an id-ecPublicKey SubjectPublicKeyInfo (GM/T 0015). */
export const SM2_CURVE_OID = "1.2.156.10197.1.301";

/** SEQUENCE { SEQUENCE { id-ecPublicKey, sm2 }, BIT STRING (65 octets) }: everything before the point. */
const spkiPrefix = Buffer.from("3059301306072a8648ce3d020106082a811ccf5501822d034200", "hex");

/** SM3 of `data`. */
export function sm3(data: Uint8Array): Buffer {
  return Buffer.from(smSm3(data), "hex");
}

/** True when `point` is 04||x||y on the SM2 curve. */
export function isSm2Point(point: Uint8Array): boolean {
  if (point.length !== 65 || point[0] !== 0x04) return false;
  try {
    return smSm2.verifyPublicKey(Buffer.from(point).toString("hex"));
  } catch {
    return false;
  }
}

/** DER SubjectPublicKeyInfo of an SM2 public point (04||x||y). */
export function sm2Spki(point: Uint8Array): Buffer {
  if (point.length !== 65 || point[0] !== 0x04) throw new RangeError("an SM2 public key is a 65-octet uncompressed point");
  return Buffer.concat([spkiPrefix, point]);
}

/** The point of an SM2 SubjectPublicKeyInfo as sm2Spki writes it (the only DER form it has), or undefined for any other key. */
export function sm2PointOfSpki(spki: Uint8Array): Buffer | undefined {
  const b = Buffer.from(spki);
  if (b.length !== spkiPrefix.length + 65 || !b.subarray(0, spkiPrefix.length).equals(spkiPrefix)) return undefined;
  return b.subarray(spkiPrefix.length);
}

/** e = SM3(Z || M) of GB/T 32918.2 for the public key `point` and ID `id` (default the standard one): what SKF_ECCSignData signs. */
export function sm2Digest(message: Uint8Array, point: Uint8Array, id: string = SM2_DEFAULT_ID): Buffer {
  const z = Buffer.from(smSm2.getZ(Buffer.from(point).toString("hex"), id));
  return sm3(Buffer.concat([z, Buffer.from(message)]));
}

/** Verifies a raw r||s SM2 signature over the digest e (for checks after signing on the token). */
export function sm2VerifyDigest(e: Uint8Array, rs: Uint8Array, point: Uint8Array): boolean {
  try {
    return smSm2.doVerifySignature(Buffer.from(e), Buffer.from(rs).toString("hex"), Buffer.from(point).toString("hex"), { hash: false });
  } catch {
    return false;
  }
}
