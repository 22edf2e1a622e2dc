import { createHash, createPublicKey } from "node:crypto";
import { endianness } from "node:os";
import pkcs11js from "pkcs11js";
import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError, isUkeyError } from "@ukey/policy";
import { curveOidFor, hashFor, keyAlgorithmOfSpki, Oid, signatureAlgorithmFor } from "./algorithms.js";
import { bitString, derNull, oid, readNode, seq, unsignedInteger } from "./der.js";
import type { CaKeyStore, CaSigner } from "./types.js";

type Handle = Buffer;

/** How to reach the HSM. */
export interface Pkcs11KeyStoreOptions {
  /** Path of the vendor's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  module: string;
  /** Token label or serial number. Slots are never used: SoftHSM2 and others renumber them. */
  token: string;
  /** User PIN. */
  pin: string;
  /** Prefix of key labels on the token: key "issuing" is "<prefix>issuing". Default "ukey-ca-". */
  labelPrefix?: string;
}

/**
 * One loaded library per path: C_Initialize/C_Finalize are per process, not
 * per store. `logins` remembers a hash of the PIN that logged in to each
 * token, because PKCS#11 login state is shared by all sessions of the
 * application: a second store's C_Login answers "already logged in"
 * without looking at its PIN, and a wrong PIN must still be refused.
 */
const modules = new Map<string, { lib: pkcs11js.PKCS11; users: number; logins: Map<string, Buffer> }>();

function p11Code(e: unknown): number | undefined {
  return typeof (e as { code?: unknown }).code === "number" ? (e as { code: number }).code : undefined;
}

function opFailed(reason: string, cause?: unknown): UkeyError {
  return new UkeyError("HSM_OPERATION_FAILED", { params: { reason }, cause });
}

function acquireModule(path: string): pkcs11js.PKCS11 {
  const hit = modules.get(path);
  if (hit) {
    hit.users++;
    return hit.lib;
  }
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(path);
  } catch (e) {
    throw new UkeyError("HSM_MODULE_LOAD_FAILED", { params: { module: path }, cause: e });
  }
  try {
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (p11Code(e) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      try { lib.close(); } catch { /* already failing */ }
      throw new UkeyError("HSM_MODULE_LOAD_FAILED", { params: { module: path }, detail: (e as Error).message, cause: e });
    }
  }
  modules.set(path, { lib, users: 1, logins: new Map() });
  return lib;
}

function releaseModule(path: string): void {
  const m = modules.get(path);
  if (!m || --m.users > 0) return;
  modules.delete(path);
  try { m.lib.C_Finalize(); } catch { /* finalising a broken module: nothing left to do */ }
  try { m.lib.close(); } catch { /* idem */ }
}

/** ECDSA-Sig-Value (DER) from the raw r||s a PKCS#11 CKM_ECDSA signature gives. */
export function ecdsaRawToDer(rawSig: Buffer): Buffer {
  const half = rawSig.length / 2;
  return seq(unsignedInteger(rawSig.subarray(0, half)), unsignedInteger(rawSig.subarray(half)));
}

/**
 * CA keys on a PKCS#11 token (an HSM; SoftHSM2 in tests). Keys are
 * generated on the token as sensitive, non-extractable token objects and
 * only ever used through C_Sign. One read-write session per store; its
 * operations are queued, since a PKCS#11 session runs one operation at a
 * time. The constructor loads the library, finds the token by label or
 * serial and logs in. Throws HSM_MODULE_LOAD_FAILED, HSM_TOKEN_NOT_FOUND,
 * HSM_PIN_INCORRECT, HSM_OPERATION_FAILED. Call close() when done.
 */
export class Pkcs11KeyStore implements CaKeyStore {
  readonly #module: string;
  readonly #token: string;
  readonly #prefix: string;
  readonly #lib: pkcs11js.PKCS11;
  #session: Handle | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #released = false;

  constructor(opts: Pkcs11KeyStoreOptions) {
    this.#module = opts.module;
    this.#token = opts.token;
    this.#prefix = opts.labelPrefix ?? "ukey-ca-";
    this.#lib = acquireModule(opts.module);
    try {
      const slot = this.#findSlot(opts.token);
      this.#session = this.#lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      const logins = modules.get(opts.module)!.logins;
      const slotKey = slot.toString("hex");
      const pinHash = createHash("sha256").update(opts.pin).digest();
      try {
        this.#lib.C_Login(this.#session, pkcs11js.CKU_USER, opts.pin);
        logins.set(slotKey, pinHash);
      } catch (e) {
        const code = p11Code(e);
        if (code === pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
          const known = logins.get(slotKey);
          if (known && !known.equals(pinHash)) throw new UkeyError("HSM_PIN_INCORRECT");
          return;
        }
        if (code === pkcs11js.CKR_PIN_INCORRECT || code === pkcs11js.CKR_PIN_LEN_RANGE) throw new UkeyError("HSM_PIN_INCORRECT", { cause: e });
        if (code === pkcs11js.CKR_PIN_LOCKED) throw opFailed("the user PIN is locked", e);
        throw opFailed(`login: ${(e as Error).message}`, e);
      }
    } catch (e) {
      this.close();
      if (isUkeyError(e)) throw e;
      throw opFailed((e as Error).message, e);
    }
  }

  #findSlot(token: string): Handle {
    const matches = this.#lib.C_GetSlotList(true).filter((slot) => {
      const info = this.#lib.C_GetTokenInfo(slot);
      return info.label.trim() === token || info.serialNumber.trim() === token;
    });
    if (matches.length === 0) throw new UkeyError("HSM_TOKEN_NOT_FOUND", { params: { token } });
    if (matches.length > 1) throw opFailed(`more than one token is called ${token}; name it by serial number`);
    return matches[0]!;
  }

  /** Runs `fn` after every operation queued before it: one session, one operation at a time. */
  #serial<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    const run = this.#queue.then(() => {
      if (!this.#session) throw opFailed("the key store is closed");
      return fn(this.#session);
    });
    this.#queue = run.catch(() => undefined);
    return run.then(undefined, (e: unknown) => {
      if (isUkeyError(e)) throw e;
      throw opFailed((e as Error).message, e);
    });
  }

  #find(session: Handle, cls: number, label: string): Handle | undefined {
    this.#lib.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: cls },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: label },
    ]);
    try {
      const found = this.#lib.C_FindObjects(session, 2);
      if (found.length > 1) throw opFailed(`two objects are labelled ${label}`);
      return found[0];
    } finally {
      this.#lib.C_FindObjectsFinal(session);
    }
  }

  /**
   * Generates key `name` on the token: EC P-256/P-384 or RSA 2048/3072/4096.
   * Throws CA_ALREADY_INITIALISED when the label is taken, HSM_OPERATION_FAILED.
   */
  create(name: string, algorithm: KeyAlgorithm): Promise<CaSigner> {
    const label = this.#prefix + name;
    return this.#serial(async (session) => {
      if (this.#find(session, pkcs11js.CKO_PRIVATE_KEY, label) || this.#find(session, pkcs11js.CKO_PUBLIC_KEY, label)) {
        throw new UkeyError("CA_ALREADY_INITIALISED", { params: { dir: `pkcs11:token=${this.#token};object=${label}` } });
      }
      if (algorithm === "sm2") {
        // Standard PKCS#11 has no SM2 mechanism; vendor HSMs name their own (docs/hsm.md).
        throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "SM2 in a PKCS#11 HSM (use the encrypted key file; see docs/hsm.md)" } });
      }
      const id = createHash("sha1").update(label).digest();
      const ec = algorithm === "p256" || algorithm === "p384";
      const common = [
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
        { type: pkcs11js.CKA_ID, value: id },
      ];
      const publicTemplate = [
        ...common,
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PUBLIC_KEY },
        { type: pkcs11js.CKA_VERIFY, value: true },
        // A CA key signs and does nothing else (SoftHSM2 defaults these to true).
        { type: pkcs11js.CKA_ENCRYPT, value: false },
        { type: pkcs11js.CKA_WRAP, value: false },
        ...(ec
          ? [{ type: pkcs11js.CKA_EC_PARAMS, value: curveOidFor(algorithm) }]
          : [
            { type: pkcs11js.CKA_MODULUS_BITS, value: Number(algorithm.slice(3)) },
            { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          ]),
      ];
      const privateTemplate = [
        ...common,
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_SIGN, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ];
      const mechanism = { mechanism: ec ? pkcs11js.CKM_EC_KEY_PAIR_GEN : pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN };
      const pair = await this.#lib.C_GenerateKeyPairAsync(session, mechanism, publicTemplate, privateTemplate);
      return this.#signer(pair.privateKey, this.#publicSpki(session, pair.publicKey, label), label);
    });
  }

  /** Finds key `name` on the token. Throws HSM_KEY_NOT_FOUND, HSM_OPERATION_FAILED. */
  load(name: string): Promise<CaSigner> {
    const label = this.#prefix + name;
    return this.#serial((session) => {
      const priv = this.#find(session, pkcs11js.CKO_PRIVATE_KEY, label);
      const pub = this.#find(session, pkcs11js.CKO_PUBLIC_KEY, label);
      if (!priv || !pub) throw new UkeyError("HSM_KEY_NOT_FOUND", { params: { label } });
      return this.#signer(priv, this.#publicSpki(session, pub, label), label);
    });
  }

  /** Attributes of the private key (or, with `kind` "secret", the secret key) `name`, for audits and tests: sensitivity and extractability. */
  privateKeyAttributes(name: string, kind: "private" | "secret" = "private"): Promise<{ sensitive: boolean; extractable: boolean; neverExtractable: boolean }> {
    const label = this.#prefix + name;
    return this.#serial((session) => {
      const priv = this.#find(session, kind === "secret" ? pkcs11js.CKO_SECRET_KEY : pkcs11js.CKO_PRIVATE_KEY, label);
      if (!priv) throw new UkeyError("HSM_KEY_NOT_FOUND", { params: { label } });
      const attrs = this.#lib.C_GetAttributeValue(session, priv, [
        { type: pkcs11js.CKA_SENSITIVE }, { type: pkcs11js.CKA_EXTRACTABLE }, { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      ]);
      const flag = (i: number) => (attrs[i]?.value as Buffer | undefined)?.[0] === 1;
      return { sensitive: flag(0), extractable: flag(1), neverExtractable: flag(2) };
    });
  }

  #publicSpki(session: Handle, pub: Handle, label: string): Buffer {
    const [keyType] = this.#lib.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_KEY_TYPE }]);
    const type = readUlong(keyType?.value as Buffer);
    let spki: Buffer;
    if (type === pkcs11js.CKK_EC) {
      const [params, point] = this.#lib.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_EC_PARAMS }, { type: pkcs11js.CKA_EC_POINT }]);
      const curve = params!.value as Buffer;
      const expected = curve.equals(oid(Oid.p256)) ? 65 : curve.equals(oid(Oid.p384)) ? 97 : 0;
      if (!expected) throw opFailed(`key ${label} is on an unsupported curve`);
      spki = seq(seq(oid(Oid.ecPublicKey), curve), bitString(ecPoint(point!.value as Buffer, expected)));
    } else if (type === pkcs11js.CKK_RSA) {
      const [n, e] = this.#lib.C_GetAttributeValue(session, pub, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }]);
      spki = seq(seq(oid(Oid.rsaEncryption), derNull), bitString(seq(unsignedInteger(n!.value as Buffer), unsignedInteger(e!.value as Buffer))));
    } else {
      throw opFailed(`key ${label} has an unsupported type ${type}`);
    }
    try {
      createPublicKey({ key: spki, format: "der", type: "spki" });
    } catch (e) {
      throw opFailed(`the public key of ${label} is not valid`, e);
    }
    return spki;
  }

  #signer(priv: Handle, spki: Buffer, label: string): CaSigner {
    let algorithm: KeyAlgorithm;
    try {
      algorithm = keyAlgorithmOfSpki(spki);
    } catch (e) {
      throw opFailed(`key ${label}: ${(e as Error).message}`, e);
    }
    const ec = algorithm === "p256" || algorithm === "p384";
    const hash = hashFor(algorithm);
    const outSize = ec ? (algorithm === "p256" ? 64 : 96) : Number(algorithm.slice(3)) / 8;
    return {
      algorithm,
      spki,
      signatureAlgorithm: signatureAlgorithmFor(algorithm),
      sign: (data: Buffer) => this.#serial(async (session) => {
        // ECDSA: hash here, so the token does only the private-key step
        // (CKM_ECDSA); RSA: CKM_SHA256_RSA_PKCS does hash and padding.
        if (ec) {
          this.#lib.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, priv);
          const rawSig = await this.#lib.C_SignAsync(session, createHash(hash).update(data).digest(), Buffer.alloc(outSize));
          return ecdsaRawToDer(rawSig);
        }
        this.#lib.C_SignInit(session, { mechanism: pkcs11js.CKM_SHA256_RSA_PKCS }, priv);
        return this.#lib.C_SignAsync(session, data, Buffer.alloc(outSize));
      }),
    };
  }

  /**
   * Generates AES-256 secret key `name` on the token (sensitive,
   * non-extractable, encrypt/decrypt only): the KMC's master key when it
   * lives in an HSM. Throws CA_ALREADY_INITIALISED when the label is taken,
   * HSM_OPERATION_FAILED.
   */
  createSecretKey(name: string): Promise<void> {
    const label = this.#prefix + name;
    return this.#serial((session) => {
      if (this.#find(session, pkcs11js.CKO_SECRET_KEY, label)) {
        throw new UkeyError("CA_ALREADY_INITIALISED", { params: { dir: `pkcs11:token=${this.#token};object=${label}` } });
      }
      this.#lib.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_LABEL, value: label },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
        { type: pkcs11js.CKA_WRAP, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: false },
        { type: pkcs11js.CKA_SIGN, value: false },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      ]);
    });
  }

  /**
   * AES-256-GCM (CKM_AES_GCM, 96-bit IV, 128-bit tag) with secret key
   * `name` on the token: `encrypt` returns ciphertext || tag; `decrypt`
   * throws HSM_OPERATION_FAILED when the tag does not match (wrong key, IV,
   * additional data or a changed ciphertext). Throws HSM_KEY_NOT_FOUND.
   */
  aesGcm(name: string, op: "encrypt" | "decrypt", iv: Buffer, aad: Buffer, data: Buffer): Promise<Buffer> {
    const label = this.#prefix + name;
    return this.#serial(async (session) => {
      const key = this.#find(session, pkcs11js.CKO_SECRET_KEY, label);
      if (!key) throw new UkeyError("HSM_KEY_NOT_FOUND", { params: { label } });
      const mechanism = { mechanism: pkcs11js.CKM_AES_GCM, parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv, aad, ivBits: iv.length * 8, tagBits: 128 } };
      if (op === "encrypt") {
        this.#lib.C_EncryptInit(session, mechanism, key);
        return Buffer.from(this.#lib.C_Encrypt(session, data, Buffer.alloc(data.length + 16)));
      }
      this.#lib.C_DecryptInit(session, mechanism, key);
      return Buffer.from(this.#lib.C_Decrypt(session, data, Buffer.alloc(data.length)));
    });
  }

  /** Closes the session and, when it was the last user, finalises the library. Safe to call twice. */
  close(): void {
    const session = this.#session;
    this.#session = undefined;
    if (session) {
      try { this.#lib.C_CloseSession(session); } catch { /* the token may be gone already */ }
    }
    if (!this.#released) {
      this.#released = true;
      releaseModule(this.#module);
    }
  }
}

/** A CK_ULONG attribute: 4 or 8 bytes in the host's byte order; key types fit in 32 bits. */
function readUlong(v: Buffer): number {
  if (v.length !== 4 && v.length !== 8) throw opFailed(`unexpected CK_ULONG of ${v.length} bytes`);
  return endianness() === "LE" ? v.readUInt32LE(0) : v.readUInt32BE(v.length - 4);
}

/** The uncompressed point, whether the token gives it raw or (as PKCS#11 says) wrapped in an OCTET STRING. */
function ecPoint(value: Buffer, expected: number): Buffer {
  if (value.length === expected && value[0] === 4) return value;
  const n = readNode(value);
  if (n.tag === 0x04 && n.end === value.length && n.end - n.contentStart === expected) return value.subarray(n.contentStart);
  throw opFailed("unexpected EC point encoding");
}
