import * as asn1js from "asn1js";
import { UkeyError, type KeyVendorTable, type Pkcs11Sm2Mechanisms } from "@ukey/policy";
import { ecdsaRawToDer } from "./certificate-fields.js";
import { CK, type Mechanism } from "./cryptoki.js";
import type { TokenInfo } from "./key-store.js";
import { SM2_DEFAULT_ID, isSm2Point, sm2Digest } from "./sm2.js";
import { vendorOf } from "./token-vendor.js";

/** What checkPkcs11Sm2 needs of a PKCS#11 key store (Pkcs11Backend has both). */
export interface MechanismSource {
  readonly location: string;
  /** C_GetMechanismList of the token. */
  mechanisms(tokenSerial: string): Promise<number[]>;
}

const hex = (v: number) => `0x${v.toString(16).padStart(8, "0")}`;

/**
 * The vendor-defined SM2 values of a PKCS#11 token, checked against what
 * its module offers. PKCS#11 (2.40 and 3.x) defines no SM2 key type or
 * mechanism, so each vendor picked its own CKM_VENDOR_DEFINED + n values;
 * the agent takes them from the key vendor table (`pkcs11Sm2` of the
 * entry that matches the token, operator-configurable as `keyVendors`),
 * never from a built-in guess.
 *
 * Checks, before any key is touched: the table names values for this
 * token, and C_GetMechanismList lists the key pair generation mechanism
 * and the signing one (`sm3WithSm2`, or `sm2` when the entry signs a
 * digest).
 * @throws UkeyError TOKEN_MECHANISM_MISSING naming the missing mechanism
 * (or that the table has no SM2 values for this key); what mechanisms()
 * throws (TOKEN_NOT_PRESENT, TOKEN_OPERATION_FAILED).
 */
export async function checkPkcs11Sm2(source: MechanismSource, token: TokenInfo, vendors: KeyVendorTable): Promise<Pkcs11Sm2Mechanisms> {
  const values = vendorOf(token, vendors)?.pkcs11Sm2;
  return requireSm2Mechanisms(source.location, token, values, values ? await source.mechanisms(token.serial) : []);
}

/** CKA_EC_PARAMS of an SM2 key: the DER OID 1.2.156.10197.1.301 (GM/T 0006), as namedCurve. */
export const SM2_EC_PARAMS = Buffer.from("06082a811ccf5501822d", "hex");

/** The mechanisms an SM2 key needs on this token: generation, and the one `signs` says signs. */
function neededMechanisms(values: Pkcs11Sm2Mechanisms): [string, number][] {
  return values.signs === "digest"
    ? [["SM2 key pair generation", values.keyPairGen], ["SM2 (digest)", values.sm2!]]
    : [["SM2 key pair generation", values.keyPairGen], ["SM3withSM2", values.sm3WithSm2]];
}

/**
 * The check of checkPkcs11Sm2 over values already looked up and the
 * module's C_GetMechanismList answer, for callers that hold a session.
 * @throws UkeyError TOKEN_MECHANISM_MISSING
 */
export function requireSm2Mechanisms(module: string, token: TokenInfo, values: Pkcs11Sm2Mechanisms | undefined, offeredList: readonly number[]): Pkcs11Sm2Mechanisms {
  if (!values) {
    throw new UkeyError("TOKEN_MECHANISM_MISSING", {
      params: { module, mechanism: "SM2" },
      detail: `no entry of the key vendor table gives pkcs11Sm2 values for ${token.manufacturer} ${token.model} (serial ${token.serial})`,
    });
  }
  const offered = new Set(offeredList);
  for (const [name, value] of neededMechanisms(values)) {
    if (!offered.has(value)) {
      throw new UkeyError("TOKEN_MECHANISM_MISSING", {
        params: { module, mechanism: `${name} (${hex(value)})` },
        detail: `C_GetMechanismList of ${token.manufacturer} ${token.model} lists ${offered.size} mechanisms, not ${hex(value)}`,
      });
    }
  }
  return values;
}

/** The attributes an SM2 key pair is generated with, besides id, label and usage: the vendor's key type and (unless the entry says not) the curve. */
export function sm2KeyAttributes(values: Pkcs11Sm2Mechanisms): { type: number; value: number | Buffer }[] {
  return [
    { type: CK.CKA_KEY_TYPE, value: values.keyType },
    ...(values.ecParams === false ? [] : [{ type: CK.CKA_EC_PARAMS, value: SM2_EC_PARAMS }]),
  ];
}

/**
 * The SM2 public point (04 || x || y) of a CKA_EC_POINT value: PKCS#11 says
 * a DER OCTET STRING holding the point, and some modules give the bare
 * point; both are read. undefined for anything else, including a point
 * that is not on the SM2 curve.
 */
export function sm2PointOfEcPoint(value: Uint8Array | undefined): Buffer | undefined {
  if (!value) return undefined;
  const v = Buffer.from(value);
  let point: Buffer | undefined;
  if (v.length === 65) point = v;
  else if (v.length === 67 && v[0] === 0x04 && v[1] === 65) point = v.subarray(2);
  else if (v.length === 68 && v[0] === 0x04 && v[1] === 0x81 && v[2] === 65) point = v.subarray(3);
  return point && isSm2Point(point) ? point : undefined;
}

/** What to hand C_SignInit and C_Sign for SM3withSM2 over `message` with the key of `point`, as the entry's `signs` says. */
export function sm2SignRequest(values: Pkcs11Sm2Mechanisms, message: Uint8Array, point: Uint8Array): { mechanism: Mechanism; data: Buffer; digest: Buffer } {
  const digest = sm2Digest(message, point);
  if (values.signs === "digest") return { mechanism: { mechanism: values.sm2! }, data: digest, digest };
  return { mechanism: { mechanism: values.sm3WithSm2, parameter: Buffer.from(SM2_DEFAULT_ID, "latin1") }, data: Buffer.from(message), digest };
}

/** r || s (32 octets each) of an SM2 signature in DER (SEQUENCE { INTEGER r, INTEGER s }). Throws DER_MALFORMED. */
export function sm2DerToRaw(der: Uint8Array): Buffer {
  const bad = (reason: string) => new UkeyError("DER_MALFORMED", { params: { reason: `SM2 signature: ${reason}` } });
  const buf = Buffer.from(der);
  const parsed = asn1js.fromBER(buf);
  if (parsed.offset !== buf.length || !(parsed.result instanceof asn1js.Sequence)) throw bad("not a DER SEQUENCE");
  const parts = parsed.result.valueBlock.value;
  if (parts.length !== 2 || !parts.every((p) => p instanceof asn1js.Integer)) throw bad("not two INTEGERs");
  const out = Buffer.alloc(64);
  parts.forEach((p, i) => {
    let n = Buffer.from((p as asn1js.Integer).valueBlock.valueHexView);
    if (n[0]! & 0x80) throw bad("a negative INTEGER");
    while (n.length > 1 && n[0] === 0) n = n.subarray(1);
    if (n.length > 32) throw bad("an INTEGER longer than 32 octets");
    n.copy(out, 32 * (i + 1) - n.length);
  });
  // DER only: a BER encoding (long lengths, padded INTEGERs) is not what the module promised.
  if (!ecdsaRawToDer(out).equals(buf)) throw bad("not DER");
  return out;
}

/**
 * The r || s of what the module returned, in the entry's signatureFormat
 * (raw r || s, or DER). Throws TOKEN_OPERATION_FAILED when it is neither.
 */
export function sm2SignatureRaw(values: Pkcs11Sm2Mechanisms, sig: Uint8Array): Buffer {
  if (values.signatureFormat === "der") {
    try {
      return sm2DerToRaw(sig);
    } catch (e) {
      throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the module's SM2 signature is not the DER the key vendor table says" }, cause: e });
    }
  }
  if (sig.length !== 64) {
    throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `the module's SM2 signature is ${sig.length} octets, not the 64 of r || s the key vendor table says` } });
  }
  return Buffer.from(sig);
}
