import { createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from "node:crypto";
import {
  closeSync, existsSync, fsyncSync, linkSync, copyFileSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import * as asn1js from "asn1js";
import forge from "node-forge";
import * as pkijs from "pkijs";
import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError, isUkeyError } from "@ukey/policy";
import { keyAlgorithmOfSpki } from "./certificate-fields.js";

/** A private key of a PKCS#12 file, with what the agent names it by. */
export interface FileKey {
  /** localKeyId in lower-case hex (SHA-1 of the public key when the file gave none). */
  id: string;
  /** friendlyName ("" when none). */
  label: string;
  key: KeyObject;
  spki: Buffer;
  /** undefined for keys the agent cannot use (e.g. RSA 1024 of an old file); they are kept as they are. */
  algorithm?: KeyAlgorithm;
}

/** A certificate of a PKCS#12 file. */
export interface FileCertificate {
  /** The localKeyId of its key; for a certificate without one, its key's id or the SHA-1 of the certificate. */
  id: string;
  label: string;
  der: Buffer;
  spki: Buffer;
}

/** What a PKCS#12 file holds. */
export interface Pkcs12Contents {
  keys: FileKey[];
  certs: FileCertificate[];
}

const oids = {
  keyBag: "1.2.840.113549.1.12.10.1.1",
  shroudedKeyBag: "1.2.840.113549.1.12.10.1.2",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  localKeyId: "1.2.840.113549.1.9.21",
} as const;

/**
 * PBKDF2 and MAC iterations: OpenSSL 3's default. More would not make a
 * 6-character PIN much harder to guess, and node-forge derives the keys in
 * JavaScript when the file is opened (about 0.4 s at 10 000 here).
 */
const iterations = 2048;

function spkiOfKey(key: KeyObject): Buffer {
  return createPublicKey(key).export({ format: "der", type: "spki" });
}

function sha1Hex(b: Buffer): string {
  return createHash("sha1").update(b).digest("hex");
}

function certSpki(der: Buffer): Buffer {
  return new X509Certificate(der).publicKey.export({ format: "der", type: "spki" });
}

/**
 * Reads a PKCS#12 file with node-forge, which also decrypts the legacy
 * PBE algorithms of files made by CAs and Windows (3DES, RC2) besides
 * PBES2 with AES. Throws PFX_MALFORMED (naming the file) when the bytes are
 * not a PKCS#12 structure, PFX_PASSWORD_INCORRECT when the MAC or the
 * decryption fails (a wrong password, or a damaged file).
 */
export function decodePkcs12(bytes: Buffer, password: string, path: string): Pkcs12Contents {
  let p12: forge.pkcs12.Pkcs12Pfx;
  let asn1: forge.asn1.Asn1;
  try {
    asn1 = forge.asn1.fromDer(forge.util.createBuffer(bytes.toString("binary")), false);
  } catch (e) {
    throw new UkeyError("PFX_MALFORMED", { params: { path }, detail: (e as Error).message, cause: e });
  }
  try {
    p12 = fromAsn1(asn1, password);
  } catch (e) {
    const message = (e as Error).message ?? "";
    if (/MAC could not be verified|password|decrypt/i.test(message)) {
      throw new UkeyError("PFX_PASSWORD_INCORRECT", { params: { path }, detail: message, cause: e });
    }
    throw new UkeyError("PFX_MALFORMED", { params: { path }, detail: message, cause: e });
  }
  try {
    return contentsOf(p12);
  } catch (e) {
    if (isUkeyError(e)) throw e;
    throw new UkeyError("PFX_MALFORMED", { params: { path }, detail: (e as Error).message, cause: e });
  }
}

/**
 * node-forge's PKCS#12 reading, with non-ASCII passwords as OpenSSL and
 * Windows write them: the MAC and the legacy PBEs take the password as
 * UTF-16 (which forge does), PBES2 takes its UTF-8 bytes (forge passes the
 * string's code units). When the MAC holds but a PBES2 part does not
 * decrypt, the MAC has proved the password, and the parts are decrypted
 * again with its UTF-8 bytes.
 */
function fromAsn1(asn1: forge.asn1.Asn1, password: string): forge.pkcs12.Pkcs12Pfx {
  try {
    return forge.pkcs12.pkcs12FromAsn1(asn1, false, password);
  } catch (e) {
    const ascii = [...password].every((c) => c.charCodeAt(0) < 0x80);
    if (ascii || /MAC could not be verified/.test((e as Error).message) || !Array.isArray(asn1.value) || asn1.value.length !== 3) throw e;
    const withoutMac = { ...asn1, value: (asn1.value as forge.asn1.Asn1[]).slice(0, 2) };
    return forge.pkcs12.pkcs12FromAsn1(withoutMac, false, forge.util.encodeUtf8(password));
  }
}

type ForgeBag = forge.pkcs12.Bag & { asn1?: forge.asn1.Asn1 };

function contentsOf(p12: forge.pkcs12.Pkcs12Pfx): Pkcs12Contents {
  const keys: (FileKey & { given: boolean })[] = [];
  const certs: (FileCertificate & { given: boolean })[] = [];
  for (const safe of p12.safeContents) {
    for (const bag of safe.safeBags as ForgeBag[]) {
      const localKeyId = bag.attributes?.localKeyId?.[0];
      const id = localKeyId ? Buffer.from(localKeyId, "binary").toString("hex") : undefined;
      const label = bag.attributes?.friendlyName?.[0] ?? "";
      if (bag.type === oids.keyBag || bag.type === oids.shroudedKeyBag) {
        const info = bag.key
          ? forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(bag.key as forge.pki.rsa.PrivateKey))
          : bag.asn1;
        if (!info) throw new Error("a key bag without a key");
        const key = createPrivateKey({ key: Buffer.from(forge.asn1.toDer(info).getBytes(), "binary"), format: "der", type: "pkcs8" });
        const spki = spkiOfKey(key);
        let algorithm: KeyAlgorithm | undefined;
        try {
          algorithm = keyAlgorithmOfSpki(spki);
        } catch {
          algorithm = undefined;
        }
        keys.push({ id: id ?? sha1Hex(spki), label, key, spki, ...(algorithm ? { algorithm } : {}), given: id !== undefined });
      } else if (bag.type === oids.certBag) {
        const certAsn1 = bag.cert ? forge.pki.certificateToAsn1(bag.cert) : bag.asn1;
        if (!certAsn1) throw new Error("a certificate bag without a certificate");
        const der = Buffer.from(forge.asn1.toDer(certAsn1).getBytes(), "binary");
        certs.push({ id: id ?? "", label, der, spki: certSpki(der), given: id !== undefined });
      }
    }
  }
  // Files without localKeyId pair a certificate with its key by public key.
  for (const c of certs) {
    if (c.given) continue;
    c.id = keys.find((k) => k.spki.equals(c.spki))?.id ?? sha1Hex(c.der);
  }
  return {
    keys: keys.map(({ given: _given, ...k }) => k),
    certs: certs.map(({ given: _given, ...c }) => c),
  };
}

const crypto = new pkijs.CryptoEngine({ name: "node", crypto: webcrypto as unknown as pkijs.CryptoEngineParameters["crypto"] });

function ab(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function bagAttributes(id: string, label: string): pkijs.Attribute[] {
  const attrs = [new pkijs.Attribute({ type: oids.localKeyId, values: [new asn1js.OctetString({ valueHex: ab(Buffer.from(id, "hex")) })] })];
  if (label) attrs.push(new pkijs.Attribute({ type: oids.friendlyName, values: [new asn1js.BmpString({ value: label })] }));
  return attrs;
}

/**
 * A PKCS#12 file (DER) with pkijs, laid out as OpenSSL 3 does: keys in
 * PKCS8ShroudedKeyBags (PBES2: PBKDF2 with HMAC-SHA256, AES-256-CBC),
 * certificates in a password-encrypted SafeContents (same algorithms),
 * and an HMAC-SHA256 MAC over the whole.
 */
export async function encodePkcs12(contents: Pkcs12Contents, password: string): Promise<Buffer> {
  const pw = ab(Buffer.from(password, "utf8"));
  const enc = {
    password: pw, contentEncryptionAlgorithm: { name: "AES-CBC", length: 256 } as pkijs.ContentEncryptionAlgorithm,
    hmacHashAlgorithm: "SHA-256", iterationCount: iterations,
  };
  const keyBags: pkijs.SafeBag[] = [];
  for (const k of contents.keys) {
    const bagValue = new pkijs.PKCS8ShroudedKeyBag({
      parsedValue: pkijs.PrivateKeyInfo.fromBER(ab(k.key.export({ format: "der", type: "pkcs8" }))),
    });
    await bagValue.makeInternalValues(enc, crypto);
    // pkijs leaves the ciphertext as a constructed (BER) OCTET STRING; DER,
    // which stricter readers (node-forge among them) require, has it primitive.
    bagValue.encryptedData = new asn1js.OctetString({ valueHex: bagValue.encryptedData.getValue() });
    keyBags.push(new pkijs.SafeBag({ bagId: oids.shroudedKeyBag, bagValue, bagAttributes: bagAttributes(k.id, k.label) }));
  }
  const certBags = contents.certs.map((c) => new pkijs.SafeBag({
    bagId: oids.certBag,
    bagValue: new pkijs.CertBag({ certId: oids.x509Certificate, certValue: new asn1js.OctetString({ valueHex: ab(c.der) }) }),
    bagAttributes: bagAttributes(c.id, c.label),
  }));
  const safeContents: { privacyMode: number; value: pkijs.SafeContents }[] = [];
  const params: object[] = [];
  if (certBags.length > 0) {
    safeContents.push({ privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) });
    params.push({ ...enc });
  }
  if (keyBags.length > 0 || safeContents.length === 0) {
    safeContents.push({ privacyMode: 0, value: new pkijs.SafeContents({ safeBags: keyBags }) });
    params.push({});
  }
  const pfx = new pkijs.PFX({
    parsedValue: { integrityMode: 0, authenticatedSafe: new pkijs.AuthenticatedSafe({ parsedValue: { safeContents } }) },
  });
  await pfx.parsedValue!.authenticatedSafe!.makeInternalValues({ safeContents: params }, crypto);
  await pfx.makeInternalValues({ password: pw, iterations, pbkdf2HashAlgorithm: "SHA-256", hmacHashAlgorithm: "SHA-256" } as pkijs.MakeInternalValuesParams, crypto);
  return Buffer.from(pfx.toSchema().toBER(false));
}

/** Where a write keeps the previous version of `path` until the new one is in place. */
export function backupPath(path: string): string {
  return `${path}.bak`;
}

/** Test hooks of writeFileAtomic: where to fail, as a crash would. */
export interface AtomicWriteFaults {
  /** Called after the new bytes are written to the temporary file, before it is synced and renamed. */
  afterTempWrite?: () => void;
  /** Called after the previous version is kept as .bak, before the rename. */
  beforeRename?: () => void;
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some platforms (Windows) cannot open or sync a directory; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Replaces `path` with `bytes` so that a crash at any moment leaves a
 * complete file, old or new: the bytes go to a temporary file in the same
 * directory (mode 0600) and are synced; the previous file is kept as
 * `path.bak` (a hard link, or a copy where links are not possible); the
 * temporary file is renamed over `path` and the directory synced; only then
 * is the .bak removed. Throws PFX_CREATION_FAILED; the previous file is
 * untouched then.
 */
export function writeFileAtomic(path: string, bytes: Buffer, faults: AtomicWriteFaults = {}): void {
  const dir = dirname(path);
  removeStaleTemporaryFiles(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const bak = backupPath(path);
  let keptBackup = false;
  try {
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, bytes);
      faults.afterTempWrite?.();
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (existsSync(path)) {
      rmSync(bak, { force: true });
      try {
        linkSync(path, bak);
      } catch {
        copyFileSync(path, bak);
      }
      keptBackup = true;
      fsyncDir(dir);
    }
    faults.beforeRename?.();
    renameSync(tmp, path);
    fsyncDir(dir);
  } catch (e) {
    rmSync(tmp, { force: true });
    // The previous file is still in place; its .bak is only a second name for it.
    if (keptBackup && existsSync(path)) rmSync(bak, { force: true });
    throw new UkeyError("PFX_CREATION_FAILED", { params: { path }, detail: (e as Error).message, cause: e });
  }
  rmSync(bak, { force: true });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes the temporary files of writes to `path` whose process is gone (killed in the middle of a write). */
function removeStaleTemporaryFiles(path: string): void {
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.startsWith(prefix) ? /^(\d+)\.[0-9a-f]{12}\.tmp$/.exec(name.slice(prefix.length)) : null;
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) rmSync(join(dirname(path), name), { force: true });
  }
}

/**
 * The bytes of the file token at `path`: the file, or its .bak when a
 * write was interrupted before the new file was in place. Throws
 * FILE_UNREADABLE.
 */
export function readPkcs12Bytes(path: string): { bytes: Buffer; from: string } {
  for (const p of [path, backupPath(path)]) {
    try {
      return { bytes: readFileSync(p), from: p };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new UkeyError("FILE_UNREADABLE", { params: { path: p }, cause: e });
    }
  }
  throw new UkeyError("FILE_UNREADABLE", { params: { path }, detail: "the file does not exist" });
}
