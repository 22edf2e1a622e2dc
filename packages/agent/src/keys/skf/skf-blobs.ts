import { createPublicKey } from "node:crypto";
import { sm2Spki } from "../sm2.js";

// The packed (#pragma pack(1)) structures of GM/T 0016 that cross the FFI,
// read and written as plain buffers: ULONG is a 32-bit little-endian
// unsigned integer, ECC coordinates are 64 octets with the 256-bit value
// right-aligned.

/** sizeof(DEVINFO): Version 2, Manufacturer 64, Issuer 64, Label 32, SerialNumber 32, two VERSIONs, eight ULONGs, Reserved 64. */
export const DEVINFO_SIZE = 294;
/** sizeof(ECCPUBLICKEYBLOB): BitLen, X[64], Y[64]. */
export const ECC_PUBLIC_KEY_BLOB_SIZE = 132;
/** sizeof(ECCSIGNATUREBLOB): r[64], s[64]. */
export const ECC_SIGNATURE_BLOB_SIZE = 128;
/** sizeof(RSAPUBLICKEYBLOB): AlgID 4, BitLen 4, Modulus[256], PublicExponent[4]. */
export const RSA_PUBLIC_KEY_BLOB_SIZE = 268;

/** What the agent reads of DEVINFO. */
export interface DevInfo {
  version: string;
  manufacturer: string;
  issuer: string;
  label: string;
  serial: string;
  hardwareVersion: string;
  firmwareVersion: string;
  algSymCap: number;
  algAsymCap: number;
  algHashCap: number;
  devAuthAlgId: number;
  totalSpace: number;
  freeSpace: number;
}

/** A fixed-size CHAR field: up to the first NUL, trimmed (vendors pad with NULs or blanks). */
export function cString(b: Buffer, at = 0, size = b.length - at): string {
  const field = b.subarray(at, at + size);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? field.length : end).toString("utf8").trim();
}

export function parseDevInfo(b: Buffer): DevInfo {
  if (b.length < DEVINFO_SIZE) throw new RangeError(`DEVINFO has ${DEVINFO_SIZE} octets, got ${b.length}`);
  const v = (at: number) => `${b[at]}.${b[at + 1]}`;
  return {
    version: v(0),
    manufacturer: cString(b, 2, 64),
    issuer: cString(b, 66, 64),
    label: cString(b, 130, 32),
    serial: cString(b, 162, 32),
    hardwareVersion: v(194),
    firmwareVersion: v(196),
    algSymCap: b.readUInt32LE(198),
    algAsymCap: b.readUInt32LE(202),
    algHashCap: b.readUInt32LE(206),
    devAuthAlgId: b.readUInt32LE(210),
    totalSpace: b.readUInt32LE(214),
    freeSpace: b.readUInt32LE(218),
  };
}

/**
 * The names of a "multi-string" (SKF_EnumDev, SKF_EnumApplication,
 * SKF_EnumContainer): names each ended by a NUL, the list by a second NUL.
 * Only the first `size` octets count; an empty list is "" or "\0\0".
 */
export function parseNameList(b: Buffer, size = b.length): string[] {
  const out: string[] = [];
  let start = 0;
  const end = Math.min(size, b.length);
  for (let i = 0; i < end; i++) {
    if (b[i] !== 0) continue;
    if (i === start) break;
    out.push(b.subarray(start, i).toString("utf8"));
    start = i + 1;
  }
  if (start < end && b.subarray(start, end).every((c) => c !== 0)) out.push(b.subarray(start, end).toString("utf8"));
  return out;
}

/** 04||x||y of an ECCPUBLICKEYBLOB for a 256-bit key. Throws RangeError for another size or non-zero high octets. */
export function eccBlobToPoint(b: Buffer): Buffer {
  if (b.length < ECC_PUBLIC_KEY_BLOB_SIZE) throw new RangeError(`ECCPUBLICKEYBLOB has ${ECC_PUBLIC_KEY_BLOB_SIZE} octets, got ${b.length}`);
  const bits = b.readUInt32LE(0);
  if (bits !== 256) throw new RangeError(`an SM2 public key has 256 bits, the blob says ${bits}`);
  const x = b.subarray(4, 68), y = b.subarray(68, 132);
  if (x.subarray(0, 32).some((c) => c !== 0) || y.subarray(0, 32).some((c) => c !== 0)) throw new RangeError("coordinates longer than 256 bits");
  return Buffer.concat([Buffer.from([4]), x.subarray(32), y.subarray(32)]);
}

/** The ECCPUBLICKEYBLOB of a 256-bit point 04||x||y. */
export function pointToEccBlob(point: Buffer): Buffer {
  const b = Buffer.alloc(ECC_PUBLIC_KEY_BLOB_SIZE);
  b.writeUInt32LE(256, 0);
  point.subarray(1, 33).copy(b, 4 + 32);
  point.subarray(33, 65).copy(b, 68 + 32);
  return b;
}

/** The raw 64-octet r||s of an ECCSIGNATUREBLOB (256-bit). Throws RangeError for high octets set. */
export function eccSignatureToRaw(b: Buffer): Buffer {
  if (b.length < ECC_SIGNATURE_BLOB_SIZE) throw new RangeError(`ECCSIGNATUREBLOB has ${ECC_SIGNATURE_BLOB_SIZE} octets, got ${b.length}`);
  const r = b.subarray(0, 64), s = b.subarray(64, 128);
  if (r.subarray(0, 32).some((c) => c !== 0) || s.subarray(0, 32).some((c) => c !== 0)) throw new RangeError("r or s longer than 256 bits");
  return Buffer.concat([r.subarray(32), s.subarray(32)]);
}

/** SGD_RSA, the AlgID of an RSAPUBLICKEYBLOB. */
export const SGD_RSA = 0x00010000;

/**
 * The DER SubjectPublicKeyInfo (rsaEncryption) of an RSAPUBLICKEYBLOB:
 * AlgID (SGD_RSA; 0, unset, is accepted), BitLen (1024..2048, whole
 * octets), Modulus[256] big-endian with the BitLen/8 octets of n
 * right-aligned, PublicExponent[4] big-endian. Throws RangeError when the
 * blob contradicts itself: octets set above BitLen, a modulus shorter than
 * BitLen or even, an exponent that is even or 1.
 */
export function rsaBlobToSpki(b: Buffer): Buffer {
  if (b.length < RSA_PUBLIC_KEY_BLOB_SIZE) throw new RangeError(`RSAPUBLICKEYBLOB has ${RSA_PUBLIC_KEY_BLOB_SIZE} octets, got ${b.length}`);
  const algId = b.readUInt32LE(0);
  if (algId !== SGD_RSA && algId !== 0) throw new RangeError(`RSAPUBLICKEYBLOB with AlgID 0x${algId.toString(16)}, not SGD_RSA`);
  const bits = b.readUInt32LE(4);
  if (bits < 1024 || bits > 2048 || bits % 8 !== 0) throw new RangeError(`RSA key of ${bits} bits`);
  const field = b.subarray(8, 8 + 256);
  const modulus = field.subarray(256 - bits / 8);
  if (field.subarray(0, 256 - bits / 8).some((c) => c !== 0)) throw new RangeError(`modulus longer than the ${bits} bits the blob says`);
  if ((modulus[0]! & 0x80) === 0) throw new RangeError(`modulus shorter than the ${bits} bits the blob says`);
  if ((modulus[modulus.length - 1]! & 1) === 0) throw new RangeError("an even modulus");
  let exponent = b.subarray(8 + 256, 8 + 256 + 4);
  while (exponent.length > 1 && exponent[0] === 0) exponent = exponent.subarray(1);
  if ((exponent[exponent.length - 1]! & 1) === 0 || (exponent.length === 1 && exponent[0]! < 3)) throw new RangeError("an exponent that is even or 1");
  return createPublicKey({ key: { kty: "RSA", n: modulus.toString("base64url"), e: exponent.toString("base64url") }, format: "jwk" })
    .export({ format: "der", type: "spki" });
}

/** The DER SubjectPublicKeyInfo of an SKF public key blob as SKF_ExportPublicKey gives it: ECC (132 octets) or RSA (268). */
export function publicBlobToSpki(b: Buffer): Buffer {
  if (b.length === ECC_PUBLIC_KEY_BLOB_SIZE) return sm2Spki(eccBlobToPoint(b));
  if (b.length === RSA_PUBLIC_KEY_BLOB_SIZE) return rsaBlobToSpki(b);
  throw new RangeError(`a public key blob of ${b.length} octets is neither ECC nor RSA`);
}
