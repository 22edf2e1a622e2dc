// The reminder scan at scale: a database filled with certificates spread
// over two years of expiry, then one scan-and-enqueue of a day's thresholds
// (the first round of a day: yesterday, scanned again, and today), timed,
// with the process's memory before, during and after.
//
//   UKEY_BENCH_REMINDER_ROWS      certificates on the embedded engine (default 1000000; target <= 5 s)
//   UKEY_BENCH_REMINDER_POSTGRES  1: the same on the private PostgreSQL test cluster (scripts/ensure-postgres.sh)
//   UKEY_BENCH_REMINDER_PG_ROWS   certificates on PostgreSQL (default 1000000; the target is 10000000 in <= 60 s)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DAY_MS, defaultProfile, policyDay } from "@ukey/policy";
import { openStore, type Store } from "@ukey/store";
import { scanReminders } from "../packages/server/src/reminders/reminder-scan.js";
import { fillGenerated, withBenchPostgres } from "./bench-database.js";

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;

/**
 * Fills `rows` certificates, each of its own holder (a holder with two of one profile would count the older as renewed),
 * with one INSERT ... SELECT per chunk and table, generated in the database, in big transactions.
 */
async function fill(store: Store, rows: number, now: number): Promise<number> {
  await store.profiles.put(defaultProfile, now);
  // Expiry spread evenly over two years from now.
  const step = (2 * 365 * DAY_MS) / rows;
  return fillGenerated(store.db, rows, ({ series, source, hex }) => [
    `${series}
        INSERT INTO holders (id, kind, name, id_type, id_hash, id_masked, phone, email, organisation_id, created_at)
        SELECT 'BH' || x, 'person', 'bench ' || x, 'resident-id', ${hex(64)}, '1101**********1234', '159' || ${hex(8)}, NULL, NULL, ${now} ${source}`,
    `${series}
        INSERT INTO certificates (serial, issuer_key_id, issuer_dn, subject_dn, sans, not_before, not_after, status, revocation_reason, revoked_at,
          spki_sha256, kind, token_serial, holder_id, profile_id, der, imported, created_at, updated_at)
        SELECT ${hex(32)}, 'aa11', 'CN=Bench CA', 'CN=bench ' || x, '[]', ${now}, ${now} + CAST(x * ${step} AS BIGINT), 'active', NULL, NULL,
          ${hex(64)}, 'hardware', NULL, 'BH' || x, 'personal', NULL, 1, ${now}, ${now} ${source}`,
  ]);
}

/** One scan and enqueue, with memory sampled every 5 ms while it runs. */
async function measure(label: string, store: Store, rows: number, targetSeconds: number, now: number): Promise<void> {
  const fillSeconds = await fill(store, rows, now);
  // The first round of a day: the mark is yesterday, scanned again with today.
  await store.reminders.setScanMark(policyDay(now) - 1, now);
  globalThis.gc?.();
  const before = process.memoryUsage();
  let peakRss = before.rss;
  let peakHeap = before.heapUsed;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  }, 5);
  const t0 = performance.now();
  const r = await scanReminders({ store }, now);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  const after = process.memoryUsage();
  console.log(`${`reminder scan+enqueue, ${label}, ${rows.toLocaleString("en")} certs`.padEnd(64)} ${seconds.toFixed(2).padStart(8)} s   target <= ${targetSeconds} s, ratio ${(seconds / targetSeconds).toFixed(2)}   found ${r.found} enqueued ${r.enqueued} (fill ${fillSeconds.toFixed(0)} s)`);
  console.log(`${"".padEnd(64)} RSS before ${mb(before.rss)}, peak ${mb(peakRss)}, after ${mb(after.rss)}; heap before ${mb(before.heapUsed)}, peak ${mb(peakHeap)}`);
}

const now = Date.now();
const rows = Number(process.env.UKEY_BENCH_REMINDER_ROWS ?? 1_000_000);
const dir = mkdtempSync(join(tmpdir(), "ukey-reminder-bench-"));
try {
  const store = await openStore({ dataDir: dir });
  try {
    await measure("embedded", store, rows, 5, now);
  } finally {
    await store.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

if (process.env.UKEY_BENCH_REMINDER_POSTGRES === "1") {
  const pgRows = Number(process.env.UKEY_BENCH_REMINDER_PG_ROWS ?? 1_000_000);
  await withBenchPostgres(async (url) => {
    const store = await openStore({ databaseUrl: url });
    try {
      await measure("PostgreSQL", store, pgRows, pgRows >= 10_000_000 ? 60 : 60 * pgRows / 10_000_000, now);
    } finally {
      await store.close();
    }
  });
}
