import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt, timingSafeEqual, type CipherGCM, type DecipherGCM } from "node:crypto";
import { closeSync, createReadStream, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, statSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { dirname, join, normalize, sep } from "node:path";
import { UkeyError } from "@ukey/policy";
import type { CaBinding, DatabaseSummary } from "@ukey/store";

/*
 * The backup container (docs/backup.md, "The file"): one file, encrypted
 * to a passphrase with Node's crypto (OpenSSL): scrypt derives the key,
 * AES-256-GCM encrypts and authenticates. No new dependency: the format is
 * four fields around a GCM stream, and GCM's tag covers the cleartext
 * header as additional data, so a changed header fails like a changed
 * payload.
 *
 *   "UKEYBAK1"                      8 bytes
 *   header length                   u32, big-endian
 *   header                          UTF-8 JSON (BackupHeader), cleartext, authenticated
 *   payload                         AES-256-GCM ciphertext, header.payloadBytes long
 *   tag                             16 bytes
 *
 * The payload is a sequence of files: u16 path length, the path (UTF-8,
 * relative, "/"-separated), u32 mode, u64 size, the bytes; the files and
 * sizes are those header.files lists, in its order.
 */

const MAGIC = Buffer.from("UKEYBAK1", "latin1");
const TAG_BYTES = 16;
const MAX_HEADER_BYTES = 1 << 20;
const KEY_CHECK_LABEL = "ukey-renew backup key check";
/** scrypt at N=2^17, r=8, p=1 (128 MiB, about half a second): OWASP's recommended minimum for scrypt. */
const SCRYPT = { N: 1 << 17, r: 8, p: 1 } as const;

/** A file inside a backup. */
export interface BackupEntry {
  path: string;
  mode: number;
  bytes: number;
}

/** The cleartext header: what a restore checks before and after it decrypts. */
export interface BackupHeader {
  format: 1;
  /** ukey-server's version that wrote it. */
  version: string;
  createdAt: string;
  kdf: { name: "scrypt"; N: number; r: number; p: number; salt: string };
  cipher: "aes-256-gcm";
  nonce: string;
  /** HMAC-SHA256 under the second half of the derived key: tells a wrong passphrase from a changed file. */
  keyCheck: string;
  payloadBytes: number;
  ca: CaBinding;
  database: DatabaseSummary & { engine: "sqlite" };
  files: BackupEntry[];
}

/** What `writeBackupFile` is given: the header's own fields, and where each file's bytes are. */
export interface BackupContents {
  version: string;
  createdAt: Date;
  ca: CaBinding;
  database: BackupHeader["database"];
  files: Array<BackupEntry & { source: string }>;
}

function deriveKeys(passphrase: string, salt: Buffer, p: { N: number; r: number; p: number }): Promise<{ enc: Buffer; check: string }> {
  return new Promise((done, fail) => {
    scrypt(passphrase, salt, 64, { ...p, maxmem: 256 * p.N * p.r + (1 << 20) }, (err, key) => {
      if (err) return fail(err);
      done({ enc: key.subarray(0, 32), check: createHmac("sha256", key.subarray(32)).update(KEY_CHECK_LABEL).digest("hex") });
    });
  });
}

function entryHead(e: BackupEntry): Buffer {
  const path = Buffer.from(e.path, "utf8");
  const b = Buffer.alloc(2 + path.length + 4 + 8);
  b.writeUInt16BE(path.length, 0);
  path.copy(b, 2);
  b.writeUInt32BE(e.mode & 0o7777, 2 + path.length);
  b.writeBigUInt64BE(BigInt(e.bytes), 6 + path.length);
  return b;
}

/** Whether `p` may name a file inside a data directory: relative, normalised, no "..", no NUL. */
function safeRelativePath(p: string): boolean {
  return p.length > 0 && p.length < 1024 && !p.includes("\0") && !p.startsWith("/") && !p.includes("\\")
    && normalize(p) === p.split("/").join(sep) && !p.split("/").some((s) => s === ".." || s === "." || s === "");
}

/**
 * Writes the backup file `out` (0600; written as `out.partial`, synced, then
 * renamed, so that `out` is either whole or absent). Refuses when `out` exists.
 * @throws UkeyError CLI_USAGE when `out` exists; FILE_UNREADABLE when a listed file cannot be read or changed size.
 */
export async function writeBackupFile(out: string, contents: BackupContents, passphrase: string): Promise<{ bytes: number; header: BackupHeader }> {
  if (statSync(out, { throwIfNoEntry: false })) throw new UkeyError("CLI_USAGE", { params: { reason: `${out} exists; a backup never replaces a file` } });
  const salt = randomBytes(16);
  const nonce = randomBytes(12);
  const keys = await deriveKeys(passphrase, salt, SCRYPT);
  const files = contents.files.map(({ path, mode, bytes }) => ({ path, mode: mode & 0o7777, bytes }));
  const payloadBytes = files.reduce((n, f) => n + entryHead(f).length + f.bytes, 0);
  const header: BackupHeader = {
    format: 1, version: contents.version, createdAt: contents.createdAt.toISOString(),
    kdf: { name: "scrypt", ...SCRYPT, salt: salt.toString("base64") }, cipher: "aes-256-gcm", nonce: nonce.toString("base64"),
    keyCheck: keys.check, payloadBytes, ca: contents.ca, database: contents.database, files,
  };
  const headerBytes = Buffer.from(JSON.stringify(header), "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32BE(headerBytes.length);
  const prefix = Buffer.concat([MAGIC, len, headerBytes]);
  const cipher = createCipheriv("aes-256-gcm", keys.enc, nonce) as CipherGCM;
  cipher.setAAD(prefix);
  const partial = `${out}.partial`;
  mkdirSync(dirname(out), { recursive: true });
  const fh = await open(partial, "wx", 0o600);
  let written = 0;
  const put = async (b: Buffer) => {
    if (b.length) { await fh.write(b); written += b.length; }
  };
  try {
    await put(prefix);
    for (const f of contents.files) {
      await put(cipher.update(entryHead(f)));
      let n = 0;
      try {
        for await (const chunk of createReadStream(f.source, { highWaterMark: 1 << 20 })) {
          n += (chunk as Buffer).length;
          await put(cipher.update(chunk as Buffer));
        }
      } catch (cause) {
        throw new UkeyError("FILE_UNREADABLE", { params: { path: f.source }, cause });
      }
      if (n !== f.bytes) throw new UkeyError("FILE_UNREADABLE", { params: { path: f.source }, detail: `${f.source} changed size while it was read (${f.bytes} -> ${n} bytes)` });
    }
    await put(cipher.final());
    await put(cipher.getAuthTag());
    await fh.sync();
    await fh.close();
    renameSync(partial, out);
    syncDirectory(dirname(out));
  } catch (e) {
    await fh.close().catch(() => undefined);
    rmSync(partial, { force: true });
    throw e;
  }
  return { bytes: written, header };
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A backup file whose cleartext header has been read (not yet authenticated: see decryptBackupFile). */
export interface OpenedBackup {
  path: string;
  header: BackupHeader;
  prefixBytes: number;
}

const refusal = (code: "BACKUP_DAMAGED" | "BACKUP_TRUNCATED" | "BACKUP_TAMPERED", path: string, detail: string, cause?: unknown) =>
  new UkeyError(code, { params: { path }, detail, ...(cause ? { cause } : {}) });

/**
 * Reads and checks the cleartext part of a backup file: the magic, the
 * header, and that the file is exactly as long as the header says.
 * @throws UkeyError FILE_UNREADABLE; BACKUP_DAMAGED when it is not a backup; BACKUP_TRUNCATED when it is cut short; BACKUP_TAMPERED when its header is changed or something was appended.
 */
export function readBackupHeader(path: string): OpenedBackup {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(12);
    if (readSync(fd, head, 0, 12, 0) < 12 || !head.subarray(0, 8).equals(MAGIC)) {
      throw refusal("BACKUP_DAMAGED", path, "no UKEYBAK1 at its start, or shorter than 12 bytes");
    }
    const n = head.readUInt32BE(8);
    if (n > MAX_HEADER_BYTES || 12 + n > size) throw refusal("BACKUP_TRUNCATED", path, "the file ends inside its header");
    const hb = Buffer.alloc(n);
    readSync(fd, hb, 0, n, 12);
    let header: BackupHeader;
    try {
      header = JSON.parse(hb.toString("utf8")) as BackupHeader;
    } catch (cause) {
      throw refusal("BACKUP_TAMPERED", path, "its header is not JSON", cause);
    }
    if (header.format !== 1 || header.cipher !== "aes-256-gcm" || header.kdf?.name !== "scrypt" || !Number.isSafeInteger(header.payloadBytes)
      || !Array.isArray(header.files) || !header.files.every((f) => typeof f?.path === "string" && safeRelativePath(f.path) && Number.isSafeInteger(f.bytes) && f.bytes >= 0)
      || !header.ca?.issuingKeyId || !header.database || header.kdf.N > 1 << 20 || header.kdf.r > 32 || header.kdf.p > 16) {
      throw refusal("BACKUP_DAMAGED", path, "its header is not one this version writes");
    }
    const expected = 12 + n + header.payloadBytes + TAG_BYTES;
    if (size < expected) throw refusal("BACKUP_TRUNCATED", path, `it is ${size} bytes where ${expected} were written`);
    if (size > expected) throw refusal("BACKUP_TAMPERED", path, `it is ${size} bytes where ${expected} were written: something was appended`);
    return { path, header, prefixBytes: 12 + n };
  } finally {
    closeSync(fd);
  }
}

/**
 * Derives the key from `passphrase` and compares it with the header's key
 * check, before anything is decrypted.
 * @throws UkeyError BACKUP_PASSPHRASE_WRONG.
 */
export async function unlockBackup(b: OpenedBackup, passphrase: string): Promise<Buffer> {
  const { N, r, p, salt } = b.header.kdf;
  const keys = await deriveKeys(passphrase, Buffer.from(salt, "base64"), { N, r, p });
  const a = Buffer.from(keys.check, "hex");
  const c = Buffer.from(String(b.header.keyCheck), "hex");
  if (a.length !== c.length || !timingSafeEqual(a, c)) throw new UkeyError("BACKUP_PASSPHRASE_WRONG");
  return keys.enc;
}

/**
 * Decrypts the payload into `dir` (made 0700; files with their recorded
 * modes), then checks GCM's tag over header and payload. The files are
 * usable only when this resolves: on any failure the caller removes `dir`.
 * @throws UkeyError BACKUP_TAMPERED when the tag does not match (a changed byte anywhere) or the payload does not hold the header's files.
 */
export async function decryptBackupFile(b: OpenedBackup, key: Buffer, dir: string): Promise<void> {
  const fd = openSync(b.path, "r");
  const prefix = Buffer.alloc(b.prefixBytes);
  const tag = Buffer.alloc(TAG_BYTES);
  try {
    readSync(fd, prefix, 0, b.prefixBytes, 0);
    readSync(fd, tag, 0, TAG_BYTES, b.prefixBytes + b.header.payloadBytes);
  } finally {
    closeSync(fd);
  }
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(b.header.nonce, "base64")) as DecipherGCM;
  decipher.setAAD(prefix);
  decipher.setAuthTag(tag);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const writer = new EntryWriter(dir, b.header.files, b.path);
  try {
    const stream = createReadStream(b.path, { start: b.prefixBytes, end: b.prefixBytes + b.header.payloadBytes - 1, highWaterMark: 1 << 20 });
    if (b.header.payloadBytes > 0) {
      for await (const chunk of stream) await writer.push(decipher.update(chunk as Buffer));
    } else {
      stream.destroy();
    }
    await writer.push(decipher.final());
  } catch (e) {
    await writer.abort();
    if (e instanceof UkeyError) throw e;
    throw refusal("BACKUP_TAMPERED", b.path, "the AES-GCM tag over header and payload does not match", e);
  }
  await writer.finish();
}

/** Writes the payload's files as they arrive, checking them against the header's list. */
class EntryWriter {
  private buf: Buffer = Buffer.alloc(0);
  private index = 0;
  private current: { fh: FileHandle; left: number } | undefined;

  constructor(private readonly dir: string, private readonly files: BackupEntry[], private readonly path: string) {}

  async push(chunk: Buffer): Promise<void> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.current) {
        const n = Math.min(this.current.left, this.buf.length);
        if (n > 0) await this.current.fh.write(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.current.left -= n;
        if (this.current.left > 0) return;
        await this.current.fh.sync();
        await this.current.fh.close();
        this.current = undefined;
        this.index += 1;
        continue;
      }
      if (this.buf.length === 0) return;
      if (this.buf.length < 2) return;
      const pathLen = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + pathLen + 12) return;
      const p = this.buf.subarray(2, 2 + pathLen).toString("utf8");
      const mode = this.buf.readUInt32BE(2 + pathLen);
      const bytes = Number(this.buf.readBigUInt64BE(6 + pathLen));
      const want = this.files[this.index];
      if (!want || want.path !== p || want.bytes !== bytes || !safeRelativePath(p)) {
        throw refusal("BACKUP_TAMPERED", this.path, "its contents do not match the files its header lists");
      }
      this.buf = this.buf.subarray(2 + pathLen + 12);
      const target = join(this.dir, ...p.split("/"));
      mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
      this.current = { fh: await open(target, "wx", mode & 0o777), left: bytes };
    }
  }

  async abort(): Promise<void> {
    await this.current?.fh.close().catch(() => undefined);
    this.current = undefined;
  }

  async finish(): Promise<void> {
    if (this.current || this.buf.length || this.index !== this.files.length) {
      await this.abort();
      throw refusal("BACKUP_TAMPERED", this.path, "its contents end before all the files its header lists");
    }
  }
}
