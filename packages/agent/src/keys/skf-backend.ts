import { createHash, randomBytes, verify as cryptoVerify } from "node:crypto";
import { sm4 as smSm4 } from "sm-crypto-v2";
import { UkeyError, isUkeyError, type KeyVendorTable } from "@ukey/policy";
import { buildCsr, ecdsaRawToDer, keyAlgorithmOfSpki, publicKeyOf, readCertificate, samePublicKey, tokenCertificate } from "./certificate-fields.js";
import { objectLabels, type KeyStoreBackend, type TokenCertificate, type TokenInfo, type TokenKey, type TokenSession } from "./key-store.js";
import { checkNewUserPin } from "./pin-rule.js";
import { sm2Digest, sm2PointOfSpki, sm2Spki, sm2VerifyDigest } from "./sm2.js";
import { eccBlobToPoint, eccSignatureToRaw, publicBlobToSpki, rsaBlobToSpki } from "./skf/skf-blobs.js";
import { SAR, SkfCallError, sarName, sarOf, skfError, type SkfContext } from "./skf/skf-codes.js";
import { ContainerType, PinType, noObject, openSkfLibrary, type SkfHandle, type SkfLibrary } from "./skf/skf-library.js";
import { acquireTokenLock, OperationQueue, withTokenLock } from "./token-lock.js";

/** How long an SKF signature, key generation or import may run before the agent says the key waits for its button. */
export const deviceConfirmationDelayMs = 400;

/** The application the agent creates when it initialises a device, and prefers when a device holds several. */
export const DEFAULT_SKF_APPLICATION = "UKEY-RENEW";

/** Options of SkfBackend.open. */
export interface SkfBackendOptions {
  /** The application to use on every device (default: DEFAULT_SKF_APPLICATION when present, else the device's first). */
  application?: string;
  /** The key vendor table the flows name keys by (KeyStoreBackend.keyVendors); default the built-in one. */
  keyVendors?: KeyVendorTable;
}

/** What SkfBackend.initialiseDevice writes. */
export interface SkfDeviceInit {
  /** The 16-octet device authentication key (SM4) the vendor or institution set. */
  devAuthKey: Uint8Array;
  /** The application to create (default DEFAULT_SKF_APPLICATION); an application of that name is deleted first. */
  application?: string;
  adminPin: string;
  userPin: string;
  adminRetries?: number;
  userRetries?: number;
}

/** Container names are the key and certificate ids: lower-case hex of the name's UTF-8 octets. */
export function containerId(name: string): string {
  return Buffer.from(name, "utf8").toString("hex");
}

/** The container name of an id. Throws REQUEST_INVALID unless it is 1..64 octets of printable ASCII (GM/T 0016: MAX_CNTNAME_LEN 64). */
export function containerName(id: string): string {
  if (typeof id !== "string" || !/^(?:[0-9a-fA-F]{2}){1,64}$/.test(id)) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: `object id must be hexadecimal: ${String(id).slice(0, 40)}` } });
  }
  const b = Buffer.from(id, "hex");
  if (b.some((c) => c < 0x21 || c > 0x7e)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "an SKF container name is printable ASCII" } });
  return b.toString("latin1");
}

/**
 * SKF containers carry no label, so the renewal's marks live in container
 * names. A key made for a pending operation X (an order id, or
 * "download-REF") goes into container `ukey-renew.X`; while the operation is
 * unfinished an empty container `ukey-renew.pending.X` sits beside it (made
 * before the key, removed last by relabel). Empty containers are what every
 * SKF library can make, list and delete (SKF_CreateContainer,
 * SKF_EnumContainer, SKF_DeleteContainer): no file system in the
 * application, with its vendor-specific access rights, and no server state
 * that a run without the server could not read. A container name is at most
 * 64 octets (MAX_CNTNAME_LEN): an order id (36) fits.
 */
export const skfMarks = {
  keyPrefix: "ukey-renew.",
  markPrefix: "ukey-renew.pending.",
  /** The key container of pending operation `x`. */
  keyContainer: (x: string) => `ukey-renew.${x}`,
  /** The mark container of pending operation `x`. */
  markContainer: (x: string) => `ukey-renew.pending.${x}`,
  /** The operation a key container is named for; undefined for a mark or any other name. */
  operationOf(name: string): string | undefined {
    if (!name.startsWith("ukey-renew.") || name.startsWith("ukey-renew.pending.")) return undefined;
    return name.slice("ukey-renew.".length) || undefined;
  },
  /** True for a mark container. */
  isMark: (name: string) => name.startsWith("ukey-renew.pending.") && name.length > "ukey-renew.pending.".length,
} as const;

/** The label the flows see for container `name`, given every container name of the application: pending(X) while X's mark is there, else the name. */
export function skfLabelOf(name: string, names: ReadonlySet<string>): string {
  const x = skfMarks.operationOf(name);
  return x !== undefined && names.has(skfMarks.markContainer(x)) ? objectLabels.pending(x) : name;
}

/**
 * The device authentication data of GM/T 0016 (SKF_DevAuth): the device's
 * 8-octet challenge from SKF_GenRandom, padded with zeros to one SM4 block,
 * encrypted with SM4-ECB under the device authentication key.
 */
export function devAuthResponse(challenge: Uint8Array, devAuthKey: Uint8Array): Buffer {
  if (devAuthKey.length !== 16) throw new UkeyError("REQUEST_INVALID", { params: { reason: "a device authentication key has 16 octets" } });
  const block = Buffer.alloc(16);
  Buffer.from(challenge).copy(block, 0, 0, 16);
  return Buffer.from(smSm4.encrypt(block, Buffer.from(devAuthKey), { mode: "ecb", padding: "none", output: "array" }));
}

/** `name` when it can be an SKF container name (1..64 printable ASCII octets), else REQUEST_INVALID. */
function checkedName(name: string): string {
  return containerName(containerId(name));
}

type Device = { name: string; handle: SkfHandle; info: TokenInfo };

/**
 * Keys behind a vendor's SKF (GM/T 0016) library: Chinese UKeys whose
 * vendor ships SKF rather than PKCS#11 (most of the seeds' keys). A device
 * is a token (named by its serial), one application on it holds the PINs,
 * and each key pair with its certificates is a container, whose name is
 * the id (hex of the name). SM2 signatures are SKF_ECCSignData over
 * SM3(Z || M), Z computed here with the standard ID 1234567812345678.
 * Containers carry no label: a key's and certificate's label is its
 * container name.
 */
export class SkfBackend implements KeyStoreBackend {
  readonly kind = "skf" as const;
  readonly location: string;
  readonly keyVendors: KeyVendorTable | undefined;
  readonly #lib: SkfLibrary;
  readonly #application: string | undefined;
  readonly #sessions = new Set<SkfSession>();
  #closed = false;

  private constructor(lib: SkfLibrary, location: string, opts: SkfBackendOptions) {
    this.#lib = lib;
    this.location = location;
    this.#application = opts.application;
    this.keyVendors = opts.keyVendors;
  }

  /**
   * Loads the SKF library at `path`. Throws TOKEN_DRIVER_MISSING (no file),
   * SKF_LIBRARY_INVALID (not a library, or not SKF), SKF_FUNCTION_MISSING.
   */
  static async open(path: string, opts: SkfBackendOptions = {}): Promise<SkfBackend> {
    const lib = await openSkfLibrary(path);
    return new SkfBackend(lib, path, opts);
  }

  #live(): SkfLibrary {
    if (this.#closed) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the key store is closed" } });
    return this.#lib;
  }

  #lockKey(serial: string): string {
    return `skf\0${this.#lib.path}\0${String(serial).trim()}`;
  }

  /** The devices present now, each with its serial (a device that reports none is left out). */
  async listTokens(): Promise<TokenInfo[]> {
    const lib = this.#live();
    const out: TokenInfo[] = [];
    try {
      for (const name of await lib.enumDev(true)) {
        const dev = await this.#connect(lib, name);
        if (!dev) continue;
        try {
          if (dev.info.serial !== "") out.push(dev.info);
        } finally {
          await disconnect(lib, dev.handle);
        }
      }
    } catch (e) {
      throw skfError(e, "list the UKeys");
    }
    return out;
  }

  /** Connects device `name` and reads its TokenInfo; undefined when it went away meanwhile. */
  async #connect(lib: SkfLibrary, name: string): Promise<Device | undefined> {
    let handle: SkfHandle;
    try {
      handle = await lib.connectDev(name);
    } catch (e) {
      if (sarOf(e) === SAR.DEVICE_REMOVED) return undefined;
      throw e;
    }
    try {
      const d = await lib.getDevInfo(handle);
      const info: TokenInfo = {
        serial: d.serial, label: d.label, manufacturer: d.manufacturer, model: "", backend: "skf",
        freePublicMemory: d.freeSpace, freePrivateMemory: d.freeSpace,
        pin: { initialized: false, locked: false, countLow: false, finalTry: false, toBeChanged: false },
      };
      const appName = await this.#applicationOf(lib, handle);
      if (appName !== undefined) {
        const app = await lib.openApplication(handle, appName);
        try {
          const p = await lib.getPinInfo(app, PinType.user);
          info.pin = {
            initialized: true, locked: p.remaining === 0, countLow: p.remaining < p.max, finalTry: p.remaining === 1,
            toBeChanged: p.isDefault, triesLeft: p.remaining,
          };
        } finally {
          await lib.closeApplication(app).catch(() => undefined);
        }
      }
      return { name, handle, info };
    } catch (e) {
      await disconnect(lib, handle);
      if (sarOf(e) === SAR.DEVICE_REMOVED) return undefined;
      throw e;
    }
  }

  /** The application to use on a device: the configured one, else DEFAULT_SKF_APPLICATION, else the first; undefined when it has none. */
  async #applicationOf(lib: SkfLibrary, dev: SkfHandle): Promise<string | undefined> {
    const apps = await lib.enumApplication(dev);
    if (this.#application !== undefined) return apps.includes(this.#application) ? this.#application : undefined;
    return apps.includes(DEFAULT_SKF_APPLICATION) ? DEFAULT_SKF_APPLICATION : apps[0];
  }

  /** The device of token `serial`, connected. Throws TOKEN_NOT_PRESENT, TOKEN_MULTIPLE_PRESENT. The caller disconnects it. */
  async #find(lib: SkfLibrary, serial: string): Promise<Device> {
    if (typeof serial !== "string" || serial.trim() === "") throw new UkeyError("TOKEN_NOT_PRESENT", { detail: "no token serial given" });
    const matches: Device[] = [];
    try {
      for (const name of await lib.enumDev(true)) {
        const dev = await this.#connect(lib, name);
        if (!dev) continue;
        if (dev.info.serial === serial.trim()) matches.push(dev);
        else await disconnect(lib, dev.handle);
      }
    } catch (e) {
      for (const m of matches) await disconnect(lib, m.handle);
      throw skfError(e, "find the UKey");
    }
    if (matches.length === 1) return matches[0]!;
    for (const m of matches) await disconnect(lib, m.handle);
    if (matches.length === 0) throw new UkeyError("TOKEN_NOT_PRESENT", { params: { serial }, detail: `no device with serial ${serial} in ${this.location}` });
    throw new UkeyError("TOKEN_MULTIPLE_PRESENT", { params: { count: matches.length } });
  }

  /** Opens the device's application. Throws TOKEN_NOT_INITIALISED when it has none. */
  async #openApp(lib: SkfLibrary, dev: Device): Promise<SkfHandle> {
    const name = await this.#applicationOf(lib, dev.handle);
    if (name === undefined) throw new UkeyError("TOKEN_NOT_INITIALISED", { detail: `device ${dev.name} has no application${this.#application ? ` ${this.#application}` : ""}` });
    return lib.openApplication(dev.handle, name);
  }

  /**
   * Verifies the user PIN on token `tokenSerial` and returns a session.
   * Waits while another session of this process is open on the token.
   * TOKEN_NOT_PRESENT, TOKEN_NOT_INITIALISED, TOKEN_PIN_INCORRECT
   * (params.triesLeft as the key reports it), TOKEN_PIN_LOCKED.
   */
  async open(tokenSerial: string, pin: string): Promise<TokenSession> {
    const lib = this.#live();
    const release = await acquireTokenLock(this.#lockKey(tokenSerial));
    let dev: Device | undefined;
    let app: SkfHandle | undefined;
    try {
      this.#live();
      dev = await this.#find(lib, tokenSerial);
      try {
        app = await this.#openApp(lib, dev);
      } catch (e) {
        throw skfError(e, "open the application");
      }
      await verifyPin(lib, app, PinType.user, pin, "user");
      const session = new SkfSession(lib, dev.handle, app, dev.info, () => {
        this.#sessions.delete(session);
        release();
      });
      this.#sessions.add(session);
      return session;
    } catch (e) {
      if (app !== undefined) await lib.closeApplication(app).catch(() => undefined);
      if (dev) await disconnect(lib, dev.handle);
      release();
      throw e;
    }
  }

  /** Certificates of every container; without a PIN too (SKF exports certificates and public keys without logging in). */
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
    return withTokenLock(this.#lockKey(tokenSerial), async () => {
      const dev = await this.#find(lib, tokenSerial);
      let app: SkfHandle | undefined;
      try {
        app = await this.#openApp(lib, dev);
        return await readCertificates(lib, app);
      } catch (e) {
        throw skfError(e, "read certificates");
      } finally {
        if (app !== undefined) await lib.closeApplication(app).catch(() => undefined);
        await disconnect(lib, dev.handle);
      }
    });
  }

  /**
   * The forgotten-PIN path with the admin PIN (the SO PIN of the interface):
   * verifies the admin PIN, sets the new user PIN with SKF_UnblockPIN, then
   * deletes every container of the application. PIN_TOO_WEAK before
   * anything changes; TOKEN_PIN_INCORRECT / TOKEN_PIN_LOCKED (params.pin
   * "admin") for the admin PIN. SKF has no label to set here: `label` is
   * not used.
   */
  async initToken(tokenSerial: string, soPin: string, newUserPin: string, _label?: string): Promise<TokenInfo> {
    checkNewUserPin(newUserPin);
    const lib = this.#live();
    return withTokenLock(this.#lockKey(tokenSerial), async () => {
      await this.#withApp(lib, tokenSerial, async (app) => {
        await verifyPin(lib, app, PinType.admin, soPin, "admin");
        // Containers are deleted with the user's rights (GM/T 0016), so the new user PIN comes first;
        // an interruption in between leaves containers that the next run, with the same admin PIN, deletes.
        await unblock(lib, app, soPin, newUserPin);
        await verifyPin(lib, app, PinType.user, newUserPin, "user");
        try {
          for (const name of await lib.enumContainer(app)) await deleteContainer(lib, app, name);
        } catch (e) {
          throw skfError(e, "erase the containers");
        } finally {
          await lib.clearSecureState(app).catch(() => undefined);
        }
      });
      return this.#tokenInfo(lib, tokenSerial);
    });
  }

  /**
   * SKF_UnblockPIN: sets a new user PIN with the admin PIN and resets its
   * retry counter, keeping the keys and certificates. PIN_TOO_WEAK,
   * TOKEN_PIN_INCORRECT / TOKEN_PIN_LOCKED (params.pin "admin").
   */
  async unblockPin(tokenSerial: string, adminPin: string, newUserPin: string): Promise<TokenInfo> {
    checkNewUserPin(newUserPin);
    const lib = this.#live();
    return withTokenLock(this.#lockKey(tokenSerial), async () => {
      await this.#withApp(lib, tokenSerial, (app) => unblock(lib, app, adminPin, newUserPin));
      return this.#tokenInfo(lib, tokenSerial);
    });
  }

  /**
   * Initialises a device as its issuer does: device authentication
   * (SKF_GenRandom, SM4-ECB under the device authentication key,
   * SKF_DevAuth), then a fresh application with the admin and user PINs
   * (one of the same name is deleted first, with everything in it).
   * TOKEN_DEVICE_AUTH_FAILED when the key refuses the authentication, before
   * anything changes; PIN_TOO_WEAK for the user PIN.
   */
  async initialiseDevice(tokenSerial: string, init: SkfDeviceInit): Promise<TokenInfo> {
    checkNewUserPin(init.userPin);
    checkNewUserPin(init.adminPin);
    if (init.devAuthKey.length !== 16) throw new UkeyError("REQUEST_INVALID", { params: { reason: "a device authentication key has 16 octets" } });
    const lib = this.#live();
    const appName = init.application ?? this.#application ?? DEFAULT_SKF_APPLICATION;
    return withTokenLock(this.#lockKey(tokenSerial), async () => {
      const dev = await this.#find(lib, tokenSerial);
      try {
        const challenge = await lib.genRandom(dev.handle, 8).catch((e: unknown) => { throw skfError(e, "device authentication"); });
        try {
          await lib.devAuth(dev.handle, devAuthResponse(challenge, init.devAuthKey));
        } catch (e) {
          if (sarOf(e) === SAR.DEVICE_REMOVED) throw skfError(e, "device authentication");
          throw new UkeyError("TOKEN_DEVICE_AUTH_FAILED", { detail: (e as Error).message, cause: e });
        }
        try {
          if ((await lib.enumApplication(dev.handle)).includes(appName)) await lib.deleteApplication(dev.handle, appName);
          const app = await lib.createApplication(dev.handle, appName, init.adminPin, init.adminRetries ?? 10, init.userPin, init.userRetries ?? 6);
          await lib.closeApplication(app).catch(() => undefined);
        } catch (e) {
          throw skfError(e, "create the application", { kind: "set-pin" });
        }
      } finally {
        await disconnect(lib, dev.handle);
      }
      return this.#tokenInfo(lib, tokenSerial);
    });
  }

  async #withApp<T>(lib: SkfLibrary, serial: string, fn: (app: SkfHandle) => Promise<T>): Promise<T> {
    const dev = await this.#find(lib, serial);
    let app: SkfHandle | undefined;
    try {
      try {
        app = await this.#openApp(lib, dev);
      } catch (e) {
        throw skfError(e, "open the application");
      }
      return await fn(app);
    } finally {
      if (app !== undefined) await lib.closeApplication(app).catch(() => undefined);
      await disconnect(lib, dev.handle);
    }
  }

  async #tokenInfo(lib: SkfLibrary, serial: string): Promise<TokenInfo> {
    const dev = await this.#find(lib, serial);
    await disconnect(lib, dev.handle);
    return dev.info;
  }

  /** Closes open sessions. The library stays loaded for the process (a later backend on it reuses it). Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    for (const s of [...this.#sessions]) await s.close();
    this.#closed = true;
  }
}

async function disconnect(lib: SkfLibrary, dev: SkfHandle): Promise<void> {
  try {
    await lib.disconnectDev(dev);
  } catch { /* the device may be gone */ }
}

/** SKF_VerifyPIN, mapped: TOKEN_PIN_INCORRECT with the tries left the key reports, TOKEN_PIN_LOCKED. */
async function verifyPin(lib: SkfLibrary, app: SkfHandle, type: number, pin: string, who: "user" | "admin"): Promise<void> {
  if (typeof pin !== "string" || pin === "") throw new UkeyError("TOKEN_PIN_INCORRECT", { params: { pin: who } });
  let r: { code: number; retries: number };
  try {
    r = await lib.verifyPin(app, type, pin);
  } catch (e) {
    throw skfError(e, "verify the PIN", { kind: "verify-pin", pin: who });
  }
  if (r.code === SAR.OK) return;
  throw skfError(new SkfCallError("SKF_VerifyPIN", r.code), "verify the PIN", pinContext(who, r.retries));
}

function pinContext(who: "user" | "admin", retries: number): SkfContext {
  // 0xFFFFFFFF: the library did not write the count.
  return retries === 0xffffffff ? { kind: "verify-pin", pin: who } : { kind: "verify-pin", pin: who, triesLeft: retries };
}

async function unblock(lib: SkfLibrary, app: SkfHandle, adminPin: string, newUserPin: string): Promise<void> {
  if (typeof adminPin !== "string" || adminPin === "") throw new UkeyError("TOKEN_PIN_INCORRECT", { params: { pin: "admin" } });
  let r: { code: number; retries: number };
  try {
    r = await lib.unblockPin(app, adminPin, newUserPin);
  } catch (e) {
    throw skfError(e, "unblock the PIN");
  }
  if (r.code === SAR.OK) return;
  const err = new SkfCallError("SKF_UnblockPIN", r.code);
  if (r.code === SAR.PIN_INCORRECT || r.code === SAR.PIN_LOCKED) throw skfError(err, "unblock the PIN", pinContext("admin", r.retries));
  throw skfError(err, "unblock the PIN", { kind: "set-pin" });
}

async function deleteContainer(lib: SkfLibrary, app: SkfHandle, name: string): Promise<void> {
  try {
    await lib.deleteContainer(app, name);
  } catch (e) {
    if (!noObject.has(sarOf(e) ?? -1)) throw e;
  }
}

async function withContainer<T>(lib: SkfLibrary, app: SkfHandle, name: string, fn: (c: SkfHandle) => Promise<T>): Promise<T> {
  let c: SkfHandle;
  try {
    c = await lib.openContainer(app, name);
  } catch (e) {
    if (noObject.has(sarOf(e) ?? -1) || sarOf(e) === SAR.INVALIDPARAMERR) throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id: containerId(name) }, cause: e });
    throw e;
  }
  try {
    return await fn(c);
  } finally {
    await lib.closeContainer(c).catch(() => undefined);
  }
}

/** The public key (SPKI) of the container's signing (true) or encryption (false) half; undefined when it has none. */
async function publicKey(lib: SkfLibrary, c: SkfHandle, sign: boolean): Promise<Buffer | undefined> {
  let blob: Buffer;
  try {
    blob = await lib.exportPublicKey(c, sign);
  } catch (e) {
    if (noObject.has(sarOf(e) ?? -1) || sarOf(e) === SAR.KEYUSAGEERR) return undefined;
    throw e;
  }
  try {
    return publicBlobToSpki(blob);
  } catch {
    return undefined;
  }
}

async function readCertificates(lib: SkfLibrary, app: SkfHandle): Promise<TokenCertificate[]> {
  const out: TokenCertificate[] = [];
  const names = await lib.enumContainer(app);
  const all = new Set(names);
  for (const name of names) {
    if (skfMarks.isMark(name)) continue;
    await withContainer(lib, app, name, async (c) => {
      for (const sign of [true, false]) {
        const der = await lib.exportCertificate(c, sign);
        if (!der) continue;
        let fields;
        try {
          fields = readCertificate(der);
        } catch {
          continue; // Not an X.509 certificate the agent can read: leave it alone.
        }
        const spki = await publicKey(lib, c, sign);
        out.push(tokenCertificate(der, containerId(name), skfLabelOf(name, all), !!spki && samePublicKey(spki, fields.spki)));
      }
    });
  }
  return out;
}

/** One logged-in application on a device; its operations run one at a time. Closing it clears the login and disconnects. */
class SkfSession implements TokenSession {
  readonly token: TokenInfo;
  onDeviceConfirmation: (() => void) | undefined;
  readonly #lib: SkfLibrary;
  #dev: SkfHandle | undefined;
  #app: SkfHandle | undefined;
  readonly #queue = new OperationQueue();
  readonly #onClose: () => void;

  constructor(lib: SkfLibrary, dev: SkfHandle, app: SkfHandle, token: TokenInfo, onClose: () => void) {
    this.#lib = lib;
    this.#dev = dev;
    this.#app = app;
    this.token = token;
    this.#onClose = onClose;
  }

  #run<T>(op: string, fn: (lib: SkfLibrary, app: SkfHandle) => Promise<T>, ctx?: SkfContext): Promise<T> {
    return this.#queue.run(async () => {
      const app = this.#app;
      if (app === undefined) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `${op}: the session is closed` } });
      try {
        return await fn(this.#lib, app);
      } catch (e) {
        throw skfError(e, op, ctx);
      }
    });
  }

  /** A library call that may wait on the key's button: onDeviceConfirmation once it takes longer than a key without one. */
  async #onDevice<T>(call: Promise<T>): Promise<T> {
    const timer = setTimeout(() => this.onDeviceConfirmation?.(), deviceConfirmationDelayMs);
    try {
      return await call;
    } finally {
      clearTimeout(timer);
    }
  }

  listCertificates(): Promise<TokenCertificate[]> {
    return this.#run("read certificates", (lib, app) => readCertificates(lib, app));
  }

  /** The signing key of every container that has one (SM2, or RSA of a size the agent knows). */
  listKeys(): Promise<TokenKey[]> {
    return this.#run("read keys", async (lib, app) => {
      const out: TokenKey[] = [];
      const names = await lib.enumContainer(app);
      const all = new Set(names);
      for (const name of names) {
        if (skfMarks.isMark(name)) continue;
        const key = await withContainer(lib, app, name, async (c) => {
          if ((await lib.getContainerType(c)) === ContainerType.empty) return undefined;
          return keyOf(name, await publicKey(lib, c, true), skfLabelOf(name, all));
        });
        if (key) out.push(key);
      }
      return out;
    });
  }

  /**
   * SKF_CreateContainer and SKF_GenECCKeyPair(SGD_SM2_1) ("sm2") or
   * SKF_GenRSAKeyPair(2048) ("rsa2048") in it: the new signing key. Other
   * algorithms are KEY_ALGORITHM_UNSUPPORTED; "rsa2048" on a library
   * without SKF_GenRSAKeyPair or SKF_RSASignData is SKF_FUNCTION_MISSING;
   * both before anything is written. The container name is `id` decoded;
   * without an id, a pending label pending(X) names it `ukey-renew.X` and
   * its mark container is made first (skfMarks), any other label gives a
   * random "ukey-…". An empty container of that name (a run stopped between
   * making it and the key) is reused.
   */
  generateKeyPair(algorithm: Parameters<TokenSession["generateKeyPair"]>[0], label: string, id?: string): Promise<TokenKey> {
    return this.#run("generate a key pair", async (lib, app) => {
      if (algorithm !== "sm2" && algorithm !== "rsa2048") throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: String(algorithm) } });
      if (algorithm === "rsa2048") {
        lib.require("SKF_GenRSAKeyPair");
        lib.require("SKF_RSASignData");
      }
      const pending = id === undefined ? objectLabels.pendingOrder(label) : undefined;
      const name = id !== undefined ? containerName(id) : pending !== undefined ? checkedName(skfMarks.keyContainer(pending)) : `ukey-${randomBytes(10).toString("hex")}`;
      const names = await lib.enumContainer(app);
      if (pending !== undefined && !names.includes(skfMarks.markContainer(pending))) {
        await lib.closeContainer(await lib.createContainer(app, checkedName(skfMarks.markContainer(pending)))).catch(() => undefined);
      }
      if (names.includes(name)) {
        const empty = await withContainer(lib, app, name, async (c) => (await lib.getContainerType(c)) === ContainerType.empty);
        if (!empty) throw new UkeyError("TOKEN_CONTAINER_FOREIGN", { params: { container: name }, detail: "the container to make already holds a key" });
        await deleteContainer(lib, app, name);
      }
      const c = await lib.createContainer(app, name);
      let key: TokenKey | undefined;
      try {
        const made = algorithm === "sm2"
          ? sm2Spki(eccBlobToPoint(await this.#onDevice(lib.genEccKeyPair(c))))
          : rsaSpkiOf(await this.#onDevice(lib.genRsaKeyPair(c, 2048)));
        const back = keyOf(name, await publicKey(lib, c, true), pending !== undefined ? label : name);
        if (!back || back.algorithm !== algorithm || !samePublicKey(back.spki, made)) {
          throw new UkeyError("TOKEN_KEYGEN_FAILED", { detail: "the new public key cannot be read back" });
        }
        key = back;
        return key;
      } finally {
        await lib.closeContainer(c).catch(() => undefined);
        // Nothing half-made stays behind: a container without its key goes.
        if (!key) await deleteContainer(lib, app, name).catch(() => undefined);
      }
    }, { kind: "keygen" });
  }

  /**
   * A signature of `data` with the container's signing key: for SM2 a DER
   * SM2Signature, SKF_ECCSignData over SM3(Z || data); for RSA the PKCS#1
   * v1.5 signature with SHA-256 (sha256WithRSAEncryption), SKF_RSASignData
   * over the DigestInfo. Each is verified here before it is returned.
   */
  sign(keyId: string, data: Uint8Array): Promise<Uint8Array> {
    return this.#run("sign", (lib, app) => this.#sign(lib, app, keyId, data), { kind: "confirm" });
  }

  async #sign(lib: SkfLibrary, app: SkfHandle, keyId: string, data: Uint8Array): Promise<Uint8Array> {
    const name = containerName(keyId);
    return withContainer(lib, app, name, async (c) => {
      const spki = await publicKey(lib, c, true);
      if (!spki) throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id: keyId } });
      const point = sm2PointOfSpki(spki);
      if (!point) return this.#signRsa(lib, c, spki, data);
      const e = sm2Digest(data, point);
      const raw = eccSignatureToRaw(await this.#onDevice(lib.eccSignData(c, e)));
      // A library that signs with another key, or over something else, is caught here rather than by the CA.
      if (!sm2VerifyDigest(e, raw, point)) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the UKey's signature does not verify" } });
      return new Uint8Array(ecdsaRawToDer(raw));
    });
  }

  /** SKF_RSASignData over the SHA-256 DigestInfo of `data`, verified with the container's public key. */
  async #signRsa(lib: SkfLibrary, c: SkfHandle, spki: Buffer, data: Uint8Array): Promise<Uint8Array> {
    const algorithm = keyAlgorithmOfSpki(spki);
    if (!algorithm.startsWith("rsa")) throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm } });
    const key = publicKeyOf(spki);
    const size = Math.ceil((key.asymmetricKeyDetails?.modulusLength ?? 2048) / 8);
    const digestInfo = Buffer.concat([SHA256_DIGEST_INFO_PREFIX, createHash("sha256").update(data).digest()]);
    let sig = await this.#onDevice(lib.rsaSignData(c, digestInfo, size));
    // A library that drops the signature's leading zero octets: PKCS#1 wants it as long as the modulus.
    if (sig.length < size) sig = Buffer.concat([Buffer.alloc(size - sig.length), sig]);
    if (!cryptoVerify("sha256", data, key, sig)) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the UKey's signature does not verify" } });
    return new Uint8Array(sig);
  }

  createCsr(keyId: string, subject = ""): Promise<string> {
    return this.#run("make the certificate request", async (lib, app) => {
      const name = containerName(keyId);
      const spki = await withContainer(lib, app, name, (c) => publicKey(lib, c, true));
      if (!spki) throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id: keyId } });
      return buildCsr(spki, subject, (info) => this.#sign(lib, app, keyId, info));
    }, { kind: "keygen" });
  }

  /**
   * SKF_ImportCertificate into the half of the container whose public key
   * is the certificate's (signing, or the imported encryption key), then
   * SKF_ExportCertificate to check it is there. CERT_KEY_MISMATCH when
   * neither half matches. Importing the same certificate again is harmless.
   */
  installCertificate(der: Uint8Array, keyId: string, _label: string): Promise<TokenCertificate> {
    return this.#run("store the certificate", async (lib, app) => {
      const value = Buffer.from(der);
      const fields = readCertificate(value);
      const name = containerName(keyId);
      return withContainer(lib, app, name, async (c) => {
        const signKey = await publicKey(lib, c, true);
        const encKey = signKey && samePublicKey(signKey, fields.spki) ? undefined : await publicKey(lib, c, false);
        const sign = !!signKey && samePublicKey(signKey, fields.spki);
        if (!sign && !(encKey && samePublicKey(encKey, fields.spki))) {
          throw new UkeyError("CERT_KEY_MISMATCH", { detail: `certificate ${fields.serialHex} is for neither key of container ${name}` });
        }
        await lib.importCertificate(c, sign, value);
        const back = await lib.exportCertificate(c, sign);
        if (!back?.equals(value)) {
          throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the certificate read back from the UKey differs from the one written" } });
        }
        return tokenCertificate(value, keyId.toLowerCase(), skfLabelOf(name, new Set(await lib.enumContainer(app))), true);
      });
    });
  }

  /**
   * SKF containers have no label: only the pending mark is kept (skfMarks).
   * pending(X) on container `ukey-renew.X` makes its mark container; any
   * other label removes the container's mark (the operation is finished);
   * other containers keep their names.
   */
  relabel(id: string, label: string): Promise<void> {
    return this.#run("relabel", async (lib, app) => {
      const name = containerName(id);
      const x = skfMarks.operationOf(name);
      if (x === undefined) return;
      const mark = skfMarks.markContainer(x);
      const names = await lib.enumContainer(app);
      if (objectLabels.pendingOrder(label) === x) {
        if (!names.includes(mark)) await lib.closeContainer(await lib.createContainer(app, checkedName(mark))).catch(() => undefined);
      } else if (names.includes(mark)) {
        await deleteContainer(lib, app, mark);
      }
    });
  }

  /** SKF_DeleteContainer for each id, with its pending mark: the keys and both certificates go together. Missing containers are not an error. */
  deleteObjects(ids: string[]): Promise<void> {
    return this.#run("delete objects", async (lib, app) => {
      const names = ids.map(containerName);
      for (const name of names) {
        await deleteContainer(lib, app, name);
        const x = skfMarks.operationOf(name);
        if (x !== undefined && x.length + skfMarks.markPrefix.length <= 64) await deleteContainer(lib, app, skfMarks.markContainer(x));
      }
    });
  }

  changePin(oldPin: string, newPin: string): Promise<void> {
    return this.#run("change the PIN", async (lib, app) => {
      checkNewUserPin(newPin);
      const r = await lib.changePin(app, PinType.user, oldPin, newPin);
      if (r.code === SAR.OK) return;
      const err = new SkfCallError("SKF_ChangePIN", r.code);
      if (r.code === SAR.PIN_INCORRECT || r.code === SAR.PIN_LOCKED) throw skfError(err, "change the PIN", pinContext("user", r.retries));
      throw skfError(err, "change the PIN", { kind: "set-pin" });
    });
  }

  /**
   * SKF_ImportECCKeyPair of an ENVELOPEDKEYBLOB (388 octets, SM4-ECB) into
   * the container of `keyId`, then SKF_ExportPublicKey(encryption) to check
   * the key now there is the envelope's. Idempotent: when the container's
   * encryption key already is the envelope's (an earlier run imported it),
   * nothing is written. TOKEN_CONTAINER_FOREIGN when it holds another
   * encryption key (never overwritten).
   */
  importEnvelopedKey(keyId: string, envelopedKeyBlob: Uint8Array): Promise<TokenKey> {
    return this.#run("import the encryption key", async (lib, app) => {
      const blob = Buffer.from(envelopedKeyBlob);
      if (blob.length !== 388 || blob.readUInt32LE(0) !== 1) {
        throw new UkeyError("ENVELOPE_MALFORMED", { params: { reason: `${blob.length} octets, an ENVELOPEDKEYBLOB has 388` } });
      }
      const expected = eccBlobToPoint(blob.subarray(76, 76 + 132));
      const name = containerName(keyId);
      return withContainer(lib, app, name, async (c) => {
        const before = await publicKey(lib, c, false);
        const done = !!before && !!sm2PointOfSpki(before)?.equals(expected);
        if (before && !done) throw new UkeyError("TOKEN_CONTAINER_FOREIGN", { params: { container: name }, detail: "the container already holds another encryption key" });
        if (!done) await this.#importEnvelope(lib, c, blob);
        const spki = await publicKey(lib, c, false);
        if (!spki || !sm2PointOfSpki(spki)?.equals(expected)) {
          throw new UkeyError("CERT_KEY_MISMATCH", { detail: "the encryption key on the UKey is not the envelope's" });
        }
        return { id: containerId(name), label: skfLabelOf(name, new Set(await lib.enumContainer(app))), algorithm: "sm2", spki: new Uint8Array(spki) };
      });
    }, { kind: "confirm" });
  }

  /** SKF_ImportECCKeyPair; a refused envelope (not made for this container's signing key, or damaged) is ENVELOPE_MALFORMED. */
  async #importEnvelope(lib: SkfLibrary, c: SkfHandle, blob: Buffer): Promise<void> {
    try {
      await this.#onDevice(lib.importEccKeyPair(c, blob));
    } catch (e) {
      const code = sarOf(e);
      if (code === SAR.INDATAERR || code === SAR.INDATALENERR || code === SAR.INVALIDPARAMERR || code === SAR.HASHNOTEQUALERR) {
        throw new UkeyError("ENVELOPE_MALFORMED", { params: { reason: `the UKey refused it (${sarName(code)}): it is not for this key's signing key, or it is damaged` }, cause: e });
      }
      throw e;
    }
  }

  /** Clears the login (SKF_ClearSecureState), closes the application and disconnects. Safe to call twice. */
  async close(): Promise<void> {
    await this.#queue.run(async () => {
      const app = this.#app, dev = this.#dev;
      this.#app = undefined;
      this.#dev = undefined;
      if (app === undefined) return;
      await this.#lib.clearSecureState(app).catch(() => undefined);
      await this.#lib.closeApplication(app).catch(() => undefined);
      if (dev !== undefined) await disconnect(this.#lib, dev);
      this.#onClose();
    });
  }
}

function keyOf(name: string, spki: Buffer | undefined, label = name): TokenKey | undefined {
  if (!spki) return undefined;
  try {
    return { id: containerId(name), label, algorithm: keyAlgorithmOfSpki(spki), spki: new Uint8Array(spki) };
  } catch (e) {
    if (isUkeyError(e)) return undefined;
    throw e;
  }
}

/** The DER DigestInfo of SHA-256 before the 32-octet hash (RFC 8017, 9.2, note 1). */
const SHA256_DIGEST_INFO_PREFIX = Buffer.from("3031300d060960864801650304020105000420", "hex");

/** The SPKI of the RSAPUBLICKEYBLOB SKF_GenRSAKeyPair returned; a blob that contradicts itself is TOKEN_KEYGEN_FAILED. */
function rsaSpkiOf(blob: Buffer): Buffer {
  try {
    return rsaBlobToSpki(blob);
  } catch (e) {
    throw new UkeyError("TOKEN_KEYGEN_FAILED", { detail: `the UKey returned a malformed RSAPUBLICKEYBLOB: ${(e as Error).message}`, cause: e });
  }
}
