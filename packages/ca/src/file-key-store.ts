import { createPrivateKey, createPublicKey, generateKeyPair, sign as cryptoSign, type KeyObject } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import { hashFor, keyAlgorithmOfSpki, signatureAlgorithmFor } from "./algorithms.js";
import type { CaKeyStore, CaSigner } from "./types.js";

const generateKeyPairAsync = promisify(generateKeyPair);

/** Key names become file names, so they are kept to a safe alphabet. */
const keyNamePattern = /^[a-z0-9][a-z0-9-]{0,63}$/;

/**
 * CA keys as encrypted PKCS#8 PEM files `<dir>/<name>.key.pem` (PBES2,
 * AES-256-CBC, OpenSSL's default PBKDF2), readable by the owner only.
 * `passphrase` must not be empty; one trailing newline is dropped, since
 * it usually comes from a secret file. Throws CONFIG_INVALID when it is
 * empty.
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
    const { privateKey } = algorithm === "p256" || algorithm === "p384"
      ? await generateKeyPairAsync("ec", { namedCurve: algorithm === "p256" ? "P-256" : "P-384" })
      : await generateKeyPairAsync("rsa", { modulusLength: Number(algorithm.slice(3)) });
    const pem = privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: this.#passphrase });
    try {
      await writeFile(path, pem, { flag: "wx", mode: 0o600 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new UkeyError("CA_ALREADY_INITIALISED", { params: { dir: this.#dir }, detail: path });
      throw e;
    }
    return fileSigner(privateKey, path);
  }

  /** Reads and decrypts key `name`. Throws CA_NOT_INITIALISED, CA_PASSPHRASE_WRONG or CA_KEY_UNUSABLE. */
  async load(name: string): Promise<CaSigner> {
    const path = this.pathOf(name);
    let pem: string;
    try {
      pem = await readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: this.#dir }, detail: path });
      throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
    }
    if (!/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem)) {
      throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, detail: "not an encrypted PKCS#8 file" });
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: "pem", passphrase: this.#passphrase });
    } catch (e) {
      // Without a MAC, a wrong passphrase shows only as bad CBC padding; a
      // damaged file almost always fails further on, in the PKCS#8 parse.
      const code = (e as { code?: string }).code ?? "";
      const reason = (e as { reason?: string }).reason ?? "";
      if (code === "ERR_OSSL_BAD_DECRYPT" || /bad decrypt/i.test(reason)) throw new UkeyError("CA_PASSPHRASE_WRONG", { cause: e });
      throw new UkeyError("CA_KEY_UNUSABLE", { params: { path }, cause: e });
    }
    return fileSigner(key, path);
  }
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
