import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { UkeyError, type Clock } from "@ukey/policy";
import { openStore, sealSqliteCopy, transactionRepositories, sqliteFile, summariseDatabase, type CaBinding, type DatabaseSummary, type SqliteDatabase, type Store } from "@ukey/store";
import { issuingCaBinding } from "../ca-runtime.js";
import { dataDirLayout, type DataDirLayout } from "../data-dir.js";
import { decryptBackupFile, readBackupHeader, unlockBackup, writeBackupFile, type BackupEntry, type BackupHeader } from "./backup-file.js";

/** A backup passphrase's shortest length (as the CA passphrase's). */
export const MIN_BACKUP_PASSPHRASE = 12;

/**
 * How far a restore moves every CRL number forward. CRLs signed after the
 * backup was taken are not in it; the restored CA must never sign a CRL
 * with a number one of them had (RFC 5280 5.2.3: numbers only increase).
 * A CA signs a CRL at most when its cache runs out or a revocation comes
 * in, so a million is more than any gap between two backups; the numbers
 * have room (BIGINT here, 20 octets in a CRL).
 */
export const RESTORE_CRL_NUMBER_GAP = 1_000_000;

/** What `backup` reports. */
export interface BackupSummary {
  file: string;
  bytes: number;
  createdAt: string;
  database: DatabaseSummary;
  files: number;
  /** Milliseconds: copying the database (the online backup steps), and the whole backup. */
  copyMs: number;
  totalMs: number;
}

/** The files of a data directory that a backup carries: all regular files but the database, the control socket's run/ and the downloads folder. */
function dataDirFiles(dir: string, skip: readonly string[]): Array<BackupEntry & { source: string }> {
  const out: Array<BackupEntry & { source: string }> = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const abs = join(d, name);
      const rel = relative(dir, abs).split(sep).join("/");
      if (skip.some((s) => rel === s || rel.startsWith(`${s}/`))) continue;
      const st = lstatSync(abs);
      if (st.isDirectory()) walk(abs);
      else if (st.isFile()) out.push({ path: rel, mode: st.mode & 0o777, bytes: st.size, source: abs });
    }
  };
  walk(dir);
  return out;
}

/** What a backup reads: the data directory, its open database (the running server's, or one opened for the command), the downloads folder to leave out. */
export interface BackupSource {
  layout: DataDirLayout;
  store: Pick<Store, "db" | "audit">;
  clock: Clock;
  /** config.json's downloads.dir (relative to the data directory or absolute). */
  downloadsDir: string;
}

/**
 * Takes a backup of a data directory and its embedded database: the database through SQLite's online backup API while requests
 * go on, then config, CA certificates and encrypted key files, the
 * ID-hash and session keys, TLS and KMC files, into one file encrypted to
 * `passphrase` (docs/backup.md). Audited as `data.backed-up`.
 * @throws UkeyError BACKUP_ENGINE_UNSUPPORTED on PostgreSQL; CLI_USAGE when `out` exists or lies inside the data directory; STORAGE_FULL; FILE_UNREADABLE.
 */
export async function createBackup(ctx: BackupSource, out: string, passphrase: string, version: string, actor: string): Promise<BackupSummary> {
  const started = Date.now();
  const db = ctx.store.db;
  if (db.engine !== "sqlite") throw new UkeyError("BACKUP_ENGINE_UNSUPPORTED");
  const dir = resolve(ctx.layout.dir);
  out = resolve(out);
  if (out.startsWith(dir + sep)) throw new UkeyError("CLI_USAGE", { params: { reason: `--out ${out} is inside the data directory; keep backups elsewhere` } });
  if (existsSync(out)) throw new UkeyError("CLI_USAGE", { params: { reason: `${out} exists; a backup never replaces a file` } });
  const createdAt = ctx.clock.now();
  // The copy is made beside the backup file (the operator chose that volume), never in /tmp.
  mkdirSync(dirname(out), { recursive: true, mode: 0o700 });
  const work = mkdtempSync(join(dirname(out), `.${basename(out)}.`));
  try {
    const copy = join(work, "ukey.sqlite");
    const t0 = Date.now();
    await (db as SqliteDatabase).backupTo(copy);
    const copyMs = Date.now() - t0;
    const summary = sealSqliteCopy(copy);
    const downloads = relative(dir, resolve(dir, ctx.downloadsDir)).split(sep).join("/");
    const files = [
      { path: "db/ukey.sqlite", mode: 0o600, bytes: statSync(copy).size, source: copy },
      ...dataDirFiles(dir, ["db", "run", ...(downloads.startsWith("..") ? [] : [downloads])]),
    ];
    const ca = issuingCaBinding(ctx.layout);
    const written = await writeBackupFile(out, { version, createdAt, ca, database: { engine: "sqlite", ...summary }, files }, passphrase);
    await ctx.store.audit.append({
      at: ctx.clock.now().getTime(), actor, action: "data.backed-up", subjectType: "data-dir", subjectId: ca.issuingKeyId,
      data: { file: out, bytes: written.bytes, auditSeq: summary.auditSeq, certificates: summary.certificates, files: files.length },
    });
    return { file: out, bytes: written.bytes, createdAt: createdAt.toISOString(), database: summary, files: files.length, copyMs, totalMs: Date.now() - started };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What `restore` reports. */
export interface RestoreSummary {
  dataDir: string;
  backupCreatedAt: string;
  database: DatabaseSummary;
  /** CRL numbers after the restore (each moved forward by RESTORE_CRL_NUMBER_GAP). */
  crlNumbers: Record<string, number>;
  /** Where the data directory that was replaced was moved, if there was one. */
  replaced: string | null;
  totalMs: number;
}

function sameBinding(a: CaBinding, b: CaBinding): boolean {
  return a.issuingKeyId === b.issuingKeyId && a.issuingCertSha256 === b.issuingCertSha256;
}

/**
 * Restores a backup into `dataDir`: a new or empty directory, or one of the
 * same CA whose database is not newer than the backup (that directory is
 * moved aside whole, to `<dataDir>.before-restore-<time>`, and kept).
 * Everything is decrypted and checked in a directory beside the target
 * first: the GCM tag, the CA the files and the database name, the audit
 * chain (whole, and ending at the head the backup recorded), the CRL
 * numbers (as recorded); then the CRL numbers are moved forward by
 * RESTORE_CRL_NUMBER_GAP and the restore is audited (`data.restored`), and
 * only then does the new directory take the target's place. A refusal
 * changes nothing. The caller makes sure no server runs on `dataDir`.
 * @throws UkeyError BACKUP_DAMAGED, BACKUP_TRUNCATED, BACKUP_TAMPERED, BACKUP_PASSPHRASE_WRONG, BACKUP_OTHER_CA,
 *   BACKUP_OLDER_THAN_DATABASE, AUDIT_CHAIN_BROKEN, DATA_DIR_LOCKED (the target's database is in use), DATABASE_SCHEMA_NEWER.
 */
export async function restoreBackup(file: string, dataDir: string, passphrase: string, clock: Clock, actor: string): Promise<RestoreSummary> {
  const started = Date.now();
  const target = resolve(dataDir);
  const opened = readBackupHeader(file);
  const h: BackupHeader = opened.header;
  const key = await unlockBackup(opened, passphrase);

  // What the target holds now; refused before anything is written.
  const existing = existsSync(target) ? readdirSync(target) : undefined;
  let current: DatabaseSummary | undefined;
  let onlyBackupsSince = false;
  if (existing && existing.length > 0) {
    const layout = dataDirLayout(target);
    let binding: CaBinding | undefined;
    try {
      binding = issuingCaBinding(layout);
    } catch {
      binding = undefined;
    }
    if (!binding || !sameBinding(binding, h.ca)) {
      throw new UkeyError("BACKUP_OTHER_CA", { params: { keyId: h.ca.issuingKeyId, dir: target },
        detail: binding ? `the directory serves issuing CA ${binding.issuingKeyId}` : "the directory is not empty and holds no CA" });
    }
    if (existsSync(sqliteFile(target)) && statSync(sqliteFile(target)).size > 0) {
      const store = await openStore({ dataDir: target, ca: binding, clock });
      try {
        current = await summariseDatabase(store.db);
        if (current.auditSeq > h.database.auditSeq) {
          // The backup's own `data.backed-up` entries follow the copy: a directory that has nothing else since is not newer.
          const at = await store.db.query<{ hash: string }>("SELECT hash FROM audit_log WHERE seq = ?", [h.database.auditSeq]);
          const since = await store.db.query<{ action: string }>("SELECT action FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1001", [h.database.auditSeq]);
          onlyBackupsSince = (h.database.auditSeq === 0 || at[0]?.hash === h.database.auditHead) && since.length <= 1000 && since.every((r) => r.action === "data.backed-up");
        }
      } finally {
        await store.close();
      }
    }
  }

  mkdirSync(dirname(target), { recursive: true });
  const stage = mkdtempSync(join(dirname(target), `.${basename(target)}.restoring-`));
  try {
    await decryptBackupFile(opened, key, stage);
    const staged = issuingCaBinding(dataDirLayout(stage));
    if (!sameBinding(staged, h.ca)) {
      throw new UkeyError("BACKUP_TAMPERED", { params: { path: file }, detail: "ca/issuing.cer.pem in the backup is not the CA its header names" });
    }
    const store = await openStore({ dataDir: stage, ca: staged, clock });
    let summary: DatabaseSummary;
    let after: Record<string, number>;
    try {
      summary = await summariseDatabase(store.db);
      const chain = await store.audit.verify();
      if (!chain.ok) throw new UkeyError("AUDIT_CHAIN_BROKEN", { params: { seq: chain.firstBadSeq, reason: chain.reason }, detail: "in the backup's database" });
      if (summary.auditSeq !== h.database.auditSeq || summary.auditHead !== h.database.auditHead) {
        throw new UkeyError("AUDIT_CHAIN_BROKEN", { params: { seq: summary.auditSeq, reason: `the backup recorded head ${h.database.auditSeq}/${h.database.auditHead}` } });
      }
      for (const [scope, n] of Object.entries(h.database.crlNumbers)) {
        if ((summary.crlNumbers[scope] ?? 0) !== n) {
          throw new UkeyError("BACKUP_TAMPERED", { params: { path: file }, detail: `CRL number of ${scope} is ${summary.crlNumbers[scope] ?? 0} in the database, ${n} in the header` });
        }
      }
      if (current) {
        // Newer: more audit entries, a later CRL, or a chain that does not pass through the target's head.
        const newerCrl = Object.entries(current.crlNumbers).find(([s, n]) => n > (summary.crlNumbers[s] ?? 0));
        let diverged = false;
        if (current.auditSeq > 0 && current.auditSeq <= summary.auditSeq) {
          const rows = await store.db.query<{ hash: string }>("SELECT hash FROM audit_log WHERE seq = ?", [current.auditSeq]);
          diverged = rows[0]?.hash !== current.auditHead;
        }
        if ((current.auditSeq > summary.auditSeq && !onlyBackupsSince) || newerCrl || diverged) {
          throw new UkeyError("BACKUP_OLDER_THAN_DATABASE", {
            params: { dir: target },
            detail: current.auditSeq > summary.auditSeq ? `its audit log has ${current.auditSeq} entries, the backup's ${summary.auditSeq}`
              : newerCrl ? `its CRL number ${newerCrl[1]} of ${newerCrl[0]} is past the backup's ${summary.crlNumbers[newerCrl[0]] ?? 0}`
              : `its audit entry ${current.auditSeq} is not the backup's`,
          });
        }
      }
      const at = clock.now().getTime();
      after = await store.db.transaction(async (tx) => {
        for (const [scope, n] of Object.entries(summary.crlNumbers)) {
          await tx.run("UPDATE crl_numbers SET last_number = ?, updated_at = ? WHERE issuer_key_id = ?", [n + RESTORE_CRL_NUMBER_GAP, at, scope]);
        }
        await transactionRepositories(tx).audit.append({
          at, actor, action: "data.restored", subjectType: "data-dir", subjectId: h.ca.issuingKeyId,
          data: { backupCreatedAt: h.createdAt, backupAuditSeq: summary.auditSeq, certificates: summary.certificates, crlNumberGap: RESTORE_CRL_NUMBER_GAP },
        });
        return Object.fromEntries(Object.entries(summary.crlNumbers).map(([s, n]) => [s, n + RESTORE_CRL_NUMBER_GAP]));
      });
      const again = await store.audit.verify();
      if (!again.ok) throw new UkeyError("AUDIT_CHAIN_BROKEN", { params: { seq: again.firstBadSeq, reason: again.reason } });
    } finally {
      await store.close();
    }
    let replaced: string | null = null;
    if (existing) {
      if (existing.length > 0) {
        replaced = `${target}.before-restore-${new Date(clock.now().getTime()).toISOString().replace(/[:.]/g, "-")}-${randomBytes(3).toString("hex")}`;
        renameSync(target, replaced);
      } else {
        rmSync(target, { recursive: true });
      }
    }
    renameSync(stage, target);
    return { dataDir: target, backupCreatedAt: h.createdAt, database: summary, crlNumbers: after, replaced, totalMs: Date.now() - started };
  } catch (e) {
    rmSync(stage, { recursive: true, force: true });
    throw e;
  }
}

/** The passphrase in `path`, checked for length. @throws UkeyError FILE_UNREADABLE, CONFIG_INVALID. */
export function readBackupPassphrase(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8").replace(/\r?\n$/, "");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  if (text.length < MIN_BACKUP_PASSPHRASE) throw new UkeyError("CONFIG_INVALID", { params: { reason: `the backup passphrase must be at least ${MIN_BACKUP_PASSPHRASE} characters` } });
  return text;
}
