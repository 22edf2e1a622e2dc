import type * as KoffiModule from "koffi";
import loadKoffi from "./koffi-loader.cjs";

/**
 * The agent's PKCS#11 (Cryptoki 2.40) binding, over the koffi FFI.
 *
 * Why koffi and not a compiled addon: koffi's npm package carries prebuilt
 * binaries for every platform we ship (linux-x64, win32-x64, darwin-*), so the
 * holder's machine needs no compiler, and the Windows executable built on
 * Linux can carry the Windows binary (scripts/build-agent-windows.mjs). The
 * SKF (GM/T 0016) libraries of Chinese keys have no Node binding at all, so the
 * agent needs an FFI for them anyway; one FFI serves both.
 *
 * Only the calls the agent makes are declared. Structures follow the
 * platform's C ABI, except on Windows, where Cryptoki structures are packed to
 * 1 byte (the standard's `#pragma pack(push, cryptoki, 1)`) and CK_ULONG is 32
 * bits (LLP64). Errors are Pkcs11Error with the CKR_ value in `code`.
 */

type Koffi = ReturnType<typeof loadKoffi>;
let koffiCache: Koffi | undefined;
function koffi(): Koffi {
  koffiCache ??= loadKoffi();
  return koffiCache;
}

/** The Cryptoki constants the agent uses (values from PKCS#11 v2.40, pkcs11t.h). */
export const CK = Object.freeze({
  CKF_OS_LOCKING_OK: 0x2,
  CKF_RW_SESSION: 0x2,
  CKF_SERIAL_SESSION: 0x4,
  CKF_PROTECTED_AUTHENTICATION_PATH: 0x100,
  CKF_USER_PIN_INITIALIZED: 0x8,
  CKF_USER_PIN_COUNT_LOW: 0x10000,
  CKF_USER_PIN_FINAL_TRY: 0x20000,
  CKF_USER_PIN_LOCKED: 0x40000,
  CKF_USER_PIN_TO_BE_CHANGED: 0x80000,
  CKF_SO_PIN_COUNT_LOW: 0x100000,
  CKF_SO_PIN_FINAL_TRY: 0x200000,
  CKF_SO_PIN_LOCKED: 0x400000,
  CKU_SO: 0,
  CKU_USER: 1,
  CKO_CERTIFICATE: 1,
  CKO_PUBLIC_KEY: 2,
  CKO_PRIVATE_KEY: 3,
  CKO_SECRET_KEY: 4,
  CKC_X_509: 0,
  CKK_RSA: 0,
  CKK_EC: 3,
  CKK_AES: 0x1f,
  CKA_CLASS: 0x0,
  CKA_TOKEN: 0x1,
  CKA_PRIVATE: 0x2,
  CKA_LABEL: 0x3,
  CKA_VALUE: 0x11,
  CKA_CERTIFICATE_TYPE: 0x80,
  CKA_ISSUER: 0x81,
  CKA_SERIAL_NUMBER: 0x82,
  CKA_KEY_TYPE: 0x100,
  CKA_SUBJECT: 0x101,
  CKA_ID: 0x102,
  CKA_SENSITIVE: 0x103,
  CKA_ENCRYPT: 0x104,
  CKA_DECRYPT: 0x105,
  CKA_WRAP: 0x106,
  CKA_UNWRAP: 0x107,
  CKA_SIGN: 0x108,
  CKA_VERIFY: 0x10a,
  CKA_MODULUS: 0x120,
  CKA_MODULUS_BITS: 0x121,
  CKA_PUBLIC_EXPONENT: 0x122,
  CKA_EXTRACTABLE: 0x162,
  CKA_EC_PARAMS: 0x180,
  CKA_EC_POINT: 0x181,
  CKM_RSA_PKCS_KEY_PAIR_GEN: 0x0,
  CKM_RSA_PKCS_OAEP: 0x9,
  CKM_SHA256_RSA_PKCS: 0x40,
  CKM_SHA_1: 0x220,
  CKM_AES_KEY_WRAP_PAD: 0x210a,
  CKG_MGF1_SHA1: 0x1,
  CKZ_DATA_SPECIFIED: 0x1,
  CKM_EC_KEY_PAIR_GEN: 0x1040,
  CKM_ECDSA: 0x1041,
  CKR_OK: 0x0,
  CKR_FUNCTION_FAILED: 0x6,
  CKR_GENERAL_ERROR: 0x5,
  CKR_ARGUMENTS_BAD: 0x7,
  CKR_ENCRYPTED_DATA_INVALID: 0x40,
  CKR_ENCRYPTED_DATA_LEN_RANGE: 0x41,
  CKR_FUNCTION_CANCELED: 0x50,
  CKR_FUNCTION_NOT_SUPPORTED: 0x54,
  CKR_KEY_FUNCTION_NOT_PERMITTED: 0x68,
  CKR_MECHANISM_INVALID: 0x70,
  CKR_MECHANISM_PARAM_INVALID: 0x71,
  CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: 0xf2,
  CKR_WRAPPED_KEY_INVALID: 0x110,
  CKR_WRAPPED_KEY_LEN_RANGE: 0x112,
  CKR_ATTRIBUTE_READ_ONLY: 0x10,
  CKR_ATTRIBUTE_SENSITIVE: 0x11,
  CKR_ATTRIBUTE_TYPE_INVALID: 0x12,
  CKR_DEVICE_MEMORY: 0x31,
  CKR_DEVICE_REMOVED: 0x32,
  CKR_PIN_INCORRECT: 0xa0,
  CKR_PIN_INVALID: 0xa1,
  CKR_PIN_LEN_RANGE: 0xa2,
  CKR_PIN_LOCKED: 0xa4,
  CKR_SESSION_CLOSED: 0xb0,
  CKR_SESSION_HANDLE_INVALID: 0xb3,
  CKR_SLOT_ID_INVALID: 0x3,
  CKR_TOKEN_NOT_PRESENT: 0xe0,
  CKR_USER_ALREADY_LOGGED_IN: 0x100,
  CKR_BUFFER_TOO_SMALL: 0x150,
  CKR_CRYPTOKI_ALREADY_INITIALIZED: 0x191,
  CKR_PIN_TOO_WEAK: 0x1b8,
});

const rvNames = new Map<number, string>(Object.entries(CK).filter(([k]) => k.startsWith("CKR_")).map(([k, v]) => [v, k]));

/** A Cryptoki call that returned something other than CKR_OK. */
export class Pkcs11Error extends Error {
  readonly code: number;
  readonly method: string;
  constructor(method: string, code: number) {
    super(`${method}: ${rvNames.get(code) ?? `CKR 0x${code.toString(16).padStart(8, "0")}`}`);
    this.name = "Pkcs11Error";
    this.code = code;
    this.method = method;
  }
}

/** One attribute of a template: a value is written as the attribute's C type (CK_BBOOL, CK_ULONG, bytes). */
export interface Attribute {
  type: number;
  value?: boolean | number | string | Buffer;
}
export interface Mechanism {
  mechanism: number;
  parameter?: Buffer;
}
export interface CkTokenInfo {
  label: string;
  manufacturerID: string;
  model: string;
  serialNumber: string;
  flags: number;
  maxPinLen: number;
  minPinLen: number;
  totalPublicMemory: number;
  freePublicMemory: number;
  totalPrivateMemory: number;
  freePrivateMemory: number;
}
export interface CkSessionInfo {
  slotID: number;
  state: number;
  flags: number;
}

type Fn = KoffiModule.KoffiFunction;

const FUNCTIONS = {
  C_Initialize: "CK_RV C_Initialize(CK_C_INITIALIZE_ARGS *pInitArgs)",
  C_Finalize: "CK_RV C_Finalize(void *pReserved)",
  C_GetSlotList: "CK_RV C_GetSlotList(uint8_t tokenPresent, uint8_t *pSlotList, uint8_t *pulCount)",
  C_GetTokenInfo: "CK_RV C_GetTokenInfo(CK_ULONG slotID, _Out_ CK_TOKEN_INFO *pInfo)",
  C_OpenSession: "CK_RV C_OpenSession(CK_ULONG slotID, CK_ULONG flags, void *pApplication, void *notify, uint8_t *phSession)",
  C_CloseSession: "CK_RV C_CloseSession(CK_ULONG hSession)",
  C_GetSessionInfo: "CK_RV C_GetSessionInfo(CK_ULONG hSession, _Out_ CK_SESSION_INFO *pInfo)",
  C_Login: "CK_RV C_Login(CK_ULONG hSession, CK_ULONG userType, uint8_t *pPin, CK_ULONG ulPinLen)",
  C_Logout: "CK_RV C_Logout(CK_ULONG hSession)",
  C_GetMechanismList: "CK_RV C_GetMechanismList(CK_ULONG slotID, uint8_t *pMechanismList, uint8_t *pulCount)",
  C_InitToken: "CK_RV C_InitToken(CK_ULONG slotID, uint8_t *pPin, CK_ULONG ulPinLen, uint8_t *pLabel)",
  C_InitPIN: "CK_RV C_InitPIN(CK_ULONG hSession, uint8_t *pPin, CK_ULONG ulPinLen)",
  C_SetPIN: "CK_RV C_SetPIN(CK_ULONG hSession, uint8_t *pOldPin, CK_ULONG ulOldLen, uint8_t *pNewPin, CK_ULONG ulNewLen)",
  C_FindObjectsInit: "CK_RV C_FindObjectsInit(CK_ULONG hSession, CK_ATTRIBUTE *pTemplate, CK_ULONG ulCount)",
  C_FindObjects: "CK_RV C_FindObjects(CK_ULONG hSession, uint8_t *phObject, CK_ULONG ulMaxObjectCount, uint8_t *pulObjectCount)",
  C_FindObjectsFinal: "CK_RV C_FindObjectsFinal(CK_ULONG hSession)",
  C_GetAttributeValue: "CK_RV C_GetAttributeValue(CK_ULONG hSession, CK_ULONG hObject, _Inout_ CK_ATTRIBUTE *pTemplate, CK_ULONG ulCount)",
  C_SetAttributeValue: "CK_RV C_SetAttributeValue(CK_ULONG hSession, CK_ULONG hObject, CK_ATTRIBUTE *pTemplate, CK_ULONG ulCount)",
  C_CreateObject: "CK_RV C_CreateObject(CK_ULONG hSession, CK_ATTRIBUTE *pTemplate, CK_ULONG ulCount, uint8_t *phObject)",
  C_DestroyObject: "CK_RV C_DestroyObject(CK_ULONG hSession, CK_ULONG hObject)",
  C_GenerateKeyPair: "CK_RV C_GenerateKeyPair(CK_ULONG hSession, CK_MECHANISM *pMechanism, CK_ATTRIBUTE *pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE *pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, uint8_t *phPublicKey, uint8_t *phPrivateKey)",
  C_SignInit: "CK_RV C_SignInit(CK_ULONG hSession, CK_MECHANISM *pMechanism, CK_ULONG hKey)",
  C_Sign: "CK_RV C_Sign(CK_ULONG hSession, uint8_t *pData, CK_ULONG ulDataLen, uint8_t *pSignature, uint8_t *pulSignatureLen)",
} as const;

/** Bound when the module exports them; a call to a missing one fails with CKR_FUNCTION_NOT_SUPPORTED, not the load. */
const OPTIONAL_FUNCTIONS = {
  C_UnwrapKey: "CK_RV C_UnwrapKey(CK_ULONG hSession, CK_MECHANISM *pMechanism, CK_ULONG hUnwrappingKey, uint8_t *pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE *pTemplate, CK_ULONG ulAttributeCount, uint8_t *phKey)",
} as const;
type Name = keyof typeof FUNCTIONS | keyof typeof OPTIONAL_FUNCTIONS;

interface Types {
  ulongSize: number;
  attribute: KoffiModule.IKoffiCType;
}
let typesCache: Types | undefined;
/** Declares the Cryptoki types once per process (koffi type names are global). */
function types(): Types {
  if (typesCache) return typesCache;
  const k = koffi();
  const windows = process.platform === "win32";
  const struct = (name: string, def: Record<string, string | KoffiModule.IKoffiCType>) => (windows ? k.pack(name, def) : k.struct(name, def));
  k.alias("CK_ULONG", "unsigned long");
  k.alias("CK_RV", "unsigned long");
  const attribute = struct("CK_ATTRIBUTE", { type: "CK_ULONG", pValue: "void *", ulValueLen: "CK_ULONG" });
  struct("CK_MECHANISM", { mechanism: "CK_ULONG", pParameter: "void *", ulParameterLen: "CK_ULONG" });
  struct("CK_C_INITIALIZE_ARGS", {
    CreateMutex: "void *", DestroyMutex: "void *", LockMutex: "void *", UnlockMutex: "void *", flags: "CK_ULONG", pReserved: "void *",
  });
  const version = struct("CK_VERSION", { major: "uint8_t", minor: "uint8_t" });
  struct("CK_TOKEN_INFO", {
    label: k.array("uint8_t", 32), manufacturerID: k.array("uint8_t", 32), model: k.array("uint8_t", 16), serialNumber: k.array("uint8_t", 16),
    flags: "CK_ULONG", ulMaxSessionCount: "CK_ULONG", ulSessionCount: "CK_ULONG", ulMaxRwSessionCount: "CK_ULONG", ulRwSessionCount: "CK_ULONG",
    ulMaxPinLen: "CK_ULONG", ulMinPinLen: "CK_ULONG", ulTotalPublicMemory: "CK_ULONG", ulFreePublicMemory: "CK_ULONG",
    ulTotalPrivateMemory: "CK_ULONG", ulFreePrivateMemory: "CK_ULONG", hardwareVersion: version, firmwareVersion: version,
    utcTime: k.array("uint8_t", 16),
  });
  struct("CK_SESSION_INFO", { slotID: "CK_ULONG", state: "CK_ULONG", flags: "CK_ULONG", ulDeviceError: "CK_ULONG" });
  typesCache = { ulongSize: k.sizeof("CK_ULONG"), attribute };
  return typesCache;
}

const text = (bytes: number[] | Uint8Array): string => Buffer.from(bytes).toString("utf8").replace(/[\s\0]+$/, "");

/** A loaded PKCS#11 module. Not thread-safe beyond what the module itself is (the agent serialises per token). */
export class Cryptoki {
  #lib: KoffiModule.IKoffiLib | undefined;
  #fns = new Map<Name, Fn>();
  readonly #ul: number;

  constructor() {
    this.#ul = types().ulongSize;
  }

  /** Loads the library and binds the Cryptoki functions by name. Throws when the file is not a loadable library or lacks one of them. */
  load(path: string): void {
    const lib = koffi().load(path);
    try {
      for (const [name, proto] of Object.entries(FUNCTIONS) as [Name, string][]) this.#fns.set(name, lib.func(proto));
      for (const [name, proto] of Object.entries(OPTIONAL_FUNCTIONS) as [Name, string][]) {
        try {
          this.#fns.set(name, lib.func(proto));
        } catch {
          // Absent: the module cannot unwrap; the call says so with CKR_FUNCTION_NOT_SUPPORTED.
        }
      }
    } catch (e) {
      lib.unload();
      throw new Error(`not a PKCS#11 module: ${(e as Error).message}`, { cause: e });
    }
    this.#lib = lib;
  }

  close(): void {
    this.#fns.clear();
    this.#lib?.unload();
    this.#lib = undefined;
  }

  #fn(name: Name): Fn {
    const f = this.#fns.get(name);
    if (!f && name in OPTIONAL_FUNCTIONS && this.#lib) throw new Pkcs11Error(name, CK.CKR_FUNCTION_NOT_SUPPORTED);
    if (!f) throw new Error(`PKCS#11 module not loaded (${name})`);
    return f;
  }

  #call(name: Name, ...args: unknown[]): void {
    const rv = Number(this.#fn(name)(...args));
    if (rv !== CK.CKR_OK) throw new Pkcs11Error(name, rv);
  }

  #callAsync(name: Name, ...args: unknown[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#fn(name).async(...args, (err: unknown, rv: unknown) => {
        if (err) reject(err);
        else if (Number(rv) !== CK.CKR_OK) reject(new Pkcs11Error(name, Number(rv)));
        else resolve();
      });
    });
  }

  #ulongs(n: number): Buffer {
    return Buffer.alloc(Math.max(1, n) * this.#ul);
  }
  #readUlong(b: Buffer, i = 0): number {
    return this.#ul === 8 ? Number(b.readBigUInt64LE(i * 8)) : b.readUInt32LE(i * 4);
  }
  #ulong(v: number): Buffer {
    const b = this.#ulongs(1);
    if (this.#ul === 8) b.writeBigUInt64LE(BigInt(v));
    else b.writeUInt32LE(v >>> 0);
    return b;
  }

  /** The bytes of an attribute value as its C type: CK_BBOOL for booleans, CK_ULONG for numbers, UTF-8 for strings. */
  #value(v: Attribute["value"]): Buffer | null {
    if (v === undefined) return null;
    if (typeof v === "boolean") return Buffer.from([v ? 1 : 0]);
    if (typeof v === "number") return this.#ulong(v);
    if (typeof v === "string") return Buffer.from(v, "utf8");
    return v;
  }
  #template(template: Attribute[]): { type: number; pValue: Buffer | null; ulValueLen: number }[] {
    return template.map((a) => {
      const pValue = this.#value(a.value);
      return { type: a.type, pValue, ulValueLen: pValue?.length ?? 0 };
    });
  }
  #mechanism(m: Mechanism): { mechanism: number; pParameter: Buffer | null; ulParameterLen: number } {
    return { mechanism: m.mechanism, pParameter: m.parameter ?? null, ulParameterLen: m.parameter?.length ?? 0 };
  }

  C_Initialize(flags = CK.CKF_OS_LOCKING_OK): void {
    this.#call("C_Initialize", { CreateMutex: null, DestroyMutex: null, LockMutex: null, UnlockMutex: null, flags, pReserved: null });
  }
  C_Finalize(): void {
    this.#call("C_Finalize", null);
  }
  C_GetSlotList(tokenPresent: boolean): number[] {
    const count = this.#ulongs(1);
    this.#call("C_GetSlotList", tokenPresent ? 1 : 0, null, count);
    let n = this.#readUlong(count);
    // Tokens may come between the two calls: ask again while the list grows.
    for (;;) {
      const list = this.#ulongs(n);
      const c = this.#ulong(n);
      try {
        this.#call("C_GetSlotList", tokenPresent ? 1 : 0, list, c);
      } catch (e) {
        if ((e as Pkcs11Error).code === CK.CKR_BUFFER_TOO_SMALL) { n = this.#readUlong(c); continue; }
        throw e;
      }
      return Array.from({ length: this.#readUlong(c) }, (_, i) => this.#readUlong(list, i));
    }
  }
  C_GetTokenInfo(slot: number): CkTokenInfo {
    const out: Record<string, unknown> = {};
    this.#call("C_GetTokenInfo", slot, out);
    const n = (k: string) => Number(out[k]);
    return {
      label: text(out.label as number[]), manufacturerID: text(out.manufacturerID as number[]), model: text(out.model as number[]),
      serialNumber: text(out.serialNumber as number[]), flags: n("flags"), maxPinLen: n("ulMaxPinLen"), minPinLen: n("ulMinPinLen"),
      totalPublicMemory: n("ulTotalPublicMemory"), freePublicMemory: n("ulFreePublicMemory"),
      totalPrivateMemory: n("ulTotalPrivateMemory"), freePrivateMemory: n("ulFreePrivateMemory"),
    };
  }
  C_OpenSession(slot: number, flags: number): number {
    const h = this.#ulongs(1);
    this.#call("C_OpenSession", slot, flags, null, null, h);
    return this.#readUlong(h);
  }
  C_CloseSession(session: number): void {
    this.#call("C_CloseSession", session);
  }
  C_GetSessionInfo(session: number): CkSessionInfo {
    const out: Record<string, unknown> = {};
    this.#call("C_GetSessionInfo", session, out);
    return { slotID: Number(out.slotID), state: Number(out.state), flags: Number(out.flags) };
  }
  C_Login(session: number, userType: number, pin: string): void {
    const p = Buffer.from(pin, "utf8");
    this.#call("C_Login", session, userType, p, p.length);
  }
  /**
   * C_Login with a NULL PIN: the PIN is entered on the token's own PIN pad
   * (CKF_PROTECTED_AUTHENTICATION_PATH). On a worker thread, because the
   * module returns only when the holder has typed it there (or cancelled).
   */
  async C_LoginProtectedAsync(session: number, userType: number): Promise<void> {
    await this.#callAsync("C_Login", session, userType, null, 0);
  }
  /** The mechanism types the token in `slot` supports (two calls: the count, then the list). */
  C_GetMechanismList(slot: number): number[] {
    const count = this.#ulongs(1);
    this.#call("C_GetMechanismList", slot, null, count);
    const n = this.#readUlong(count);
    if (n === 0) return [];
    const list = this.#ulongs(n);
    this.#call("C_GetMechanismList", slot, list, count);
    return Array.from({ length: this.#readUlong(count) }, (_, i) => this.#readUlong(list, i));
  }
  C_Logout(session: number): void {
    this.#call("C_Logout", session);
  }
  /** `label` is padded with spaces to the 32 octets the standard asks for. */
  C_InitToken(slot: number, soPin: string, label: string): void {
    const p = Buffer.from(soPin, "utf8");
    const l = Buffer.alloc(32, 0x20);
    Buffer.from(label, "utf8").copy(l, 0, 0, 32);
    this.#call("C_InitToken", slot, p, p.length, l);
  }
  C_InitPIN(session: number, pin: string): void {
    const p = Buffer.from(pin, "utf8");
    this.#call("C_InitPIN", session, p, p.length);
  }
  C_SetPIN(session: number, oldPin: string, newPin: string): void {
    const o = Buffer.from(oldPin, "utf8");
    const n = Buffer.from(newPin, "utf8");
    this.#call("C_SetPIN", session, o, o.length, n, n.length);
  }
  C_FindObjectsInit(session: number, template: Attribute[]): void {
    const t = this.#template(template);
    this.#call("C_FindObjectsInit", session, t, t.length);
  }
  C_FindObjects(session: number, max: number): number[] {
    const list = this.#ulongs(max);
    const count = this.#ulongs(1);
    this.#call("C_FindObjects", session, list, max, count);
    return Array.from({ length: this.#readUlong(count) }, (_, i) => this.#readUlong(list, i));
  }
  C_FindObjectsFinal(session: number): void {
    this.#call("C_FindObjectsFinal", session);
  }
  /** Each attribute's value as bytes (two calls: the lengths, then the values). */
  C_GetAttributeValue(session: number, object: number, template: Attribute[]): { type: number; value: Buffer }[] {
    const sizes = template.map((a) => ({ type: a.type, pValue: null as Buffer | null, ulValueLen: 0 }));
    this.#call("C_GetAttributeValue", session, object, sizes, sizes.length);
    // koffi copies the structures back with pValue as a bare pointer: keep the buffers aside.
    const buffers = sizes.map((a) => Buffer.alloc(Number(a.ulValueLen)));
    const filled = sizes.map((a, i) => ({ type: a.type, pValue: buffers[i], ulValueLen: buffers[i]!.length }));
    this.#call("C_GetAttributeValue", session, object, filled, filled.length);
    return filled.map((a, i) => ({ type: a.type, value: buffers[i]!.subarray(0, Number(a.ulValueLen)) }));
  }
  C_SetAttributeValue(session: number, object: number, template: Attribute[]): void {
    const t = this.#template(template);
    this.#call("C_SetAttributeValue", session, object, t, t.length);
  }
  C_CreateObject(session: number, template: Attribute[]): number {
    const t = this.#template(template);
    const h = this.#ulongs(1);
    this.#call("C_CreateObject", session, t, t.length, h);
    return this.#readUlong(h);
  }
  C_DestroyObject(session: number, object: number): void {
    this.#call("C_DestroyObject", session, object);
  }
  /** On a worker thread: a key pair takes seconds on a USB key and the agent's event loop must go on. */
  async C_GenerateKeyPairAsync(session: number, mechanism: Mechanism, publicTemplate: Attribute[], privateTemplate: Attribute[]): Promise<{ publicKey: number; privateKey: number }> {
    const pub = this.#template(publicTemplate);
    const priv = this.#template(privateTemplate);
    const hPub = this.#ulongs(1);
    const hPriv = this.#ulongs(1);
    await this.#callAsync("C_GenerateKeyPair", session, this.#mechanism(mechanism), pub, pub.length, priv, priv.length, hPub, hPriv);
    return { publicKey: this.#readUlong(hPub), privateKey: this.#readUlong(hPriv) };
  }
  C_SignInit(session: number, mechanism: Mechanism, key: number): void {
    this.#call("C_SignInit", session, this.#mechanism(mechanism), key);
  }
  /**
   * The parameters of CKM_RSA_PKCS_OAEP (CK_RSA_PKCS_OAEP_PARAMS) with an
   * empty label: hashAlg, mgf, source CKZ_DATA_SPECIFIED, pSourceData NULL,
   * ulSourceDataLen 0. Written as bytes: CK_ULONGs and one NULL pointer, no
   * padding between them on any platform we ship (all 8 octets on Unix;
   * packed on Windows).
   */
  rsaOaepParams(hashAlg: number, mgf: number): Buffer {
    const pointer = 8;
    const b = Buffer.alloc(this.#ul * 4 + pointer);
    [hashAlg, mgf, CK.CKZ_DATA_SPECIFIED].forEach((v, i) => this.#ulong(v).copy(b, i * this.#ul));
    return b;
  }
  /** Unwraps `wrapped` with key `unwrappingKey` into a new object of `template`, on a worker thread; its handle. */
  async C_UnwrapKeyAsync(session: number, mechanism: Mechanism, unwrappingKey: number, wrapped: Buffer, template: Attribute[]): Promise<number> {
    const t = this.#template(template);
    const h = this.#ulongs(1);
    await this.#callAsync("C_UnwrapKey", session, this.#mechanism(mechanism), unwrappingKey, wrapped, wrapped.length, t, t.length, h);
    return this.#readUlong(h);
  }
  /** Signs into `out` (which must be large enough) on a worker thread; returns the signature's part of it. */
  async C_SignAsync(session: number, data: Buffer, out: Buffer): Promise<Buffer> {
    const len = this.#ulong(out.length);
    await this.#callAsync("C_Sign", session, data, data.length, out, len);
    return out.subarray(0, this.#readUlong(len));
  }
}
