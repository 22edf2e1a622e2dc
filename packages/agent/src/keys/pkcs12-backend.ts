import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { KeyAlgorithm, KeyVendorTable } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import { buildCsr, readCertificate, samePublicKey, signatureScheme, tokenCertificate } from "./certificate-fields.js";
import type { KeyStoreBackend, TokenCertificate, TokenInfo, TokenKey, TokenSession } from "./key-store.js";
import { checkNewUserPin } from "./pin-rule.js";
import {
  backupPath, decodePkcs12, encodePkcs12, readPkcs12Bytes, writeFileAtomic, type FileKey, type Pkcs12Contents,
} from "./pkcs12-file.js";
import { acquireTokenLock, OperationQueue, withTokenLock } from "./token-lock.js";

/** The serial of the file token at `path`: hex of the SHA-256 of its absolute path, 16 digits. */
export function fileTokenSerial(path: string): string {
  return createHash("sha256").update(resolve(path)).digest("hex").slice(0, 16);
}

/** The agent's home directory: UKEY_AGENT_HOME, else ~/.ukey. */
export function agentHome(env: NodeJS.ProcessEnv = process.env): string {
  const home = env.UKEY_AGENT_HOME?.trim();
  return resolve(home ? home : join(homedir(), ".ukey"));
}

/** The embedded default file token of the agent (the demo's "UKey"), under the agent's home. */
export function defaultFileTokenPath(home: string = agentHome()): string {
  return join(home, "file-token.p12");
}

function fileTokenInfo(path: string): TokenInfo {
  return {
    serial: fileTokenSerial(path),
    label: basename(path),
    manufacturer: "ukey-renew",
    model: "PKCS#12 file",
    backend: "pkcs12",
    pin: { initialized: true, locked: false, countLow: false, finalTry: false, toBeChanged: false, minLength: 6 },
  };
}

function idOk(id: string): string {
  if (typeof id !== "string" || !/^(?:[0-9a-fA-F]{2}){1,64}$/.test(id)) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: `object id must be hexadecimal: ${String(id).slice(0, 40)}` } });
  }
  return id.toLowerCase();
}

function labelOk(label: string): string {
  if (typeof label !== "string" || label.length > 255 || [...label].some((c) => c.charCodeAt(0) < 0x20)) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: "a label is text of at most 255 characters" } });
  }
  return label;
}

function generate(algorithm: KeyAlgorithm): KeyObject {
  switch (algorithm) {
    case "p256": return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    case "p384": return generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    case "rsa2048": case "rsa3072": case "rsa4096":
      return generateKeyPairSync("rsa", { modulusLength: Number(algorithm.slice(3)), publicExponent: 0x10001 }).privateKey;
    default:
      throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: String(algorithm) } });
  }
}

/** Reads and decrypts the file. Throws FILE_UNREADABLE, PFX_MALFORMED, PFX_PASSWORD_INCORRECT. */
function load(path: string, password: string): Pkcs12Contents {
  if (typeof password !== "string") throw new UkeyError("PFX_PASSWORD_INCORRECT", { params: { path } });
  const { bytes, from } = readPkcs12Bytes(path);
  return decodePkcs12(bytes, password, from);
}

/**
 * One PKCS#12 file as a token (seed 003's .pfx file certificates, and the
 * agent's embedded file token): the file's password is the PIN, its serial
 * a stable id of its absolute path, its label the file name. Keys are made
 * and used in software (node:crypto). Every change rewrites the whole file
 * atomically (writeFileAtomic), in OpenSSL 3's algorithms, so a kill at any
 * moment leaves a complete file that the previous or the new password
 * opens.
 */
export class Pkcs12Backend implements KeyStoreBackend {
  readonly kind = "pkcs12" as const;
  readonly location: string;
  readonly #serial: string;
  /**
   * The certificates (public objects) as the last session of this process
   * left the file; undefined until the holder's PIN opened it once. Only
   * certificates, never a key or the password.
   */
  #seen: TokenCertificate[] | undefined;

  readonly keyVendors: KeyVendorTable | undefined;

  /** `keyVendors`: the table the flows name keys by (KeyStoreBackend.keyVendors); default the built-in one. */
  constructor(path: string, opts: { keyVendors?: KeyVendorTable } = {}) {
    this.keyVendors = opts.keyVendors;
    this.location = resolve(path);
    this.#serial = fileTokenSerial(this.location);
  }

  #lockKey(): string {
    return `pkcs12\0${this.location}`;
  }

  #check(serial: string): void {
    if (serial !== this.#serial) throw new UkeyError("TOKEN_NOT_PRESENT", { params: { serial }, detail: `the file token ${this.location} is ${this.#serial}` });
  }

  /** The file as a token when it exists (or only its .bak of an interrupted write); [] otherwise. */
  async listTokens(): Promise<TokenInfo[]> {
    return existsSync(this.location) || existsSync(backupPath(this.location)) ? [fileTokenInfo(this.location)] : [];
  }

  /**
   * Decrypts the file with `pin`. Waits while another session of this
   * process has the file open. Throws TOKEN_NOT_PRESENT for another serial,
   * FILE_UNREADABLE, PFX_MALFORMED, PFX_PASSWORD_INCORRECT.
   */
  async open(tokenSerial: string, pin: string): Promise<TokenSession> {
    this.#check(tokenSerial);
    const release = await acquireTokenLock(this.#lockKey());
    try {
      const contents = load(this.location, pin);
      return new Pkcs12Session(this.location, fileTokenInfo(this.location), contents, pin, release, (certs) => { this.#seen = certs; });
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * With `pin`, as TokenSession.listCertificates. Without it, the
   * certificates as this process's last session of the file left them
   * (they are encrypted too), and [] before the file was ever opened
   * (certificatesNeedPin tells the two apart).
   */
  async listCertificates(tokenSerial: string, pin?: string): Promise<TokenCertificate[]> {
    this.#check(tokenSerial);
    if (pin === undefined) return this.#seen ? [...this.#seen] : [];
    const session = await this.open(tokenSerial, pin);
    try {
      return await session.listCertificates();
    } finally {
      await session.close();
    }
  }

  /** True until a session of this process has read the file's certificates with its password. */
  certificatesNeedPin(tokenSerial: string): boolean {
    this.#check(tokenSerial);
    return this.#seen === undefined;
  }

  /** Replaces the file with an empty one protected by `newUserPin` (PIN_TOO_WEAK first). The SO PIN and label are not used. */
  async initToken(tokenSerial: string, _soPin: string, newUserPin: string, _label?: string): Promise<TokenInfo> {
    this.#check(tokenSerial);
    checkNewUserPin(newUserPin);
    return withTokenLock(this.#lockKey(), async () => {
      mkdirSync(dirname(this.location), { recursive: true, mode: 0o700 });
      writeFileAtomic(this.location, await encodePkcs12({ keys: [], certs: [] }, newUserPin));
      this.#seen = [];
      return fileTokenInfo(this.location);
    });
  }

  /** Nothing is held open between sessions. */
  async close(): Promise<void> {}
}

/**
 * Creates an empty file token at `path` protected by `pin` (PIN_TOO_WEAK),
 * with its directory (mode 0700) when missing. Refuses (REQUEST_INVALID)
 * when the file exists, so nothing is ever overwritten by it.
 */
export async function createFileToken(path: string, pin: string): Promise<Pkcs12Backend> {
  checkNewUserPin(pin);
  const full = resolve(path);
  if (existsSync(full)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `${full} exists already` } });
  const backend = new Pkcs12Backend(full);
  await backend.initToken(fileTokenSerial(full), "", pin);
  return backend;
}

/** A decrypted PKCS#12 file; each change is written to disk before it is visible in the session. */
class Pkcs12Session implements TokenSession {
  readonly token: TokenInfo;
  readonly #path: string;
  #contents: Pkcs12Contents;
  #password: string;
  readonly #queue = new OperationQueue();
  #release: (() => void) | undefined;
  readonly #onCertificates: (certs: TokenCertificate[]) => void;

  constructor(path: string, token: TokenInfo, contents: Pkcs12Contents, password: string, release: () => void, onCertificates: (certs: TokenCertificate[]) => void) {
    this.#path = path;
    this.token = token;
    this.#contents = contents;
    this.#password = password;
    this.#release = release;
    this.#onCertificates = onCertificates;
    onCertificates(this.#certificates(contents));
  }

  #run<T>(fn: () => Promise<T> | T): Promise<T> {
    return this.#queue.run(() => {
      if (!this.#release) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: "the file is closed" } });
      return fn();
    });
  }

  /** Writes `next` (with `password`) and makes it the session's state. */
  async #save(next: Pkcs12Contents, password = this.#password): Promise<void> {
    writeFileAtomic(this.#path, await encodePkcs12(next, password));
    this.#contents = next;
    this.#password = password;
    this.#onCertificates(this.#certificates(next));
  }

  #key(keyId: string): FileKey {
    const id = idOk(keyId);
    const k = this.#contents.keys.find((x) => x.id === id);
    if (!k) throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id: keyId } });
    return k;
  }

  #certificates(contents: Pkcs12Contents): TokenCertificate[] {
    const out: TokenCertificate[] = [];
    for (const c of contents.certs) {
      try {
        const hasKey = contents.keys.some((k) => k.id === c.id && k.spki.equals(c.spki));
        out.push(tokenCertificate(c.der, c.id, c.label, hasKey));
      } catch {
        // A certificate the agent cannot read is kept in the file, not listed.
      }
    }
    return out;
  }

  listCertificates(): Promise<TokenCertificate[]> {
    return this.#run(() => this.#certificates(this.#contents));
  }

  listKeys(): Promise<TokenKey[]> {
    return this.#run(() => this.#contents.keys
      .filter((k): k is FileKey & { algorithm: KeyAlgorithm } => k.algorithm !== undefined)
      .map((k) => ({ id: k.id, label: k.label, algorithm: k.algorithm, spki: new Uint8Array(k.spki) })));
  }

  generateKeyPair(algorithm: KeyAlgorithm, label: string, id?: string): Promise<TokenKey> {
    return this.#run(async () => {
      labelOk(label);
      const keyId = id === undefined ? randomBytes(20).toString("hex") : idOk(id);
      if (this.#contents.keys.some((k) => k.id === keyId) || this.#contents.certs.some((c) => c.id === keyId)) {
        throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `an object with id ${keyId} is already in the file` } });
      }
      const key = generate(algorithm);
      const spki = createPublicKey(key).export({ format: "der", type: "spki" });
      await this.#save({ ...this.#contents, keys: [...this.#contents.keys, { id: keyId, label, key, spki, algorithm }] });
      return { id: keyId, label, algorithm, spki: new Uint8Array(spki) };
    });
  }

  #sign(keyId: string, data: Uint8Array): Uint8Array {
    const k = this.#key(keyId);
    const scheme = signatureScheme(k.spki);
    return new Uint8Array(cryptoSign(scheme.kind === "ecdsa" ? scheme.hash : "sha256", data, k.key));
  }

  sign(keyId: string, data: Uint8Array): Promise<Uint8Array> {
    return this.#run(() => this.#sign(keyId, data));
  }

  createCsr(keyId: string, subject = ""): Promise<string> {
    return this.#run(() => buildCsr(this.#key(keyId).spki, subject, async (info) => this.#sign(keyId, info)));
  }

  installCertificate(der: Uint8Array, keyId: string, label: string): Promise<TokenCertificate> {
    return this.#run(async () => {
      labelOk(label);
      const value = Buffer.from(der);
      const fields = readCertificate(value);
      const key = this.#key(keyId);
      if (!samePublicKey(key.spki, fields.spki)) throw new UkeyError("CERT_KEY_MISMATCH", { detail: `certificate ${fields.serialHex} is not for key ${keyId}` });
      const present = this.#contents.certs.find((c) => c.id === key.id && c.der.equals(value));
      if (!present || present.label !== label) {
        const certs = present
          ? this.#contents.certs.map((c) => (c === present ? { ...c, label } : c))
          : [...this.#contents.certs, { id: key.id, label, der: value, spki: fields.spki }];
        await this.#save({ ...this.#contents, certs });
      }
      // Read back what is on disk now, as the next run will.
      const back = this.#certificates(load(this.#path, this.#password)).find((c) => c.id === key.id && Buffer.from(c.der).equals(value));
      if (!back?.hasKey) throw new UkeyError("TOKEN_OPERATION_FAILED", { params: { reason: `the certificate read back from ${this.#path} is not beside its key` } });
      return back;
    });
  }

  relabel(id: string, label: string): Promise<void> {
    return this.#run(async () => {
      labelOk(label);
      const want = idOk(id);
      if (!this.#contents.keys.some((k) => k.id === want) && !this.#contents.certs.some((c) => c.id === want)) {
        throw new UkeyError("TOKEN_KEY_NOT_FOUND", { params: { id } });
      }
      await this.#save({
        keys: this.#contents.keys.map((k) => (k.id === want ? { ...k, label } : k)),
        certs: this.#contents.certs.map((c) => (c.id === want ? { ...c, label } : c)),
      });
    });
  }

  deleteObjects(ids: string[]): Promise<void> {
    return this.#run(async () => {
      const gone = new Set(ids.map(idOk));
      const next = {
        keys: this.#contents.keys.filter((k) => !gone.has(k.id)),
        certs: this.#contents.certs.filter((c) => !gone.has(c.id)),
      };
      if (next.keys.length !== this.#contents.keys.length || next.certs.length !== this.#contents.certs.length) await this.#save(next);
    });
  }

  /** Re-encrypts the file with the new password. PIN_TOO_WEAK; PFX_PASSWORD_INCORRECT when `oldPin` is not the file's password. */
  changePin(oldPin: string, newPin: string): Promise<void> {
    return this.#run(async () => {
      checkNewUserPin(newPin);
      if (oldPin !== this.#password) throw new UkeyError("PFX_PASSWORD_INCORRECT", { params: { path: this.#path } });
      await this.#save(this.#contents, newPin);
    });
  }

  /** Forgets the decrypted contents and lets the next session of the file start. Safe to call twice. */
  async close(): Promise<void> {
    await this.#queue.run(() => {
      const release = this.#release;
      this.#release = undefined;
      this.#contents = { keys: [], certs: [] };
      this.#password = "";
      release?.();
    });
  }
}
