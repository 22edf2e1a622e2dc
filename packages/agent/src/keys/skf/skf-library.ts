import { existsSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import type * as KoffiNamespace from "koffi";
import { UkeyError } from "@ukey/policy";
import { DEVINFO_SIZE, ECC_PUBLIC_KEY_BLOB_SIZE, ECC_SIGNATURE_BLOB_SIZE, RSA_PUBLIC_KEY_BLOB_SIZE, parseDevInfo, parseNameList, type DevInfo } from "./skf-blobs.js";
import { SAR, SkfCallError } from "./skf-codes.js";

// The GM/T 0016 (SKF) functions the agent calls, over koffi. SKF has no
// Node.js binding at all; koffi's npm packages carry a prebuilt FFI for
// every platform, so neither the build machine nor the holder's compiles
// anything. Every function is called asynchronously (on koffi's worker
// thread): a real key may wait seconds for its button or PIN pad, and the
// agent's local API must keep answering meanwhile.

/** A device, application or container handle (an opaque pointer). */
export type SkfHandle = bigint | object;

/** PIN types of SKF_VerifyPIN and friends. */
export const PinType = { admin: 0, user: 1 } as const;
/** SKF_GetContainerType. */
export const ContainerType = { empty: 0, rsa: 1, ecc: 2 } as const;
/** SGD_SM2_1: SM2 signature key pair. */
export const SGD_SM2_1 = 0x00020100;
/** SECURE_ANYONE_ACCOUNT, SECURE_USER_ACCOUNT of SKF_CreateApplication's file rights. */
export const SECURE_USER_ACCOUNT = 0x00000010;

/**
 * The prototypes the agent uses, in the C of GM/T 0016 with koffi's
 * spelling of types: ULONG is uint32, BOOL int32, every data pointer
 * (ULONG*, BYTE*, a blob) a buffer the agent allocates.
 */
const prototypes = {
  SKF_EnumDev: "uint32 SKF_EnumDev(int32 bPresent, void *szNameList, void *pulSize)",
  SKF_ConnectDev: "uint32 SKF_ConnectDev(const char *szName, _Out_ SKF_HANDLE *phDev)",
  SKF_DisConnectDev: "uint32 SKF_DisConnectDev(SKF_HANDLE hDev)",
  SKF_GetDevInfo: "uint32 SKF_GetDevInfo(SKF_HANDLE hDev, void *pDevInfo)",
  SKF_GenRandom: "uint32 SKF_GenRandom(SKF_HANDLE hDev, void *pbRandom, uint32 ulRandomLen)",
  SKF_DevAuth: "uint32 SKF_DevAuth(SKF_HANDLE hDev, void *pbAuthData, uint32 ulLen)",
  SKF_ChangePIN: "uint32 SKF_ChangePIN(SKF_HANDLE hApp, uint32 ulPINType, const char *szOldPin, const char *szNewPin, void *pulRetryCount)",
  SKF_GetPINInfo: "uint32 SKF_GetPINInfo(SKF_HANDLE hApp, uint32 ulPINType, void *pulMaxRetryCount, void *pulRemainRetryCount, void *pbDefaultPin)",
  SKF_VerifyPIN: "uint32 SKF_VerifyPIN(SKF_HANDLE hApp, uint32 ulPINType, const char *szPIN, void *pulRetryCount)",
  SKF_UnblockPIN: "uint32 SKF_UnblockPIN(SKF_HANDLE hApp, const char *szAdminPIN, const char *szNewUserPIN, void *pulRetryCount)",
  SKF_ClearSecureState: "uint32 SKF_ClearSecureState(SKF_HANDLE hApp)",
  SKF_CreateApplication: "uint32 SKF_CreateApplication(SKF_HANDLE hDev, const char *szAppName, const char *szAdminPin, uint32 dwAdminPinRetryCount, const char *szUserPin, uint32 dwUserPinRetryCount, uint32 dwCreateFileRights, _Out_ SKF_HANDLE *phApp)",
  SKF_EnumApplication: "uint32 SKF_EnumApplication(SKF_HANDLE hDev, void *szAppName, void *pulSize)",
  SKF_DeleteApplication: "uint32 SKF_DeleteApplication(SKF_HANDLE hDev, const char *szAppName)",
  SKF_OpenApplication: "uint32 SKF_OpenApplication(SKF_HANDLE hDev, const char *szAppName, _Out_ SKF_HANDLE *phApp)",
  SKF_CloseApplication: "uint32 SKF_CloseApplication(SKF_HANDLE hApp)",
  SKF_CreateContainer: "uint32 SKF_CreateContainer(SKF_HANDLE hApp, const char *szContainerName, _Out_ SKF_HANDLE *phContainer)",
  SKF_DeleteContainer: "uint32 SKF_DeleteContainer(SKF_HANDLE hApp, const char *szContainerName)",
  SKF_OpenContainer: "uint32 SKF_OpenContainer(SKF_HANDLE hApp, const char *szContainerName, _Out_ SKF_HANDLE *phContainer)",
  SKF_CloseContainer: "uint32 SKF_CloseContainer(SKF_HANDLE hContainer)",
  SKF_EnumContainer: "uint32 SKF_EnumContainer(SKF_HANDLE hApp, void *szContainerName, void *pulSize)",
  SKF_GetContainerType: "uint32 SKF_GetContainerType(SKF_HANDLE hContainer, void *pulContainerType)",
  SKF_ImportCertificate: "uint32 SKF_ImportCertificate(SKF_HANDLE hContainer, int32 bSignFlag, void *pbCert, uint32 ulCertLen)",
  SKF_ExportCertificate: "uint32 SKF_ExportCertificate(SKF_HANDLE hContainer, int32 bSignFlag, void *pbCert, void *pulCertLen)",
  SKF_GenECCKeyPair: "uint32 SKF_GenECCKeyPair(SKF_HANDLE hContainer, uint32 ulAlgId, void *pBlob)",
  SKF_ImportECCKeyPair: "uint32 SKF_ImportECCKeyPair(SKF_HANDLE hContainer, void *pEnvelopedKeyBlob)",
  SKF_ECCSignData: "uint32 SKF_ECCSignData(SKF_HANDLE hContainer, void *pbDigest, uint32 ulDigestLen, void *pSignature)",
  SKF_ExportPublicKey: "uint32 SKF_ExportPublicKey(SKF_HANDLE hContainer, int32 bSignFlag, void *pbBlob, void *pulBlobLen)",
  SKF_GenRSAKeyPair: "uint32 SKF_GenRSAKeyPair(SKF_HANDLE hContainer, uint32 ulBitsLen, void *pBlob)",
  SKF_RSASignData: "uint32 SKF_RSASignData(SKF_HANDLE hContainer, void *pbData, uint32 ulDataLen, void *pbSignature, void *pulSignLen)",
} as const;

export type SkfFunctionName = keyof typeof prototypes;
/**
 * Functions a library may lack and still load: RSA containers, which only
 * some keys offer. Calling one that is missing throws SKF_FUNCTION_MISSING
 * naming it, before anything on the key changes.
 */
export const skfOptionalFunctions: ReadonlySet<SkfFunctionName> = new Set<SkfFunctionName>(["SKF_GenRSAKeyPair", "SKF_RSASignData"]);
/** Every SKF function the agent calls; a library must export them all but skfOptionalFunctions. */
export const skfFunctions = Object.keys(prototypes) as SkfFunctionName[];

type KoffiModule = typeof KoffiNamespace;
type AsyncFn = { async: (...args: unknown[]) => void };

let koffiModule: Promise<KoffiModule> | undefined;

/** koffi, loaded on first use so that an agent that never meets an SKF key never loads the FFI. */
function loadKoffi(): Promise<KoffiModule> {
  koffiModule ??= import("koffi").then((m) => ((m as unknown as { default?: KoffiModule }).default ?? m) as KoffiModule);
  return koffiModule;
}

/** One loaded library per real path and process: dlopen is per process, and a library is never unloaded while a call may run. */
const loaded = new Map<string, Promise<SkfLibrary>>();

/**
 * A vendor's SKF library. Throws (as UkeyError):
 * - TOKEN_DRIVER_MISSING: no file at `path`;
 * - SKF_LIBRARY_INVALID: not a loadable library, or one that exports none
 *   of SKF_EnumDev / SKF_ConnectDev (a PKCS#11 module, libc ...);
 * - SKF_FUNCTION_MISSING: an SKF library without a function the agent
 *   needs (params.function names the first; detail lists all). The
 *   skfOptionalFunctions (RSA) may be missing: the library loads, and
 *   calling one is SKF_FUNCTION_MISSING then.
 */
export function openSkfLibrary(path: string): Promise<SkfLibrary> {
  const location = resolve(path);
  if (!existsSync(location)) return Promise.reject(new UkeyError("TOKEN_DRIVER_MISSING", { params: { module: location }, detail: `no file ${location}` }));
  const real = realpathSync(location);
  let hit = loaded.get(real);
  if (!hit) {
    hit = SkfLibrary.load(real);
    loaded.set(real, hit);
    hit.catch(() => loaded.delete(real));
  }
  return hit;
}

export class SkfLibrary {
  readonly path: string;
  readonly #fns: Partial<Record<SkfFunctionName, AsyncFn>>;

  private constructor(path: string, fns: Partial<Record<SkfFunctionName, AsyncFn>>) {
    this.path = path;
    this.#fns = fns;
  }

  static async load(path: string): Promise<SkfLibrary> {
    let koffi: KoffiModule;
    try {
      koffi = await loadKoffi();
    } catch (e) {
      throw new UkeyError("SKF_LIBRARY_INVALID", { params: { module: path }, detail: `the FFI (koffi) cannot load: ${(e as Error).message}`, cause: e });
    }
    let lib: ReturnType<KoffiModule["load"]>;
    try {
      lib = koffi.load(path);
    } catch (e) {
      throw new UkeyError("SKF_LIBRARY_INVALID", { params: { module: path }, detail: (e as Error).message, cause: e });
    }
    // One opaque handle type per process: koffi refuses a second type of the same name.
    handleType(koffi);
    const convention = process.platform === "win32" && process.arch === "ia32" ? "__stdcall " : "";
    const fns: Partial<Record<SkfFunctionName, AsyncFn>> = {};
    const missing: SkfFunctionName[] = [];
    for (const name of skfFunctions) {
      try {
        const proto = prototypes[name];
        fns[name] = lib.func(convention ? proto.replace(/^uint32 /, `uint32 ${convention}`) : proto) as unknown as AsyncFn;
      } catch {
        missing.push(name);
      }
    }
    if (missing.includes("SKF_EnumDev") && missing.includes("SKF_ConnectDev")) {
      try { lib.unload(); } catch { /* nothing was called */ }
      throw new UkeyError("SKF_LIBRARY_INVALID", { params: { module: path }, detail: "it exports neither SKF_EnumDev nor SKF_ConnectDev" });
    }
    const required = missing.filter((name) => !skfOptionalFunctions.has(name));
    if (required.length > 0) {
      try { lib.unload(); } catch { /* nothing was called */ }
      throw new UkeyError("SKF_FUNCTION_MISSING", { params: { module: path, function: required[0]! }, detail: `missing: ${missing.join(", ")}` });
    }
    return new SkfLibrary(path, fns);
  }

  /** Whether the library exports `name` (always true but for skfOptionalFunctions). */
  has(name: SkfFunctionName): boolean {
    return this.#fns[name] !== undefined;
  }

  /** SKF_FUNCTION_MISSING naming `name` unless the library exports it. */
  require(name: SkfFunctionName): void {
    if (!this.has(name)) throw this.#missing(name);
  }

  #missing(name: SkfFunctionName): UkeyError {
    return new UkeyError("SKF_FUNCTION_MISSING", { params: { module: this.path, function: name }, detail: `${this.path} does not export ${name}` });
  }

  /** Calls `name` and resolves its return code. Throws SKF_FUNCTION_MISSING for an optional function the library lacks. */
  call(name: SkfFunctionName, ...args: unknown[]): Promise<number> {
    const fn = this.#fns[name];
    if (!fn) return Promise.reject(this.#missing(name));
    return new Promise((ok, fail) => {
      fn.async(...args, (err: Error | null, code: number) => (err ? fail(err) : ok(code >>> 0)));
    });
  }

  /** Calls `name`; throws SkfCallError unless it returns SAR_OK. */
  async check(name: SkfFunctionName, ...args: unknown[]): Promise<void> {
    const code = await this.call(name, ...args);
    if (code !== SAR.OK) throw new SkfCallError(name, code);
  }

  /** A function that returns a handle through its last argument. */
  async #handle(name: SkfFunctionName, ...args: unknown[]): Promise<SkfHandle> {
    const out: unknown[] = [null];
    await this.check(name, ...args, out);
    if (out[0] === null || out[0] === undefined) throw new SkfCallError(name, SAR.INVALIDHANDLEERR);
    return out[0] as SkfHandle;
  }

  /** The two-call pattern of GM/T 0016: ask the size with a null buffer, then fill. */
  async #sized(name: SkfFunctionName, before: unknown[], after: unknown[] = []): Promise<Buffer> {
    const size = Buffer.alloc(4);
    await this.check(name, ...before, null, size, ...after);
    let n = size.readUInt32LE(0);
    for (let attempt = 0; ; attempt++) {
      const buf = Buffer.alloc(Math.max(n, 2));
      size.writeUInt32LE(buf.length, 0);
      const code = await this.call(name, ...before, buf, size, ...after);
      if (code === SAR.BUFFER_TOO_SMALL && attempt < 2) {
        n = Math.max(size.readUInt32LE(0), buf.length * 2);
        continue;
      }
      if (code !== SAR.OK) throw new SkfCallError(name, code);
      return buf.subarray(0, Math.min(size.readUInt32LE(0), buf.length));
    }
  }

  async #names(name: SkfFunctionName, before: unknown[]): Promise<string[]> {
    const b = await this.#sized(name, before);
    return parseNameList(b);
  }

  enumDev(present = true): Promise<string[]> {
    return this.#names("SKF_EnumDev", [present ? 1 : 0]);
  }

  connectDev(name: string): Promise<SkfHandle> {
    return this.#handle("SKF_ConnectDev", name);
  }

  disconnectDev(dev: SkfHandle): Promise<void> {
    return this.check("SKF_DisConnectDev", dev);
  }

  async getDevInfo(dev: SkfHandle): Promise<DevInfo> {
    // Larger than DEVINFO: a library built with another packing writes past 294 octets, not past the buffer.
    const b = Buffer.alloc(DEVINFO_SIZE + 256);
    await this.check("SKF_GetDevInfo", dev, b);
    return parseDevInfo(b);
  }

  async genRandom(dev: SkfHandle, length: number): Promise<Buffer> {
    const b = Buffer.alloc(length);
    await this.check("SKF_GenRandom", dev, b, length);
    return b;
  }

  devAuth(dev: SkfHandle, authData: Buffer): Promise<void> {
    return this.check("SKF_DevAuth", dev, authData, authData.length);
  }

  enumApplication(dev: SkfHandle): Promise<string[]> {
    return this.#names("SKF_EnumApplication", [dev]);
  }

  openApplication(dev: SkfHandle, name: string): Promise<SkfHandle> {
    return this.#handle("SKF_OpenApplication", dev, name);
  }

  closeApplication(app: SkfHandle): Promise<void> {
    return this.check("SKF_CloseApplication", app);
  }

  createApplication(dev: SkfHandle, name: string, adminPin: string, adminRetries: number, userPin: string, userRetries: number): Promise<SkfHandle> {
    return this.#handle("SKF_CreateApplication", dev, name, adminPin, adminRetries, userPin, userRetries, SECURE_USER_ACCOUNT);
  }

  deleteApplication(dev: SkfHandle, name: string): Promise<void> {
    return this.check("SKF_DeleteApplication", dev, name);
  }

  /** SKF_VerifyPIN: the return code and the retry count the library reports (tries left after a wrong PIN). */
  async verifyPin(app: SkfHandle, type: number, pin: string): Promise<{ code: number; retries: number }> {
    const retries = Buffer.alloc(4, 0xff);
    const code = await this.call("SKF_VerifyPIN", app, type, pin, retries);
    return { code, retries: retries.readUInt32LE(0) };
  }

  async changePin(app: SkfHandle, type: number, oldPin: string, newPin: string): Promise<{ code: number; retries: number }> {
    const retries = Buffer.alloc(4, 0xff);
    const code = await this.call("SKF_ChangePIN", app, type, oldPin, newPin, retries);
    return { code, retries: retries.readUInt32LE(0) };
  }

  async unblockPin(app: SkfHandle, adminPin: string, newUserPin: string): Promise<{ code: number; retries: number }> {
    const retries = Buffer.alloc(4, 0xff);
    const code = await this.call("SKF_UnblockPIN", app, adminPin, newUserPin, retries);
    return { code, retries: retries.readUInt32LE(0) };
  }

  async getPinInfo(app: SkfHandle, type: number): Promise<{ max: number; remaining: number; isDefault: boolean }> {
    const max = Buffer.alloc(4), remaining = Buffer.alloc(4), isDefault = Buffer.alloc(4);
    await this.check("SKF_GetPINInfo", app, type, max, remaining, isDefault);
    return { max: max.readUInt32LE(0), remaining: remaining.readUInt32LE(0), isDefault: isDefault.readInt32LE(0) !== 0 };
  }

  clearSecureState(app: SkfHandle): Promise<void> {
    return this.check("SKF_ClearSecureState", app);
  }

  enumContainer(app: SkfHandle): Promise<string[]> {
    return this.#names("SKF_EnumContainer", [app]);
  }

  createContainer(app: SkfHandle, name: string): Promise<SkfHandle> {
    return this.#handle("SKF_CreateContainer", app, name);
  }

  openContainer(app: SkfHandle, name: string): Promise<SkfHandle> {
    return this.#handle("SKF_OpenContainer", app, name);
  }

  closeContainer(container: SkfHandle): Promise<void> {
    return this.check("SKF_CloseContainer", container);
  }

  deleteContainer(app: SkfHandle, name: string): Promise<void> {
    return this.check("SKF_DeleteContainer", app, name);
  }

  async getContainerType(container: SkfHandle): Promise<number> {
    const t = Buffer.alloc(4);
    await this.check("SKF_GetContainerType", container, t);
    return t.readUInt32LE(0);
  }

  /** SKF_GenECCKeyPair(SGD_SM2_1): the new signing key's ECCPUBLICKEYBLOB. */
  async genEccKeyPair(container: SkfHandle): Promise<Buffer> {
    const blob = Buffer.alloc(ECC_PUBLIC_KEY_BLOB_SIZE);
    await this.check("SKF_GenECCKeyPair", container, SGD_SM2_1, blob);
    return blob;
  }

  /** SKF_ECCSignData over a 32-octet digest: the ECCSIGNATUREBLOB. */
  async eccSignData(container: SkfHandle, digest: Buffer): Promise<Buffer> {
    const sig = Buffer.alloc(ECC_SIGNATURE_BLOB_SIZE);
    await this.check("SKF_ECCSignData", container, digest, digest.length, sig);
    return sig;
  }

  /** SKF_GenRSAKeyPair(`bits`): the new signing key's RSAPUBLICKEYBLOB. SKF_FUNCTION_MISSING when the library has no RSA. */
  async genRsaKeyPair(container: SkfHandle, bits: number): Promise<Buffer> {
    this.require("SKF_GenRSAKeyPair");
    // Larger than the blob: a library built with another packing writes past 268 octets, not past the buffer.
    const blob = Buffer.alloc(RSA_PUBLIC_KEY_BLOB_SIZE + 64);
    await this.check("SKF_GenRSAKeyPair", container, bits, blob);
    return blob.subarray(0, RSA_PUBLIC_KEY_BLOB_SIZE);
  }

  /**
   * SKF_RSASignData: PKCS#1 v1.5 (type 1) signature of `data` as given (the
   * caller passes a DigestInfo), into a buffer of `size` octets (the
   * modulus length). SKF_FUNCTION_MISSING when the library has no RSA.
   */
  async rsaSignData(container: SkfHandle, data: Buffer, size: number): Promise<Buffer> {
    this.require("SKF_RSASignData");
    const sig = Buffer.alloc(size);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(size, 0);
    await this.check("SKF_RSASignData", container, data, data.length, sig, len);
    return sig.subarray(0, Math.min(len.readUInt32LE(0), size));
  }

  /** SKF_ExportPublicKey: the signing (true) or encryption (false) public key blob. */
  exportPublicKey(container: SkfHandle, sign: boolean): Promise<Buffer> {
    return this.#sized("SKF_ExportPublicKey", [container, sign ? 1 : 0]);
  }

  importCertificate(container: SkfHandle, sign: boolean, der: Buffer): Promise<void> {
    return this.check("SKF_ImportCertificate", container, sign ? 1 : 0, der, der.length);
  }

  /** SKF_ExportCertificate: the DER, or undefined when that half has no certificate (SAR_CERTNOTFOUNTERR and the like). */
  async exportCertificate(container: SkfHandle, sign: boolean): Promise<Buffer | undefined> {
    try {
      const der = await this.#sized("SKF_ExportCertificate", [container, sign ? 1 : 0]);
      return der.length > 0 ? der : undefined;
    } catch (e) {
      if (e instanceof SkfCallError && noObject.has(e.code)) return undefined;
      throw e;
    }
  }

  importEccKeyPair(container: SkfHandle, envelopedKeyBlob: Buffer): Promise<void> {
    return this.check("SKF_ImportECCKeyPair", container, envelopedKeyBlob);
  }
}

/** Return codes by which libraries say "no such certificate or key" (vendors differ). */
export const noObject = new Set<number>([SAR.CERTNOTFOUNTERR, SAR.KEYNOTFOUNTERR, SAR.FILE_NOT_EXIST, SAR.OBJERR]);

let handleDeclared = false;
function handleType(koffi: KoffiModule): void {
  if (handleDeclared) return;
  koffi.pointer("SKF_HANDLE", koffi.opaque("SKF_OBJECT"));
  handleDeclared = true;
}
