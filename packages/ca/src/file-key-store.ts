import { createPrivateKey, createPublicKey, generateKeyPair, sign as cryptoSign, webcrypto, type KeyObject } from "node:crypto";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import { hashFor, keyAlgorithmOfSpki, signatureAlgorithmFor } from "./algorithms.js";
import { derToPem, pemToDer } from "./pem.js";
import { sm2GenerateKeyPair, sm2KeyFromPkcs8, sm2Pkcs8, sm2Signer, sm2Spki, type Sm2KeyPair } from "./sm2.js";
import type { CaKeyStore, CaSigner } from "./types.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** Key names become file names, so they are kept to a safe alphabet. */
const keyNamePattern = /^[a-z0-9][a-z0-9-]{0,63}$/;

/**
 * PBKDF2-HMAC-SHA256 iterations of the key files written (OWASP's figure
 * for PBKDF2-HMAC-SHA256): about 0.2 s to open a key here, once per
 * start. OpenSSL's default, which files of earlier releases have, is 2,048.
 */
export const KEY_FILE_PBKDF2_ITERATIONS = 600_000;

const OID_PBES2 = "1.2.840.113549.1.5.13";
const OID_PBKDF2 = "1.2.840.113549.1.5.12";
const OID_HMAC_SHA256 = "1.2.840.113549.2.9";
const OID_AES256_CBC = "2.16.840.1.101.3.4.1.42";

/** WebCrypto through pkijs: PBKDF2 and AES run in the thread pool, so a key opened at run time (the root's, for its CRL) does not stall requests. */
const engine = new pkijs.CryptoEngine({ name: "node", crypto: webcrypto as unknown as pkijs.CryptoEngineParameters["crypto"] });

/** How a key file is encrypted, as its PBES2 parameters say. */
export interface KeyFileProtection {
  /** "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC" and the like; "unknown" for a scheme this code does not read. */
  scheme: string;
  iterations: number;
}

/** A key file rewritten under the current protection by `upgrade`. */
export interface KeyFileUpgrade {
  name: string;
  path: string;
  from: KeyFileProtection;
  to: KeyFileProtection;
}

/**
 * CA keys as encrypted PKCS#8 PEM files `<dir>/<name>.key.pem`, readable
 * by the owner only: PBES2 with PBKDF2-HMAC-SHA256 at
 * KEY_FILE_PBKDF2_ITERATIONS and AES-256-CBC, encoded by pkijs, so that
 * `openssl pkcs8` opens them with the passphrase. `passphrase` must not be
 * empty; one trailing newline is dropped, since it usually comes from a
 * secret file. Throws CONFIG_INVALID when it is empty.
 */
export class FileKeyStore implements CaKeyStore {
  readonly #dir: string;
  readonly #passphrase: string;

  constructor(dir: string, passphrase: string) {
    this.#dir = dir;
    this.#passphrase = passphrase.replace(/\r?\n$/, "");
    if (this.#passphrase === "") throw new UkeyError("CONFIG_INVALID", { params: { reason: "the CA passphrase is empty" } });
  }

  /** Path of the file that holds key `name`. */
  pathOf(name: string): string {
    if (!keyNamePattern.test(name)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `bad key name ${name}` } });
    return join(this.#dir, `${name}.key.pem`);
  }

  /**
   * Generates a key and writes it; the file is created exclusively, so an
   * existing key is never overwritten. Throws CA_ALREADY_INITIALISED.
   */
  async create(name: string, algorithm: KeyAlgorithm): Promise<CaSigner> {
    const path = this.pathOf(name);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    let pkcs8: Buffer;
    if (algorithm === "sm2") {
      // SM2 keys are made and used by sm-crypto-v2 (Node's crypto knows only the empty distinguishing ID).
      pkcs8 = sm2Pkcs8(sm2GenerateKeyPair());
    } else {
      const { privateKey } = algorithm === "p256" || algorithm === "p384"
        ? await generateKeyPairAsync("ec", { namedCurve: algorithm === "p256" ? "P-256" : "P-384" })
        : await generateKeyPairAsync("rsa", { modulusLength: Number(algorithm.slice(3)) });
      pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
    }
    const pem = await this.#encrypt(pkcs8);
    try {
      await writeFile(path, pem, { flag: "wx", mode: 0o600 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new UkeyError("CA_ALREADY_INITIALISED", { params: { dir: this.#dir }, detail: path });
      throw e;
    }
    return signerOfPkcs8(pkcs8, path);
  }

  /** Reads and decrypts key `name`. Throws CA_NOT_INITIALISED, CA_PASSPHRASE_WRONG or CA_KEY_UNUSABLE. */
  async load(name: string): Promise<CaSigner> {
    const path = this.pathOf(name);
    const { pkcs8 } = await this.#read(path);
    return signerOfPkcs8(pkcs8, path);
  }

  /** How key `name`'s file is encrypted (nothing is decrypted). Throws CA_NOT_INITIALISED or CA_KEY_UNUSABLE. */
  async protectionOf(name: string): Promise<KeyFileProtection> {
    const path = this.pathOf(name);
    return protectionOf(encryptedKeyInfo(await readKeyFile(path), path));
  }

  /**
   * Rewrites key `name` under the current protection when its file has a
   * weaker one (fewer iterations, another PRF or scheme); returns what it
   * did, or undefined when the file was already current. The new file is
   * written beside the old one, synced, and renamed over it, and the
   * directory synced: a crash leaves the old file or the new one, never
   * half of either. The key itself does not change.
   * Throws CA_NOT_INITIALISED, CA_PASSPHRASE_WRONG (nothing written),
   * CA_KEY_UNUSABLE, and the file system's errors of the rewrite.
   */
  async upgrade(name: string): Promise<KeyFileUpgrade | undefined> {
    const path = this.pathOf(name);
    // Only the parameters are read for a current file: no key derivation.
    if (isCurrent(protectionOf(encryptedKeyInfo(await readKeyFile(path), path)))) return undefined;
    const { pkcs8, protection } = await this.#read(path);
    if (isCurrent(protection)) return undefined;
    const pem = await this.#encrypt(pkcs8);
    await replaceFile(path, pem);
    return { name, path, from: protection, to: currentProtection };
  }

  async #encrypt(pkcs8: Buffer): Promise<string> {
    const enc = new pkijs.EncryptedData();
    await enc.encrypt({
      password: bytes(Buffer.from(this.#passphrase, "utf8")),
      contentEncryptionAlgorithm: { name: "AES-CBC", length: 256 } as pkijs.ContentEncryptionAlgorithm,
      hmacHashAlgorithm: "SHA-256",
      iterationCount: KEY_FILE_PBKDF2_ITERATIONS,
      contentToEncrypt: bytes(pkcs8),
    }, engine);
    const info = new pkijs.PKCS8ShroudedKeyBag({
      encryptionAlgorithm: enc.encryptedContentInfo.contentEncryptionAlgorithm,
      // One primitive OCTET STRING: pkijs cuts CMS content into a constructed (BER) one, and a key file is DER.
      encryptedData: new asn1js.OctetString({ valueHex: enc.encryptedContentInfo.getEncryptedContent() }),
    });
    return derToPem(Buffer.from(info.toSchema().toBER(false)), "ENCRYPTED PRIVATE KEY");
  }

  /** The decrypted PKCS#8 DER of a key file, checked to parse. */
  async #read(path: string): Promise<{ pkcs8: Buffer; protection: KeyFileProtection }> {
    const pem = await readKeyFile(path);
    const info = encryptedKeyInfo(pem, path);
    const protection = protectionOf(info);
    let der: Buffer;
    if (protection.scheme === "unknown") {
      // A scheme pkijs does not decrypt (PBES1, scrypt): OpenSSL does, then `upgrade` rewrites it.
      try {
        const key = createPrivateKey({ key: pem, format: "pem", passphrase: this.#passphrase });
        return { pkcs8: key.export({ type: "pkcs8", format: "der" }), protection };
      } catch (e) {
        const code = (e as { code?: string }).code ?? "";
        const reason = (e as { reason?: string }).reason ?? "";
        if (code === "ERR_OSSL_BAD_DECRYPT" || /bad decrypt/i.test(reason)) throw new UkeyError("CA_PASSPHRASE_WRONG", { cause: e });
        throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
      }
    }
    try {
      der = Buffer.from(await new pkijs.EncryptedData({
        encryptedContentInfo: new pkijs.EncryptedContentInfo({ contentEncryptionAlgorithm: info.encryptionAlgorithm, encryptedContent: info.encryptedData }),
      }).decrypt({ password: bytes(Buffer.from(this.#passphrase, "utf8")) }, engine));
    } catch (e) {
      // Without a MAC, a wrong passphrase shows only as bad CBC padding (WebCrypto's OperationError);
      // a damaged file almost always fails further on, in the PKCS#8 parse.
      if ((e as { name?: string }).name === "OperationError") throw new UkeyError("CA_PASSPHRASE_WRONG", { cause: e });
      throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
    }
    try {
      if (!sm2KeyFromPkcs8(der)) createPrivateKey({ key: der, format: "der", type: "pkcs8" });
      return { pkcs8: der, protection };
    } catch (e) {
      throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
    }
  }
}

const currentProtection: KeyFileProtection = { scheme: "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC", iterations: KEY_FILE_PBKDF2_ITERATIONS };

function isCurrent(p: KeyFileProtection): boolean {
  return p.scheme === currentProtection.scheme && p.iterations >= KEY_FILE_PBKDF2_ITERATIONS;
}

async function readKeyFile(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: dirname(path) }, detail: path });
    throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
  }
}

/** The EncryptedPrivateKeyInfo of a PEM key file. Throws CA_KEY_UNUSABLE. */
function encryptedKeyInfo(pem: string, path: string): pkijs.PKCS8ShroudedKeyBag {
  if (!/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem)) {
    throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, detail: "not an encrypted PKCS#8 file" });
  }
  try {
    return pkijs.PKCS8ShroudedKeyBag.fromBER(bytes(pemToDer(pem, "ENCRYPTED PRIVATE KEY")));
  } catch (e) {
    throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, detail: "not an encrypted PKCS#8 structure", cause: e });
  }
}

/** Reads the PBES2 parameters of a key file; a scheme other than PBES2 with PBKDF2 and AES-CBC is "unknown". */
function protectionOf(info: pkijs.PKCS8ShroudedKeyBag): KeyFileProtection {
  const unknown = { scheme: "unknown", iterations: 0 };
  if (info.encryptionAlgorithm.algorithmId !== OID_PBES2) return unknown;
  try {
    const pbes2 = new pkijs.PBES2Params({ schema: info.encryptionAlgorithm.algorithmParams });
    if (pbes2.keyDerivationFunc.algorithmId !== OID_PBKDF2) return unknown;
    const kdf = new pkijs.PBKDF2Params({ schema: pbes2.keyDerivationFunc.algorithmParams });
    // PBKDF2's PRF defaults to HMAC-SHA1 when the parameters name none.
    const prf = kdf.prf?.algorithmId === OID_HMAC_SHA256 ? "HMAC-SHA256" : kdf.prf === undefined ? "HMAC-SHA1" : `HMAC-${kdf.prf.algorithmId}`;
    const cipher = pbes2.encryptionScheme.algorithmId === OID_AES256_CBC ? "AES-256-CBC" : pbes2.encryptionScheme.algorithmId;
    return { scheme: `PBES2/PBKDF2-${prf}/${cipher}`, iterations: kdf.iterationCount };
  } catch {
    return unknown;
  }
}

/**
 * Replaces `path` with `text` atomically: a private temporary file in the
 * same directory, fsync, rename over the old file, fsync of the directory.
 */
async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.upgrade-${process.pid}.tmp`;
  await rm(tmp, { force: true });
  const f = await open(tmp, "wx", 0o600);
  try {
    await f.writeFile(text);
    await f.sync();
  } catch (e) {
    await f.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await f.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  const d = await open(dirname(path), "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** The bytes of `b` as an ArrayBuffer of their own (pkijs takes ArrayBuffers). */
function bytes(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/** The signer of a decrypted PKCS#8 key: SM2 through sm2.ts, every other key through Node's crypto. Throws CA_KEY_UNUSABLE. */
function signerOfPkcs8(pkcs8: Buffer, path: string): CaSigner {
  let sm2: Sm2KeyPair | undefined;
  try {
    sm2 = sm2KeyFromPkcs8(pkcs8);
  } catch (e) {
    throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
  }
  if (sm2) {
    const sign = sm2Signer(sm2);
    return {
      algorithm: "sm2",
      spki: sm2Spki(sm2.publicKey),
      signatureAlgorithm: signatureAlgorithmFor("sm2"),
      // SM3withSM2 with the standard distinguishing ID; about a millisecond in JavaScript, so synchronous as ECDSA is.
      sign: (data: Buffer) => Promise.resolve(sign(data)),
    };
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  } catch (e) {
    throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
  }
  return fileSigner(key, path);
}

function fileSigner(privateKey: KeyObject, path: string): CaSigner {
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  let algorithm: KeyAlgorithm;
  try {
    algorithm = keyAlgorithmOfSpki(spki);
  } catch (e) {
    throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
  }
  const hash = hashFor(algorithm);
  const ec = algorithm === "p256" || algorithm === "p384";
  const options = ec ? { key: privateKey, dsaEncoding: "der" as const } : privateKey;
  return {
    algorithm,
    spki,
    signatureAlgorithm: signatureAlgorithmFor(algorithm),
    // Synchronous on purpose: an ECDSA signature costs tens of microseconds,
    // less than a hop to the thread pool would.
    sign: (data: Buffer) => Promise.resolve(cryptoSign(hash, data, options)),
  };
}
