import { UkeyError, type KeyVendorTable, type Pkcs11Sm2Mechanisms } from "@ukey/policy";
import type { TokenInfo } from "./key-store.js";
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
 * token, and C_GetMechanismList lists the key pair generation and the
 * SM3withSM2 signature mechanisms.
 * @throws UkeyError TOKEN_MECHANISM_MISSING naming the missing mechanism
 * (or that the table has no SM2 values for this key); what mechanisms()
 * throws (TOKEN_NOT_PRESENT, TOKEN_OPERATION_FAILED).
 */
export async function checkPkcs11Sm2(source: MechanismSource, token: TokenInfo, vendors: KeyVendorTable): Promise<Pkcs11Sm2Mechanisms> {
  const module = source.location;
  const values = vendorOf(token, vendors)?.pkcs11Sm2;
  if (!values) {
    throw new UkeyError("TOKEN_MECHANISM_MISSING", {
      params: { module, mechanism: "SM2" },
      detail: `no entry of the key vendor table gives pkcs11Sm2 values for ${token.manufacturer} ${token.model} (serial ${token.serial})`,
    });
  }
  const offered = new Set(await source.mechanisms(token.serial));
  for (const [name, value] of [["SM2 key pair generation", values.keyPairGen], ["SM3withSM2", values.sm3WithSm2]] as const) {
    if (!offered.has(value)) {
      throw new UkeyError("TOKEN_MECHANISM_MISSING", {
        params: { module, mechanism: `${name} (${hex(value)})` },
        detail: `C_GetMechanismList of ${token.manufacturer} ${token.model} lists ${offered.size} mechanisms, not ${hex(value)}`,
      });
    }
  }
  return values;
}
