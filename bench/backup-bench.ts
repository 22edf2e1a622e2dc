// Backup and restore at scale (issue 18): a data directory whose embedded
// database holds UKEY_BENCH_BACKUP_ROWS certificates (default 1,000,000; each
// with a 700-byte DER and its holder) and as many audit entries (a real
// hash chain, which restore verifies whole), then:
//   - a plain copy of the database file (read, write, fsync): the bound;
//   - `backup` (online backup API, scrypt, AES-256-GCM), while a reader keeps
//     asking for certificates by serial, as a serving server does;
//   - `restore` into a new directory (decrypt, audit chain verified, CRL
//     numbers, the restore's audit entry).
// Each time is printed with its ratio to the plain copy measured in this run.
//
//   node --import tsx bench/backup-bench.ts
import { closeSync, copyFileSync, fsyncSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { systemClock } from "@ukey/policy";
import { sqliteFile } from "@ukey/store";
import { createBackup, restoreBackup } from "../packages/server/src/backup/backup-service.js";
import { runCli } from "../packages/server/src/cli.js";
import { openServerContext } from "../packages/server/src/server-context.js";

const rows = Number(process.env.UKEY_BENCH_BACKUP_ROWS ?? 1_000_000);
const CHUNK = 100_000;
const AUDIT_CHUNK = 5_000;
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;

const dir = mkdtempSync(join(process.env.UKEY_BENCH_DIR ?? tmpdir(), "ukey-backup-bench-"));
try {
  const pass = join(dir, "pass");
  writeFileSync(pass, "benchmark passphrase 0123456789\n");
  const backupPass = "benchmark backup passphrase";
  const env = { UKEY_CA_PASSPHRASE_FILE: pass };
  const dataDir = join(dir, "data");
  if (await runCli(["init", "--data-dir", dataDir], { out: () => {}, err: (x) => process.stderr.write(x), env, clock: systemClock }) !== 0) throw new Error("init failed");
  const ctx = await openServerContext(dataDir, env, systemClock);
  const now = Date.now();
  const t0 = performance.now();
  for (let from = 1; from <= rows; from += CHUNK) {
    const to = Math.min(rows, from + CHUNK - 1);
    const series = `WITH RECURSIVE g(x) AS (SELECT ${from} UNION ALL SELECT x + 1 FROM g WHERE x < ${to})`;
    await ctx.store.db.transaction(async (tx) => {
      await tx.run(`${series} INSERT INTO holders (id, kind, name, id_type, id_hash, id_masked, phone, email, organisation_id, created_at)
        SELECT 'BH' || x, 'person', 'bench ' || x, 'resident-id', printf('%064x', x), '1101**********1234', NULL, NULL, NULL, ${now} FROM g`);
      await tx.run(`${series} INSERT INTO certificates (serial, issuer_key_id, issuer_dn, subject_dn, sans, not_before, not_after, status, revocation_reason, revoked_at,
          spki_sha256, kind, token_serial, holder_id, profile_id, der, imported, created_at, updated_at)
        SELECT printf('%032x', x), 'aa11', 'CN=Bench CA', 'CN=bench ' || x, '[]', ${now}, ${now + 365 * 86_400_000}, 'active', NULL, NULL,
          printf('%064x', x), 'hardware', NULL, 'BH' || x, 'personal', randomblob(700), 1, ${now}, ${now} FROM g`);
    });
  }
  const fillMs = performance.now() - t0;
  const t1 = performance.now();
  for (let from = 1; from <= rows; from += AUDIT_CHUNK) {
    const n = Math.min(AUDIT_CHUNK, rows - from + 1);
    await ctx.store.audit.appendMany(Array.from({ length: n }, (_, i) => ({
      at: now, actor: "bench", action: "certificate.issued", subjectType: "certificate", subjectId: (from + i).toString(16).padStart(32, "0"),
      data: { profile: "personal", holder: `BH${from + i}` },
    })));
  }
  const auditMs = performance.now() - t1;
  // One CRL number, as a serving CA has.
  await ctx.revocation.crl("issuing");
  await ctx.store.db.probeWrite(); // checkpoints the WAL into the database file: the plain copy below copies all of it
  const dbFile = sqliteFile(dataDir);
  const dbBytes = statSync(dbFile).size;
  console.log(`filled ${rows} certificates and holders in ${s(fillMs)}, ${rows} audit entries in ${s(auditMs)}; database ${mb(dbBytes)}`);

  // The bound: a plain copy of the database file, synced.
  const c0 = performance.now();
  const plain = join(dir, "plain-copy.sqlite");
  copyFileSync(dbFile, plain);
  const fd = openSync(plain, "r+");
  fsyncSync(fd);
  closeSync(fd);
  const copyMs = performance.now() - c0;
  rmSync(plain);

  // The backup, with a reader asking for certificates all along (one query at a time, as requests come).
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  let stop = false;
  let reads = 0;
  let maxReadMs = 0;
  const reader = (async () => {
    while (!stop) {
      const q0 = performance.now();
      await ctx.store.certificates.get((1 + Math.floor(Math.random() * rows)).toString(16).padStart(32, "0"));
      maxReadMs = Math.max(maxReadMs, performance.now() - q0);
      reads++;
      await new Promise((r) => setImmediate(r));
    }
  })();
  const out = join(dir, "backups", "bench.ukb");
  const b0 = performance.now();
  const backup = await createBackup({ layout: ctx.layout, store: ctx.store, clock: systemClock, downloadsDir: ctx.config.downloads.dir }, out, backupPass, "bench", "bench");
  const backupMs = performance.now() - b0;
  stop = true;
  await reader;
  loop.disable();
  await ctx.close();

  const r0 = performance.now();
  const restored = await restoreBackup(out, join(dir, "restored"), backupPass, systemClock, "bench");
  const restoreMs = performance.now() - r0;
  if (restored.database.certificates !== rows) throw new Error(`restored ${restored.database.certificates} certificates of ${rows}`);

  const ratio = (ms: number) => `${(ms / copyMs).toFixed(1)}x the plain copy`;
  console.log(`plain copy of the database file (${mb(dbBytes)})        ${s(copyMs)}`);
  console.log(`backup (${rows} certificates, file ${mb(backup.bytes)})     ${s(backupMs)}  ${ratio(backupMs)}; database copy step ${s(backup.copyMs)} ${ratio(backup.copyMs)}`);
  console.log(`  while it ran: ${reads} certificate reads served, the slowest ${maxReadMs.toFixed(1)} ms; event-loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms, max ${(loop.max / 1e6).toFixed(1)} ms`);
  console.log(`restore into a new directory (audit chain of ${restored.database.auditSeq} entries verified)  ${s(restoreMs)}  ${ratio(restoreMs)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
