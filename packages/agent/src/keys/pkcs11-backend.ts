import { createHash, createPublicKey, randomBytes } from "node:crypto";
import { existsSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import { SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import type { KeyAlgorithm, KeyVendorTable, Pkcs11Sm2Mechanisms } from "@ukey/policy";
import { UkeyError, defaultKeyVendors, isUkeyError } from "@ukey/policy";
import {
  buildCsr, ecdsaRawToDer, keyAlgorithmOfSpki, readCertificate, samePublicKey, signatureScheme, tokenCertificate,
} from "./certificate-fields.js";
import { parseRsaKeyEnvelope, type RsaKeyEnvelope } from "./cms-envelope.js";
import type { KeyStoreBackend, TokenCertificate, TokenInfo, TokenKey, TokenSession } from "./key-store.js";
import { CK, Cryptoki, type Attribute, type CkTokenInfo } from "./cryptoki.js";
import { checkNewUserPin } from "./pin-rule.js";
import { SM2_EC_PARAMS, requireSm2Mechanisms, sm2KeyAttributes, sm2PointOfEcPoint, sm2SignatureRaw, sm2SignRequest } from "./pkcs11-sm2.js";
import { sm2PointOfSpki, sm2Spki, sm2VerifyDigest } from "./sm2.js";
import { vendorOf } from "./token-vendor.js";
import { acquireTokenLock, OperationQueue, withTokenLock } from "./token-lock.js";

type Handle = number;
type Lib = Cryptoki;

/**
 * One loaded library per path and process: C_Initialize and C_Finalize are
 * per process, so every backend on the same path shares one, and the last
 * to close finalises it.
 */
const modules = new Map<string, { lib: Lib; users: number }>();

function p11Code(e: unknown): number | undefined {
  return typeof (e as { code?: unknown } | null)?.code === "number" ? (e as { code: number }).code : undefined;
}

function acquireModule(path: string): Lib {
  const hit = modules.get(path);
  if (hit) {
    hit.users++;
    return hit.lib;
  }
  if (!existsSync(path)) throw new UkeyError("TOKEN_DRIVER_MISSING", { params: { module: path }, detail: `no file ${path}` });
  let lib: Lib;
  try {
    lib = new Cryptoki();
  } catch (e) {
    // The FFI's own binary: koffi.node beside the executable (an installation with a file missing).
    throw new UkeyError("AGENT_FFI_MISSING", { params: { file: "koffi.node" }, detail: (e as Error).message, cause: e });
  }
  try {
    lib.load(path);
  } catch (e) {
    throw new UkeyError("HSM_MODULE_LOAD_FAILED", { params: { module: path }, detail: (e as Error).message, cause: e });
  }
  try {
    lib.C_Initialize(CK.CKF_OS_LOCKING_OK);
  } catch (e) {
    if (p11Code(e) !== CK.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      try { lib.close(); } catch { /* already failing */ }
      throw new UkeyError("HSM_MODULE_LOAD_FAILED", { params: { module: path }, detail: (e as Error).message, cause: e });
    }
  }
  modules.set(path, { lib, users: 1 });
  return lib;
}

function releaseModule(path: string): void {
  const m = modules.get(path);
  if (!m || --m.users > 0) return;
  modules.delete(path);
  try { m.lib.C_Finalize(); } catch { /* finalising a broken module: nothing left to do */ }
  try { m.lib.close(); } catch { /* idem */ }
}

const removedCodes = new Set<number>([
  CK.CKR_DEVICE_REMOVED, CK.CKR_TOKEN_NOT_PRESENT, CK.CKR_SESSION_HANDLE_INVALID,
  CK.CKR_SESSION_CLOSED, CK.CKR_SLOT_ID_INVALID,
]);
const weakPinCodes = new Set<number>([CK.CKR_PIN_LEN_RANGE, CK.CKR_PIN_INVALID, CK.CKR_PIN_TOO_WEAK]);

/**
 * A catalogue error for a failed PKCS#11 call `op`: a UkeyError as it is,
 * a pulled token TOKEN_REMOVED_DURING_OPERATION, a full one
 * TOKEN_STORAGE_FULL (CKR_DEVICE_MEMORY), anything else `fallback`
 * (TOKEN_KEYGEN_FAILED for key generation and CSRs, legacy 0124;
 * TOKEN_OPERATION_FAILED otherwise).
 */
export function pkcs11ErrorToUkey(e: unknown, op: string, fallback: "TOKEN_KEYGEN_FAILED" | "TOKEN_OPERATION_FAILED" = "TOKEN_OPERATION_FAILED"): UkeyError {
  if (isUkeyError(e)) return e;
  const code = p11Code(e);
  const detail = `${op}: ${(e as Error)?.message ?? String(e)}`;
  if (code !== undefined && removedCodes.has(code)) return new UkeyError("TOKEN_REMOVED_DURING_OPERATION", { detail, cause: e });
  if (code === CK.CKR_DEVICE_MEMORY) return new UkeyError("TOKEN_STORAGE_FULL", { detail, cause: e });
  // The holder pressed cancel on the key (its button or PIN pad).
  if (code === CK.CKR_FUNCTION_CANCELED) return new UkeyError("TOKEN_CONFIRMATION_CANCELLED", { detail, cause: e });
  if (fallback === "TOKEN_KEYGEN_FAILED") return new UkeyError(fallback, { detail, cause: e });
  return new UkeyError(fallback, { params: { reason: op }, detail, cause: e });
}

/** The error of a refused C_Login, with what the token tells of the tries left. */
function loginError(lib: Lib, slot: Handle, e: unknown, who: "user" | "so"): UkeyError {
  const code = p11Code(e);
  if (code === CK.CKR_PIN_LOCKED) return new UkeyError("TOKEN_PIN_LOCKED", { params: { pin: who }, cause: e });
  if (code === CK.CKR_PIN_INCORRECT || code === CK.CKR_PIN_LEN_RANGE || code === CK.CKR_PIN_INVALID) {
    let flags = 0;
    try { flags = lib.C_GetTokenInfo(slot).flags; } catch { /* the flags are only a hint */ }
    const f = who === "so"
      ? { locked: CK.CKF_SO_PIN_LOCKED, low: CK.CKF_SO_PIN_COUNT_LOW, final: CK.CKF_SO_PIN_FINAL_TRY }
      : { locked: CK.CKF_USER_PIN_LOCKED, low: CK.CKF_USER_PIN_COUNT_LOW, final: CK.CKF_USER_PIN_FINAL_TRY };
    if (flags & f.locked) return new UkeyError("TOKEN_PIN_LOCKED", { params: { pin: who }, cause: e });
    const params: Record<string, string | number> = { pin: who };
    // PKCS#11 tells no number, only "low" and "one left".
    if (flags & f.final) params.triesLeft = 1;
    if (flags & f.low) params.countLow = 1;
    return new UkeyError("TOKEN_PIN_INCORRECT", { params, cause: e });
  }
  return pkcs11ErrorToUkey(e, "login");
}

/** CK_ULONG memory sizes: CK_UNAVAILABLE_INFORMATION (all ones, 32 or 64 bits) is "not told". */
function memory(v: number | bigint): number | undefined {
  const b = BigInt(v);
  return b >= 0xffffffffn ? undefined : Number(b);
}

function tokenInfoOf(i: CkTokenInfo): TokenInfo {
  const info: TokenInfo = {
    serial: i.serialNumber.trim(),
    label: i.label.trim(),
    manufacturer: i.manufacturerID.trim(),
    model: i.model.trim(),
    backend: "pkcs11",
    pin: {
      initialized: (i.flags & CK.CKF_USER_PIN_INITIALIZED) !== 0,
      locked: (i.flags & CK.CKF_USER_PIN_LOCKED) !== 0,
      countLow: (i.flags & CK.CKF_USER_PIN_COUNT_LOW) !== 0,
      finalTry: (i.flags & CK.CKF_USER_PIN_FINAL_TRY) !== 0,
      toBeChanged: (i.flags & CK.CKF_USER_PIN_TO_BE_CHANGED) !== 0,
      ...((i.flags & CK.CKF_PROTECTED_AUTHENTICATION_PATH) !== 0 ? { keyPad: true } : {}),
    },
  };
  const freePublic = memory(i.freePublicMemory as number | bigint);
  const freePrivate = memory(i.freePrivateMemory as number | bigint);
  if (freePublic !== undefined) info.freePublicMemory = freePublic;
  if (freePrivate !== undefined) info.freePrivateMemory = freePrivate;
  const min = memory(i.minPinLen as number | bigint);
  const max = memory(i.maxPinLen as number | bigint);
  if (min !== undefined) info.pin.minLength = min;
  if (max !== undefined) info.pin.maxLength = max;
  return info;
}

function idBytes(id: string): Buffer {
  if (typeof id !== "string" || !/^(?:[0-9a-fA-F]{2}){1,64}$/.test(id)) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: `object id must be hexadecimal: ${String(id).slice(0, 40)}` } });
  }
  return Buffer.from(id, "hex");
}

function checkLabel(label: string, max: number): void {
  if (typeof label !== "string" || Buffer.byteLength(label) > max || [...label].some((c) => c.charCodeAt(0) < 0x20)) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: `a label is text of at most ${max} bytes` } });
  }
}

const curveParams = {
  p256: Buffer.from("06082a8648ce3d030107", "hex"),
  p384: Buffer.from("06052b81040022", "hex"),
} as const;
const curveJwk = { p256: { crv: "P-256", size: 32 }, p384: { crv: "P-384", size: 48 } } as const;

const b64url = (b: Buffer) => b.toString("base64url");

/**
 * Tokens behind one PKCS#11 module: a holder's UKey through its vendor's
 * library (SoftHSM2 in tests). Tokens are named by serial and found again
 * on every call, never by slot id: SoftHSM2 and others renumber slots when
 * a token is re-initialised or reconnected. Throws TOKEN_DRIVER_MISSING
 * when the module file does not exist and HSM_MODULE_LOAD_FAILED when it is
 * not a loadable PKCS#11 library. `keyVendors` (default the built-in table)
 * gives the vendor-defined SM2 values of each token (`pkcs11Sm2`), without
 * which SM2 keys are refused with TOKEN_MECHANISM_MISSING.
 */
export class Pkcs11Backend implements KeyStoreBackend {
  readonly kind = "pkcs11" as const;
  readonly location: string;
  readonly #module: string;
  readonly #lib: Lib;
  readonly #sessions = new Set<Pkcs11Session>();
  readonly keyVendors: KeyVendorTable;
  #closed = false;

  constructor(modulePath: string, opts: { keyVendors?: KeyVendorTable } = {}) {
    this.keyVendors = opts.keyVendors ?? defaultKeyVendors;
    this.location = resolve(modulePath);
    // Loaded under its real path, so that two names of one library (a symlink) share one C_Initialize.
    this.#module = existsSync(this.location) ? realpathSync(this.location) : this.location;
    this.#lib = acquireModule(this.#module);
  }

  #live(): Lib {
    if (this.#closed) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the key store is closed" } });
    return this.#lib;
  }

  #lockKey(serial: string): string {
    return `pkcs11\0${this.#module}\0${String(serial).trim()}`;
  }

  /** The tokens present now, each with a serial number (an empty SoftHSM2 slot has none and is left out). */
  async listTokens(): Promise<TokenInfo[]> {
    const lib = this.#live();
    try {
      return this.#slots(lib).map((s) => s.info).filter((t) => t.serial !== "");
    } catch (e) {
      throw pkcs11ErrorToUkey(e, "list tokens");
    }
  }

  #slots(lib: Lib): { slot: Handle; info: TokenInfo }[] {
    const out: { slot: Handle; info: TokenInfo }[] = [];
    for (const slot of lib.C_GetSlotList(true)) {
      try {
        out.push({ slot, info: tokenInfoOf(lib.C_GetTokenInfo(slot)) });
      } catch (e) {
        // Pulled between the two calls: it is simply not present.
        if (!removedCodes.has(p11Code(e) ?? -1)) throw e;
      }
    }
    return out;
  }

  /** The slot holding token `serial` now. Throws TOKEN_NOT_PRESENT, TOKEN_MULTIPLE_PRESENT. */
  #findSlot(lib: Lib, serial: string): { slot: Handle; info: TokenInfo } {
    if (typeof serial !== "string" || serial.trim() === "") throw new UkeyError("TOKEN_NOT_PRESENT", { detail: "no token serial given" });
    let matches;
    try {
      matches = this.#slots(lib).filter((s) => s.info.serial === serial.trim());
    } catch (e) {
      throw pkcs11ErrorToUkey(e, "find token");
    }
    if (matches.length === 0) throw new UkeyError("TOKEN_NOT_PRESENT", { params: { serial }, detail: `no token with serial ${serial} in ${this.location}` });
    if (matches.length > 1) throw new UkeyError("TOKEN_MULTIPLE_PRESENT", { params: { count: matches.length } });
    return matches[0]!;
  }

  /**
   * Logs in to token `tokenSerial` with the user PIN. Waits while another
   * session of this process is open on the token. Throws TOKEN_NOT_PRESENT,
   * TOKEN_PIN_INCORRECT (params.triesLeft 1 on the final try, countLow 1
   * when the token says few are left), TOKEN_PIN_LOCKED. On a token with
   * its own PIN pad (TokenInfo.pin.keyPad) an empty `pin` logs in with a
   * NULL PIN, which the holder types on the pad: TOKEN_CONFIRMATION_CANCELLED
   * when cancelled there (CKR_FUNCTION_CANCELED).
   */
  async open(tokenSerial: string, pin: string): Promise<TokenSession> {
    const lib = this.#live();
    const release = await acquireTokenLock(this.#lockKey(tokenSerial));
    let handle: Handle | undefined;
    try {
      this.#live();
      const { slot, info } = this.#findSlot(lib, tokenSerial);
      try {
        handle = lib.C_OpenSession(slot, CK.CKF_SERIAL_SESSION | CK.CKF_RW_SESSION);
      } catch (e) {
        throw pkcs11ErrorToUkey(e, "open session");
      }
      if (pin === "" && info.pin.keyPad) await loginOnPad(lib, handle, slot);
      else login(lib, handle, slot, CK.CKU_USER, pin, "user");
      const sm2 = { module: this.location, slot, values: vendorOf(info, this.keyVendors)?.pkcs11Sm2 };
      const session = new Pkcs11Session(lib, handle, info, sm2, () => {
        this.#sessions.delete(session);
        release();
      });
      this.#sessions.add(session);
      return session;
    } catch (e) {
      if (handle) {
        try { lib.C_CloseSession(handle); } catch { /* already failing */ }
      }
      release();
      throw e;
    }
  }

  /**
   * The mechanism types the token offers (C_GetMechanismList), with no
   * login. TOKEN_NOT_PRESENT; TOKEN_OPERATION_FAILED when the module refuses.
   */
  async mechanisms(tokenSerial: string): Promise<number[]> {
    const lib = this.#live();
    const { slot } = this.#findSlot(lib, tokenSerial);
    try {
      return lib.C_GetMechanismList(slot);
    } catch (e) {
      throw pkcs11ErrorToUkey(e, "list mechanisms");
    }
  }

  /**
   * Certificates on the token. Without `pin`: public objects only, read in
   * a session of its own, and hasKey means the public key object of the
   * same id holds the certificate's key (private keys are not visible
   * without the PIN). With `pin`: as TokenSession.listCertificates.
   */
  async listCertificates(tokenSerial: string, pin?: string): Promise<TokenCertificate[]> {
    if (pin !== undefined) {
      const session = await this.open(tokenSerial, pin);
      try {
        return await session.listCertificates();
      } finally {
        await session.close();
      }
    }
    const lib = this.#live();
    const { slot } = this.#findSlot(lib, tokenSerial);
    let handle: Handle;
    try {
      handle = lib.C_OpenSession(slot, CK.CKF_SERIAL_SESSION);
    } catch (e) {
      throw pkcs11ErrorToUkey(e, "open session");
    }
    try {
      return readCertificates(lib, handle, false, this.#sm2KeyType(tokenSerial));
    } catch (e) {
      throw pkcs11ErrorToUkey(e, "read certificates");
    } finally {
      try { lib.C_CloseSession(handle); } catch { /* the token may be gone */ }
    }
  }

  #sm2KeyType(tokenSerial: string): number | undefined {
    const token = this.#findSlot(this.#lib, tokenSerial).info;
    return vendorOf(token, this.keyVendors)?.pkcs11Sm2?.keyType;
  }

  /**
   * C_InitToken with the SO PIN and the label (default: the current one),
   * then C_InitPIN of the new user PIN as SO. Throws PIN_TOO_WEAK before
   * anything changes, TOKEN_PIN_INCORRECT / TOKEN_PIN_LOCKED (params.pin
   * "so") for the SO PIN, TOKEN_NOT_PRESENT.
   */
  async initToken(tokenSerial: string, soPin: string, newUserPin: string, label?: string): Promise<TokenInfo> {
    checkNewUserPin(newUserPin);
    if (label !== undefined) checkLabel(label, 32);
    const lib = this.#live();
    return withTokenLock(this.#lockKey(tokenSerial), () => {
      const { slot, info } = this.#findSlot(lib, tokenSerial);
      const newLabel = label ?? info.label;
      try {
        lib.C_InitToken(slot, soPin, newLabel + " ".repeat(32 - Buffer.byteLength(newLabel)));
      } catch (e) {
        throw loginError(lib, slot, e, "so");
      }
      // The re-initialised token may sit in another slot now.
      const again = this.#findSlot(lib, tokenSerial).slot;
      let handle: Handle | undefined;
      try {
        handle = lib.C_OpenSession(again, CK.CKF_SERIAL_SESSION | CK.CKF_RW_SESSION);
        login(lib, handle, again, CK.CKU_SO, soPin, "so");
        try {
          lib.C_InitPIN(handle, newUserPin);
        } catch (e) {
          if (weakPinCodes.has(p11Code(e) ?? -1)) throw new UkeyError("PIN_TOO_WEAK", { detail: (e as Error).message, cause: e });
          throw pkcs11ErrorToUkey(e, "set the user PIN");
        }
        try { lib.C_Logout(handle); } catch { /* closing the session logs out too */ }
      } catch (e) {
        throw pkcs11ErrorToUkey(e, "initialise the token");
      } finally {
        if (handle) {
          try { lib.C_CloseSession(handle); } catch { /* the token may be gone */ }
        }
      }
      return this.#findSlot(lib, tokenSerial).info;
    });
  }

  /** Closes open sessions and releases the module (C_Finalize when this was its last user). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const s of [...this.#sessions]) await s.close();
    this.#closed = true;
    releaseModule(this.#module);
  }
}

function login(lib: Lib, handle: Handle, slot: Handle, userType: number, pin: string, who: "user" | "so"): void {
  // An empty PIN is never a PIN (a pad login is loginOnPad): refused before the module counts a try.
  if (typeof pin !== "string" || pin === "") throw new UkeyError("TOKEN_PIN_INCORRECT", { params: { pin: who } });
  try {
    lib.C_Login(handle, userType, pin);
  } catch (e) {
    if (p11Code(e) !== CK.CKR_USER_ALREADY_LOGGED_IN) throw loginError(lib, slot, e, who);
    // Logged in by an earlier user of this process that did not log out:
    // the PIN must still be checked, so log out and in again.
    try {
      lib.C_Logout(handle);
      lib.C_Login(handle, userType, pin);
    } catch (e2) {
      throw loginError(lib, slot, e2, who);
    }
  }
}

/** C_Login with a NULL PIN, typed on the token's PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH). */
async function loginOnPad(lib: Lib, handle: Handle, slot: Handle): Promise<void> {
  try {
    await lib.C_LoginProtectedAsync(handle, CK.CKU_USER);
  } catch (e) {
    if (p11Code(e) === CK.CKR_USER_ALREADY_LOGGED_IN) return;
    if (p11Code(e) === CK.CKR_FUNCTION_CANCELED) throw new UkeyError("TOKEN_CONFIRMATION_CANCELLED", { detail: "login on the key's PIN pad was cancelled", cause: e });
    throw loginError(lib, slot, e, "user");
  }
}

function findObjects(lib: Lib, session: Handle, template: Attribute[]): Handle[] {
  lib.C_FindObjectsInit(session, template);
  const out: Handle[] = [];
  try {
    for (;;) {
      const batch = lib.C_FindObjects(session, 64);
      if (batch.length === 0) break;
      out.push(...batch);
    }
  } finally {
    lib.C_FindObjectsFinal(session);
  }
  return out;
}

function attr(lib: Lib, session: Handle, h: Handle, type: number): Buffer | undefined {
  try {
    const [a] = lib.C_GetAttributeValue(session, h, [{ type }]);
    return a?.value as Buffer | undefined;
  } catch (e) {
    if (p11Code(e) === CK.CKR_ATTRIBUTE_TYPE_INVALID || p11Code(e) === CK.CKR_ATTRIBUTE_SENSITIVE) return undefined;
    throw e;
  }
}

function readBool(v: Buffer | undefined): boolean | undefined {
  return v?.length === 1 ? v[0] !== 0 : undefined;
}

function readUlong(v: Buffer | undefined): number | undefined {
  if (!v || (v.length !== 4 && v.length !== 8)) return undefined;
  return v.length === 8 ? Number(v.readBigUInt64LE(0) & 0xffffffffn) : v.readUInt32LE(0);
}

/**
 * The DER SPKI of a public key object, or of an RSA private key object (which carries its modulus).
 * SM2: a key of the vendor's `sm2KeyType` (or CKK_EC on the SM2 curve), from its CKA_EC_POINT.
 */
function spkiOf(lib: Lib, session: Handle, h: Handle, sm2KeyType?: number): Buffer | undefined {
  const type = readUlong(attr(lib, session, h, CK.CKA_KEY_TYPE));
  if (type !== undefined && type === sm2KeyType) {
    const point = sm2PointOfEcPoint(attr(lib, session, h, CK.CKA_EC_POINT));
    return point && sm2Spki(point);
  }
  if (type === CK.CKK_RSA) {
    const n = attr(lib, session, h, CK.CKA_MODULUS);
    const e = attr(lib, session, h, CK.CKA_PUBLIC_EXPONENT);
    if (!n?.length || !e?.length) return undefined;
    return jwkSpki({ kty: "RSA", n: b64url(n), e: b64url(e) });
  }
  if (type === CK.CKK_EC) {
    const params = attr(lib, session, h, CK.CKA_EC_PARAMS);
    const point = attr(lib, session, h, CK.CKA_EC_POINT);
    if (params?.equals(SM2_EC_PARAMS) && point) {
      const sm2 = sm2PointOfEcPoint(point);
      return sm2 && sm2Spki(sm2);
    }
    const curve = params?.equals(curveParams.p256) ? "p256" : params?.equals(curveParams.p384) ? "p384" : undefined;
    if (!curve || !point) return undefined;
    const size = curveJwk[curve].size;
    const raw = ecPoint(point, 1 + 2 * size);
    if (!raw) return undefined;
    return jwkSpki({ kty: "EC", crv: curveJwk[curve].crv, x: b64url(raw.subarray(1, 1 + size)), y: b64url(raw.subarray(1 + size)) });
  }
  return undefined;
}

/** DER SPKI from a JWK public key, through node:crypto. */
function jwkSpki(jwk: Record<string, string>): Buffer {
  return createPublicKey({ key: jwk, format: "jwk" }).export({ format: "der", type: "spki" });
}

/** The uncompressed point, whether the token gives it raw or (as PKCS#11 says) wrapped in an OCTET STRING. */
function ecPoint(value: Buffer, expected: number): Buffer | undefined {
  if (value.length === expected && value[0] === 4) return value;
  if (value.length === expected + 2 && value[0] === 0x04 && value[1] === expected && value[2] === 4) return value.subarray(2);
  if (value.length === expected + 3 && value[0] === 0x04 && value[1] === 0x81 && value[2] === expected && value[3] === 4) return value.subarray(3);
  return undefined;
}

/** The certificates of a session; hasKey needs a private key of the same id (when `privateVisible`) and a matching public key. */
function readCertificates(lib: Lib, session: Handle, privateVisible: boolean, sm2KeyType?: number): TokenCertificate[] {
  const out: TokenCertificate[] = [];
  for (const h of findObjects(lib, session, [
    { type: CK.CKA_CLASS, value: CK.CKO_CERTIFICATE },
    { type: CK.CKA_CERTIFICATE_TYPE, value: CK.CKC_X_509 },
  ])) {
    const value = attr(lib, session, h, CK.CKA_VALUE);
    const id = attr(lib, session, h, CK.CKA_ID) ?? Buffer.alloc(0);
    const label = (attr(lib, session, h, CK.CKA_LABEL) ?? Buffer.alloc(0)).toString("utf8");
    if (!value) continue;
    let fields;
    try {
      fields = readCertificate(value);
    } catch {
      // Not an X.509 certificate the agent can read: leave it alone.
      continue;
    }
    const hasKey = id.length > 0 && keyMatches(lib, session, id, fields.spki, privateVisible, sm2KeyType);
    out.push(tokenCertificate(value, id.toString("hex"), label, hasKey));
  }
  return out;
}

function keyMatches(lib: Lib, session: Handle, id: Buffer, spki: Buffer, privateVisible: boolean, sm2KeyType?: number): boolean {
  const byId = (cls: number) => findObjects(lib, session, [{ type: CK.CKA_CLASS, value: cls }, { type: CK.CKA_ID, value: id }]);
  const publics = byId(CK.CKO_PUBLIC_KEY).map((h) => spkiOf(lib, session, h, sm2KeyType)).filter((s): s is Buffer => !!s);
  if (!privateVisible) return publics.some((s) => samePublicKey(s, spki));
  const privates = byId(CK.CKO_PRIVATE_KEY);
  if (privates.length === 0) return false;
  // An RSA private key carries its modulus; an EC one needs its public half.
  return privates.some((h) => {
    const own = spkiOf(lib, session, h, sm2KeyType);
    return own ? samePublicKey(own, spki) : publics.some((s) => samePublicKey(s, spki));
  });
}

/**
 * The CKA_ID of a pair's encryption objects: the signing key's CKA_ID
 * followed by the octet 02 (docs/key-vendors.md, "Certificate pairs on
 * PKCS#11 keys"). Its own id, so that certificate and key match by id as
 * every PKCS#11 application expects, and deleting the signing key's objects
 * leaves the encryption key alone.
 */
export function encryptionIdOf(signingId: Buffer): Buffer {
  return Buffer.concat([signingId, Buffer.from([2])]);
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 method 1): the recipient identifier of our CMS envelopes. */
function subjectKeyIdOf(spki: Buffer): Buffer {
  const info = AsnConvert.parse(spki, SubjectPublicKeyInfo);
  return createHash("sha1").update(Buffer.from(info.subjectPublicKey)).digest();
}

/**
 * Opens an RSA pair's envelope on the token: RSAES-OAEP with the signing key
 * gives the AES key as a session object (sensitive, unextractable, unwrap
 * only), which unwraps the PKCS#8 into a private key of `where` (decrypt and
 * unwrap, sensitive, unextractable). The AES key is destroyed whatever
 * happens. A token that refuses the ciphertexts gives ENVELOPE_MALFORMED; one
 * without the mechanisms, TOKEN_OPERATION_FAILED.
 */
async function unwrapRsaEnvelope(lib: Lib, s: Handle, signing: Handle, envelope: RsaKeyEnvelope, where: Attribute[]): Promise<Handle> {
  const refused = (e: unknown, step: string): UkeyError => {
    const code = p11Code(e);
    if (code !== undefined && envelopeRefusals.has(code)) {
      return new UkeyError("ENVELOPE_MALFORMED", { params: { reason: `the UKey refused ${step} (${(e as Error).message}): it is not for this key's signing key, or it is damaged` }, cause: e });
    }
    if (code !== undefined && missingMechanism.has(code)) {
      return new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `this UKey's driver cannot unwrap an RSA pair's encryption key (${step}: ${(e as Error).message})` }, cause: e });
    }
    return pkcs11ErrorToUkey(e, `import the encryption key (${step})`);
  };
  let aes: Handle;
  try {
    aes = await lib.C_UnwrapKeyAsync(s, { mechanism: CK.CKM_RSA_PKCS_OAEP, parameter: lib.rsaOaepParams(CK.CKM_SHA_1, CK.CKG_MGF1_SHA1) }, signing, envelope.encryptedKey, [
      { type: CK.CKA_CLASS, value: CK.CKO_SECRET_KEY },
      { type: CK.CKA_KEY_TYPE, value: CK.CKK_AES },
      { type: CK.CKA_TOKEN, value: false },
      { type: CK.CKA_SENSITIVE, value: true },
      { type: CK.CKA_EXTRACTABLE, value: false },
      { type: CK.CKA_UNWRAP, value: true },
      { type: CK.CKA_DECRYPT, value: false },
      { type: CK.CKA_ENCRYPT, value: false },
    ]);
  } catch (e) {
    throw refused(e, "the content-encryption key (CKM_RSA_PKCS_OAEP)");
  }
  try {
    return await lib.C_UnwrapKeyAsync(s, { mechanism: CK.CKM_AES_KEY_WRAP_PAD }, aes, envelope.wrappedPrivateKey, [
      { type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY },
      { type: CK.CKA_KEY_TYPE, value: CK.CKK_RSA },
      { type: CK.CKA_SENSITIVE, value: true },
      { type: CK.CKA_EXTRACTABLE, value: false },
      { type: CK.CKA_DECRYPT, value: true },
      { type: CK.CKA_UNWRAP, value: true },
      { type: CK.CKA_SIGN, value: false },
      ...where,
    ]);
  } catch (e) {
    throw refused(e, "the private key (CKM_AES_KEY_WRAP_PAD)");
  } finally {
    try { lib.C_DestroyObject(s, aes); } catch { /* a session object: gone with the session anyway */ }
  }
}

/**
 * What a token answers to a ciphertext that is not for its key or was changed. SoftHSM2 answers a failed
 * RFC 5649 integrity check with CKR_GENERAL_ERROR: in this one call, after the envelope's form was checked,
 * that is what it means.
 */
const envelopeRefusals = new Set<number>([
  CK.CKR_GENERAL_ERROR, CK.CKR_ENCRYPTED_DATA_INVALID, CK.CKR_ENCRYPTED_DATA_LEN_RANGE, CK.CKR_WRAPPED_KEY_INVALID, CK.CKR_WRAPPED_KEY_LEN_RANGE, CK.CKR_FUNCTION_FAILED,
]);
/** What a token answers when it lacks a mechanism or the key may not unwrap. */
const missingMechanism = new Set<number>([
  CK.CKR_MECHANISM_INVALID, CK.CKR_MECHANISM_PARAM_INVALID, CK.CKR_ARGUMENTS_BAD, CK.CKR_FUNCTION_NOT_SUPPORTED, CK.CKR_KEY_FUNCTION_NOT_PERMITTED,
  CK.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT,
]);

/** One logged-in session on a token; its operations run one at a time. */
class Pkcs11Session implements TokenSession {
  readonly token: TokenInfo;
  readonly #lib: Lib;
  #handle: Handle | undefined;
  readonly #queue = new OperationQueue();
  readonly #onClose: () => void;
  /** The token's module and slot, for SM2 keys' mechanism check. */
  readonly #where: { module: string; slot: Handle };
  /** The token's vendor-defined SM2 values (TokenSession.pkcs11Sm2): the backend's table's, or the institution's when login sets them. */
  pkcs11Sm2: Pkcs11Sm2Mechanisms | undefined;

  constructor(lib: Lib, handle: Handle, token: TokenInfo, sm2: { module: string; slot: Handle; values: Pkcs11Sm2Mechanisms | undefined }, onClose: () => void) {
    this.#lib = lib;
    this.#handle = handle;
    this.token = token;
    this.#where = { module: sm2.module, slot: sm2.slot };
    this.pkcs11Sm2 = sm2.values;
    this.#onClose = onClose;
  }

  /** The SM2 values, checked against C_GetMechanismList. TOKEN_MECHANISM_MISSING, before anything on the token changes. */
  #sm2Values(lib: Lib): Pkcs11Sm2Mechanisms {
    const values = this.pkcs11Sm2;
    return requireSm2Mechanisms(this.#where.module, this.token, values, values ? lib.C_GetMechanismList(this.#where.slot) : []);
  }

  #run<T>(op: string, fn: (lib: Lib, session: Handle) => Promise<T> | T, fallback?: "TOKEN_KEYGEN_FAILED"): Promise<T> {
    return this.#queue.run(async () => {
      const session = this.#handle;
      if (!session) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `${op}: the session is closed` } });
      try {
        return await fn(this.#lib, session);
      } catch (e) {
        throw pkcs11ErrorToUkey(e, op, fallback);
      }
    });
  }

  listCertificates(): Promise<TokenCertificate[]> {
    return this.#run("read certificates", (lib, s) => readCertificates(lib, s, true, this.pkcs11Sm2?.keyType));
  }

  listKeys(): Promise<TokenKey[]> {
    return this.#run("read keys", (lib, s) => this.#keys(lib, s));
  }

  /** Key pairs whose public key is known (from the public key object, or an RSA private key's modulus). */
  #keys(lib: Lib, s: Handle): TokenKey[] {
    const out: TokenKey[] = [];
    for (const h of findObjects(lib, s, [{ type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY }])) {
      const id = attr(lib, s, h, CK.CKA_ID) ?? Buffer.alloc(0);
      const label = (attr(lib, s, h, CK.CKA_LABEL) ?? Buffer.alloc(0)).toString("utf8");
      const spki = this.#keySpki(lib, s, id, h);
      if (!spki) continue;
      let algorithm: KeyAlgorithm;
      try {
        algorithm = keyAlgorithmOfSpki(spki);
      } catch {
        continue;
      }
      out.push({ id: id.toString("hex"), label, algorithm, spki: new Uint8Array(spki) });
    }
    return out;
  }

  #keySpki(lib: Lib, s: Handle, id: Buffer, priv: Handle): Buffer | undefined {
    const sm2KeyType = this.pkcs11Sm2?.keyType;
    const own = spkiOf(lib, s, priv, sm2KeyType);
    if (own) return own;
    if (id.length === 0) return undefined;
    for (const h of findObjects(lib, s, [{ type: CK.CKA_CLASS, value: CK.CKO_PUBLIC_KEY }, { type: CK.CKA_ID, value: id }])) {
      const spki = spkiOf(lib, s, h, sm2KeyType);
      if (spki) return spki;
    }
    return undefined;
  }

  /** The private key of `id` and its public key. Throws TOKEN_KEY_NOT_FOUND. */
  #key(lib: Lib, s: Handle, keyId: string): { priv: Handle; spki: Buffer } {
    const id = idBytes(keyId);
    for (const priv of findObjects(lib, s, [{ type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY }, { type: CK.CKA_ID, value: id }])) {
      const spki = this.#keySpki(lib, s, id, priv);
      if (spki) return { priv, spki };
    }
    throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id: keyId } });
  }

  generateKeyPair(algorithm: KeyAlgorithm, label: string, id?: string, opts?: { unwrap?: boolean }): Promise<TokenKey> {
    return this.#run("generate a key pair", async (lib, s) => {
      checkLabel(label, 255);
      const ckaId = id === undefined ? randomBytes(20) : idBytes(id);
      const ec = algorithm === "p256" || algorithm === "p384";
      // SM2 through the vendor's own key type and mechanisms, checked before anything is written.
      const sm2 = algorithm === "sm2" ? this.#sm2Values(lib) : undefined;
      if (!ec && !sm2 && algorithm !== "rsa2048" && algorithm !== "rsa3072" && algorithm !== "rsa4096") {
        throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: String(algorithm) } });
      }
      if (findObjects(lib, s, [{ type: CK.CKA_ID, value: ckaId }]).length > 0) {
        throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `an object with id ${ckaId.toString("hex")} is already on the token` } });
      }
      const common = [
        { type: CK.CKA_TOKEN, value: true },
        { type: CK.CKA_LABEL, value: label },
        { type: CK.CKA_ID, value: ckaId },
      ];
      const publicTemplate = [
        ...common,
        { type: CK.CKA_CLASS, value: CK.CKO_PUBLIC_KEY },
        { type: CK.CKA_PRIVATE, value: false },
        { type: CK.CKA_VERIFY, value: true },
        ...(sm2 ? sm2KeyAttributes(sm2) : ec
          ? [{ type: CK.CKA_EC_PARAMS, value: curveParams[algorithm] }]
          : [
            { type: CK.CKA_MODULUS_BITS, value: Number(algorithm.slice(3)) },
            { type: CK.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          ]),
      ];
      const privateTemplate = [
        ...common,
        { type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY },
        ...(sm2 ? [{ type: CK.CKA_KEY_TYPE, value: sm2.keyType }] : []),
        { type: CK.CKA_PRIVATE, value: true },
        { type: CK.CKA_SENSITIVE, value: true },
        { type: CK.CKA_EXTRACTABLE, value: false },
        { type: CK.CKA_SIGN, value: true },
        // Said, not left to the token's defaults (SoftHSM2 makes an RSA key decrypt and unwrap unless told): a signing
        // key signs. Only a pair profile's RSA signing key unwraps, to open its encryption key's envelope on the token;
        // importRsaEnvelope takes that back (docs/security.md).
        ...(ec || sm2 ? [] : [{ type: CK.CKA_DECRYPT, value: false }, { type: CK.CKA_UNWRAP, value: !!opts?.unwrap }]),
      ];
      const mechanism = { mechanism: sm2 ? sm2.keyPairGen : ec ? CK.CKM_EC_KEY_PAIR_GEN : CK.CKM_RSA_PKCS_KEY_PAIR_GEN };
      const pair = await lib.C_GenerateKeyPairAsync(s, mechanism, publicTemplate, privateTemplate);
      const spki = spkiOf(lib, s, pair.publicKey, sm2?.keyType);
      if (!spki) throw new UkeyError("TOKEN_KEYGEN_FAILED", { detail: "the new public key cannot be read" });
      return { id: ckaId.toString("hex"), label, algorithm, spki: new Uint8Array(spki) };
    }, "TOKEN_KEYGEN_FAILED");
  }

  sign(keyId: string, data: Uint8Array): Promise<Uint8Array> {
    return this.#run("sign", (lib, s) => this.#sign(lib, s, keyId, data));
  }

  async #sign(lib: Lib, s: Handle, keyId: string, data: Uint8Array): Promise<Uint8Array> {
    const { priv, spki } = this.#key(lib, s, keyId);
    const point = sm2PointOfSpki(spki);
    if (point) {
      // SM3withSM2 with the standard ID: the module signs the message (and is given the ID) or the agent's e = SM3(Z || M).
      const values = this.#sm2Values(lib);
      const request = sm2SignRequest(values, data, point);
      lib.C_SignInit(s, request.mechanism, priv);
      const rs = sm2SignatureRaw(values, await lib.C_SignAsync(s, request.data, Buffer.alloc(128)));
      // Checked here: a module that took the ID otherwise (or ignored it) signs something no CA accepts.
      if (!sm2VerifyDigest(request.digest, rs, point)) {
        throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the module's SM2 signature does not verify over SM3(Z || M) with the standard ID" } });
      }
      return new Uint8Array(ecdsaRawToDer(rs));
    }
    const scheme = signatureScheme(spki);
    // ECDSA: hash here, so the token does only the private-key step
    // (CKM_ECDSA); RSA: CKM_SHA256_RSA_PKCS does hash and padding.
    if (scheme.kind === "ecdsa") {
      lib.C_SignInit(s, { mechanism: CK.CKM_ECDSA }, priv);
      const raw = await lib.C_SignAsync(s, createHash(scheme.hash).update(data).digest(), Buffer.alloc(scheme.rawSize));
      return new Uint8Array(ecdsaRawToDer(raw));
    }
    lib.C_SignInit(s, { mechanism: CK.CKM_SHA256_RSA_PKCS }, priv);
    const sig = await lib.C_SignAsync(s, Buffer.from(data), Buffer.alloc(scheme.bytes));
    return new Uint8Array(sig);
  }

  createCsr(keyId: string, subject = ""): Promise<string> {
    return this.#run("make the certificate request", async (lib, s) => {
      const { spki } = this.#key(lib, s, keyId);
      return buildCsr(spki, subject, (info) => this.#sign(lib, s, keyId, info));
    }, "TOKEN_KEYGEN_FAILED");
  }

  installCertificate(der: Uint8Array, keyId: string, label: string): Promise<TokenCertificate> {
    return this.#run("store the certificate", (lib, s) => {
      checkLabel(label, 255);
      const value = Buffer.from(der);
      const fields = readCertificate(value);
      const id = idBytes(keyId);
      const { spki } = this.#key(lib, s, keyId);
      if (!samePublicKey(spki, fields.spki)) throw new UkeyError("CERT_KEY_MISMATCH", { detail: `certificate ${fields.serialHex} is not for key ${keyId}` });
      const certTemplate = (extra: Attribute[] = []) => [
        { type: CK.CKA_CLASS, value: CK.CKO_CERTIFICATE },
        { type: CK.CKA_CERTIFICATE_TYPE, value: CK.CKC_X_509 },
        { type: CK.CKA_ID, value: id },
        ...extra,
      ];
      // Found by class and id and compared here: not every token can search on CKA_VALUE.
      const sameValue = () => findObjects(lib, s, certTemplate()).filter((h) => attr(lib, s, h, CK.CKA_VALUE)?.equals(value));
      let stored = sameValue();
      let created: Handle | undefined;
      if (stored.length === 0) {
        created = lib.C_CreateObject(s, certTemplate([
          { type: CK.CKA_TOKEN, value: true },
          { type: CK.CKA_PRIVATE, value: false },
          { type: CK.CKA_LABEL, value: label },
          { type: CK.CKA_VALUE, value: value },
          { type: CK.CKA_SUBJECT, value: fields.subjectDer },
          { type: CK.CKA_ISSUER, value: fields.issuerDer },
          { type: CK.CKA_SERIAL_NUMBER, value: fields.serialDer },
        ]));
        stored = sameValue();
      } else {
        for (const h of stored) lib.C_SetAttributeValue(s, h, [{ type: CK.CKA_LABEL, value: label }]);
      }
      // Read back what the token holds now, as a relying application will.
      const back = stored.map((h) => attr(lib, s, h, CK.CKA_VALUE));
      if (stored.length === 0 || !back.every((b) => b?.equals(value)) || !samePublicKey(readCertificate(back[0]!).spki, spki)) {
        if (created) {
          try { lib.C_DestroyObject(s, created); } catch { /* reported below */ }
        }
        throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the certificate read back from the token differs from the one written" } });
      }
      return tokenCertificate(value, keyId.toLowerCase(), label, true);
    });
  }

  /** Also the pair's encryption objects beside a signing key (CKA_ID `id` ‖ 02), so that the pair keeps one label. */
  relabel(id: string, label: string): Promise<void> {
    return this.#run("relabel", (lib, s) => {
      checkLabel(label, 255);
      const objects = findObjects(lib, s, [{ type: CK.CKA_ID, value: idBytes(id) }]);
      if (objects.length === 0) throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id } });
      const encryption = idBytes(id).length < 64 ? findObjects(lib, s, [{ type: CK.CKA_ID, value: encryptionIdOf(idBytes(id)) }]) : [];
      for (const h of [...objects, ...encryption]) lib.C_SetAttributeValue(s, h, [{ type: CK.CKA_LABEL, value: label }]);
    });
  }

  importRsaEnvelope(keyId: string, envelope: Uint8Array, expectedSpki: Uint8Array): Promise<TokenKey> {
    return this.#run("import the encryption key", async (lib, s) => {
      const parsed = parseRsaKeyEnvelope(envelope);
      const { priv: signing, spki: signingSpki } = this.#key(lib, s, keyId);
      if (!subjectKeyIdOf(signingSpki).equals(parsed.recipientKeyId)) {
        throw new UkeyError("ENVELOPE_MALFORMED", { params: { reason: "it is for another key than this UKey's new signing key" } });
      }
      const expected = Buffer.from(expectedSpki);
      const id = encryptionIdOf(idBytes(keyId));
      const label = (attr(lib, s, signing, CK.CKA_LABEL) ?? Buffer.alloc(0)).toString("utf8");
      const done = this.#encryptionKeyAt(lib, s, id, expected);
      if (!done) {
        // A key made before its profile was known to be a pair (a renewal) may unwrap for this import only,
        // where the token lets CKA_UNWRAP change; where it does not, the token refuses the unwrap below.
        if (readBool(attr(lib, s, signing, CK.CKA_UNWRAP)) === false) {
          try { lib.C_SetAttributeValue(s, signing, [{ type: CK.CKA_UNWRAP, value: true }]); } catch { /* refused below, by name */ }
        }
        const unwrapped = await unwrapRsaEnvelope(lib, s, signing, parsed, [
          { type: CK.CKA_TOKEN, value: true },
          { type: CK.CKA_PRIVATE, value: true },
          { type: CK.CKA_ID, value: id },
          { type: CK.CKA_LABEL, value: label },
        ]);
        const spki = spkiOf(lib, s, unwrapped);
        if (!spki || !samePublicKey(spki, expected)) {
          lib.C_DestroyObject(s, unwrapped);
          throw new UkeyError("CERT_KEY_MISMATCH", { detail: "the key in the envelope is not the encryption certificate's" });
        }
      }
      this.#publicKeyBeside(lib, s, id, label, expected);
      // The envelope is open: the signing key goes back to signing alone (tokens that keep CKA_UNWRAP fixed say so; it stays).
      try {
        lib.C_SetAttributeValue(s, signing, [{ type: CK.CKA_UNWRAP, value: false }]);
      } catch (e) {
        if (p11Code(e) !== CK.CKR_ATTRIBUTE_READ_ONLY) throw e;
      }
      return { id: id.toString("hex"), label, algorithm: keyAlgorithmOfSpki(expected), spki: new Uint8Array(expected) };
    });
  }

  /**
   * Whether the encryption key of `id` is already there and is `expected` (an earlier run imported it).
   * @throws UkeyError TOKEN_CONTAINER_FOREIGN when another key holds its place.
   */
  #encryptionKeyAt(lib: Lib, s: Handle, id: Buffer, expected: Buffer): boolean {
    const privates = findObjects(lib, s, [{ type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY }, { type: CK.CKA_ID, value: id }]);
    if (privates.length === 0) return false;
    if (privates.every((h) => { const own = spkiOf(lib, s, h); return own && samePublicKey(own, expected); })) return true;
    throw new UkeyError("TOKEN_CONTAINER_FOREIGN", { params: { container: id.toString("hex") }, detail: "another key already has the encryption key's id" });
  }

  /** The public key object beside an imported private key, as generateKeyPair leaves one (some applications look for it). */
  #publicKeyBeside(lib: Lib, s: Handle, id: Buffer, label: string, spki: Buffer): void {
    if (findObjects(lib, s, [{ type: CK.CKA_CLASS, value: CK.CKO_PUBLIC_KEY }, { type: CK.CKA_ID, value: id }]).length > 0) return;
    const jwk = createPublicKey({ key: spki, format: "der", type: "spki" }).export({ format: "jwk" });
    lib.C_CreateObject(s, [
      { type: CK.CKA_CLASS, value: CK.CKO_PUBLIC_KEY },
      { type: CK.CKA_KEY_TYPE, value: CK.CKK_RSA },
      { type: CK.CKA_TOKEN, value: true },
      { type: CK.CKA_PRIVATE, value: false },
      { type: CK.CKA_ID, value: id },
      { type: CK.CKA_LABEL, value: label },
      { type: CK.CKA_ENCRYPT, value: true },
      { type: CK.CKA_WRAP, value: true },
      { type: CK.CKA_MODULUS, value: Buffer.from(jwk.n!, "base64url") },
      { type: CK.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e!, "base64url") },
    ]);
  }

  deleteObjects(ids: string[]): Promise<void> {
    return this.#run("delete objects", (lib, s) => {
      const bytes = ids.map(idBytes);
      for (const id of bytes) {
        // Certificate first, private key last: an interruption never leaves a certificate whose key is gone.
        for (const cls of [CK.CKO_CERTIFICATE, CK.CKO_PUBLIC_KEY, CK.CKO_PRIVATE_KEY]) {
          for (const h of findObjects(lib, s, [{ type: CK.CKA_CLASS, value: cls }, { type: CK.CKA_ID, value: id }])) {
            lib.C_DestroyObject(s, h);
          }
        }
      }
    });
  }

  changePin(oldPin: string, newPin: string): Promise<void> {
    return this.#run("change the PIN", (lib, s) => {
      checkNewUserPin(newPin);
      try {
        lib.C_SetPIN(s, oldPin, newPin);
      } catch (e) {
        const code = p11Code(e);
        if (code === CK.CKR_PIN_INCORRECT || code === CK.CKR_PIN_LOCKED) throw loginError(lib, this.#slotOf(lib, s), e, "user");
        if (weakPinCodes.has(code ?? -1)) throw new UkeyError("PIN_TOO_WEAK", { detail: (e as Error).message, cause: e });
        throw e;
      }
    });
  }

  #slotOf(lib: Lib, s: Handle): Handle {
    return lib.C_GetSessionInfo(s).slotID;
  }

  /** Logs out, closes the session and lets the next session of the token start. Safe to call twice. */
  async close(): Promise<void> {
    await this.#queue.run(() => {
      const handle = this.#handle;
      this.#handle = undefined;
      if (!handle) return;
      try { this.#lib.C_Logout(handle); } catch { /* closing logs out as well */ }
      try { this.#lib.C_CloseSession(handle); } catch { /* the token may be gone */ }
      this.#onClose();
    });
  }
}
