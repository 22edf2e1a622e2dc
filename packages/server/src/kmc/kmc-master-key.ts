import { createCipheriv, createDecipheriv, createHash, pbkdf2, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { z } from "zod";
import { UkeyError } from "@ukey/policy";

const pbkdf2Async = promisify(pbkdf2);

/** PBKDF2-HMAC-SHA256 iterations of a master key file, as for the CA key files (OWASP's figure). */
export const KMC_MASTER_KEY_ITERATIONS = 600_000;

const FORMAT = "ukey-kmc-master-key/1";

const fileSchema = z.strictObject({
  format: z.literal(FORMAT),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  kdf: z.strictObject({ name: z.literal("PBKDF2-HMAC-SHA256"), iterations: z.number().int().min(100_000), salt: z.base64() }),
  wrap: z.strictObject({ name: z.literal("AES-256-GCM"), iv: z.base64(), tag: z.base64(), ciphertext: z.base64() }),
});

/**
 * The KMC master key: 32 random octets that wrap every escrowed private key
 * (AES-256-GCM). Separate from the CA's keys: its own file and its own
 * passphrase, so that whoever can sign certificates cannot read escrowed
 * keys, and the reverse. `id` names it in every escrow it wraps (the hex of
 * the first 8 octets of SHA-256 of the key: it tells nothing of the key).
 */
export interface KmcMasterKey {
  readonly id: string;
  /** AES-256-GCM of `plaintext` with `aad` under the master key (the layout is the implementation's own). */
  wrap(plaintext: Buffer, aad: Buffer): Promise<Buffer>;
  /** The plaintext of a `wrap` result. Throws KMC_ESCROW_UNREADABLE when it was not made under this key with this `aad`. */
  unwrap(wrapped: Buffer, aad: Buffer): Promise<Buffer>;
}

function masterKey(key: Buffer): KmcMasterKey {
  const id = createHash("sha256").update(key).digest("hex").slice(0, 16);
  return {
    id,
    // iv (12) || tag (16) || ciphertext.
    async wrap(plaintext, aad) {
      const iv = randomBytes(12);
      const c = createCipheriv("aes-256-gcm", key, iv);
      c.setAAD(aad);
      const ct = Buffer.concat([c.update(plaintext), c.final()]);
      return Buffer.concat([iv, c.getAuthTag(), ct]);
    },
    async unwrap(wrapped, aad) {
      try {
        const d = createDecipheriv("aes-256-gcm", key, wrapped.subarray(0, 12));
        d.setAAD(aad);
        d.setAuthTag(wrapped.subarray(12, 28));
        return Buffer.concat([d.update(wrapped.subarray(28)), d.final()]);
      } catch (e) {
        throw new UkeyError("KMC_ESCROW_UNREADABLE", { params: { keyId: id }, cause: e });
      }
    },
  };
}

function checkPassphrase(passphrase: string): string {
  const p = passphrase.replace(/\r?\n$/, "");
  if (p.length < 12) throw new UkeyError("CONFIG_INVALID", { params: { reason: "the KMC master key passphrase must be at least 12 characters" } });
  return p;
}

async function kek(passphrase: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2Async(Buffer.from(passphrase, "utf8"), salt, iterations, 32, "sha256");
}

/**
 * Makes a new master key and writes it to `path` (mode 0600, created
 * exclusively: an existing file is never overwritten) wrapped under a key
 * derived from `passphrase` (PBKDF2-HMAC-SHA256, AES-256-GCM).
 * Throws CONFIG_INVALID for a passphrase under 12 characters,
 * KMC_ALREADY_INITIALISED when the file exists.
 */
export async function createKmcMasterKeyFile(path: string, passphrase: string): Promise<KmcMasterKey> {
  const p = checkPassphrase(passphrase);
  const key = randomBytes(32);
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", await kek(p, salt, KMC_MASTER_KEY_ITERATIONS), iv);
  c.setAAD(Buffer.from(FORMAT));
  const ciphertext = Buffer.concat([c.update(key), c.final()]);
  const mk = masterKey(key);
  const file = {
    format: FORMAT, keyId: mk.id,
    kdf: { name: "PBKDF2-HMAC-SHA256", iterations: KMC_MASTER_KEY_ITERATIONS, salt: salt.toString("base64") },
    wrap: { name: "AES-256-GCM", iv: iv.toString("base64"), tag: c.getAuthTag().toString("base64"), ciphertext: ciphertext.toString("base64") },
  };
  try {
    await writeFile(path, JSON.stringify(file, null, 2) + "\n", { flag: "wx", mode: 0o600 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new UkeyError("KMC_ALREADY_INITIALISED", { params: { path }, cause: e });
    throw e;
  }
  return mk;
}

/**
 * Opens the master key file at `path` with `passphrase`. Throws
 * KMC_NOT_INITIALISED (no file), KMC_MASTER_KEY_UNUSABLE (not a master key
 * file, or one whose key does not match its id), KMC_PASSPHRASE_WRONG.
 */
export async function openKmcMasterKeyFile(path: string, passphrase: string): Promise<KmcMasterKey> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new UkeyError("KMC_NOT_INITIALISED", { params: { path }, cause: e });
    throw new UkeyError("KMC_MASTER_KEY_UNUSABLE", { params: { path }, cause: e });
  }
  let file: z.infer<typeof fileSchema>;
  try {
    file = fileSchema.parse(JSON.parse(text));
  } catch (e) {
    throw new UkeyError("KMC_MASTER_KEY_UNUSABLE", { params: { path }, cause: e });
  }
  const p = passphrase.replace(/\r?\n$/, "");
  let key: Buffer;
  try {
    const d = createDecipheriv("aes-256-gcm", await kek(p, Buffer.from(file.kdf.salt, "base64"), file.kdf.iterations), Buffer.from(file.wrap.iv, "base64"));
    d.setAAD(Buffer.from(FORMAT));
    d.setAuthTag(Buffer.from(file.wrap.tag, "base64"));
    key = Buffer.concat([d.update(Buffer.from(file.wrap.ciphertext, "base64")), d.final()]);
  } catch (e) {
    // GCM authenticates: a wrong passphrase and a damaged wrap look alike; the passphrase is by far the likelier.
    throw new UkeyError("KMC_PASSPHRASE_WRONG", { params: { path }, cause: e });
  }
  const mk = masterKey(key);
  if (key.length !== 32 || mk.id !== file.keyId) throw new UkeyError("KMC_MASTER_KEY_UNUSABLE", { params: { path } });
  return mk;
}

/** What pkcs11KmcMasterKey needs of a PKCS#11 key store (Pkcs11KeyStore of @ukey/ca). */
export interface Pkcs11SecretKeys {
  createSecretKey(name: string): Promise<void>;
  aesGcm(name: string, op: "encrypt" | "decrypt", iv: Buffer, aad: Buffer, data: Buffer): Promise<Buffer>;
}

/**
 * The KMC master key as AES-256 secret key `name` in an HSM (sensitive,
 * never extractable): wrapping is CKM_AES_GCM on the token, the layout
 * iv (12) || ciphertext || tag (16). `tokenId` (the token's serial or
 * label) goes into the key id. With `create`, the key is generated first
 * (CA_ALREADY_INITIALISED when the label is taken). Throws HSM_*.
 */
export async function pkcs11KmcMasterKey(keys: Pkcs11SecretKeys, tokenId: string, name = "kmc-master", create = false): Promise<KmcMasterKey> {
  if (create) await keys.createSecretKey(name);
  const id = createHash("sha256").update(`pkcs11:${tokenId}:${name}`).digest("hex").slice(0, 16);
  // A probe: the key must exist and work before anything is wrapped under it.
  const probeIv = randomBytes(12);
  const probe = await keys.aesGcm(name, "encrypt", probeIv, Buffer.alloc(0), Buffer.from("probe"));
  await keys.aesGcm(name, "decrypt", probeIv, Buffer.alloc(0), probe);
  return {
    id,
    async wrap(plaintext, aad) {
      const iv = randomBytes(12);
      return Buffer.concat([iv, await keys.aesGcm(name, "encrypt", iv, aad, plaintext)]);
    },
    async unwrap(wrapped, aad) {
      try {
        if (wrapped.length < 12 + 16) throw new Error("too short");
        return await keys.aesGcm(name, "decrypt", wrapped.subarray(0, 12), aad, wrapped.subarray(12));
      } catch (e) {
        throw new UkeyError("KMC_ESCROW_UNREADABLE", { params: { keyId: id }, cause: e });
      }
    },
  };
}
