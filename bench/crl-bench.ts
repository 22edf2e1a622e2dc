// CRL generation at scale (issue 17): with UKEY_BENCH_CRL_REVOKED (1,000,000) revoked certificates in the
// embedded database, the time and peak memory of signing the whole CRL and each shard of a 16-way
// partition, and the shard sizes. Memory is the process's peak resident set (Linux's high-water mark, reset
// before each measure, so that synchronous work is counted too) above what it was before (a delta: the rest
// of the bench's state is not counted). Then, with delta CRLs on, UKEY_BENCH_CRL_DELTA (1,000) more revoked
// after the complete CRL: the delta's time and size beside it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RevocationService, type ServerContext } from "@ukey/server";
import { fillCertificates } from "./bench-database.js";
import { openBenchContext } from "./renewal-bench.js";

const line = (label: string, value: string) => console.log(`${label.padEnd(48)} ${value}`);

/**
 * Watches the process's resident set from now on. `peak` is Linux's high-water mark (VmHWM), reset through
 * /proc/self/clear_refs: it counts the peaks of synchronous work (the CRL's final concatenation, its
 * encoding) that a timer on the event loop never sees; where it cannot be reset, the timer's samples.
 * `sampled` is what a 5 ms timer saw, for comparison; `base` the resident set when watching started (both
 * peaks are at least that). Call `stop` once.
 */
function watchRss(): { base: number; stop: () => { peak: number; sampled: number } } {
  const hwm = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) * 1024;
  let reset = false;
  try {
    writeFileSync("/proc/self/clear_refs", "5");
    // The reset sets the mark to the resident set of that instant.
    reset = hwm() <= process.memoryUsage().rss + 4 * 1048576;
  } catch {
    // No /proc, or no write access to clear_refs: the timer's samples only.
  }
  const base = process.memoryUsage().rss;
  let sampled = base;
  const timer = setInterval(() => { sampled = Math.max(sampled, process.memoryUsage().rss); }, 5);
  return {
    base,
    stop: () => {
      clearInterval(timer);
      sampled = Math.max(sampled, process.memoryUsage().rss);
      return { peak: reset ? Math.max(hwm(), sampled) : sampled, sampled };
    },
  };
}

async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; peakMb: number; sampledMb: number; residentMb: number }> {
  globalThis.gc?.();
  const watch = watchRss();
  const start = performance.now();
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    watch.stop();
    throw e;
  }
  const ms = performance.now() - start;
  const { peak, sampled } = watch.stop();
  return { value, ms, peakMb: (peak - watch.base) / 1048576, sampledMb: (sampled - watch.base) / 1048576, residentMb: peak / 1048576 };
}

/**
 * Inserts `count` revoked certificates with random serials (spread over the CRL shards) of the bench's
 * issuing CA, generated inside the database: rows bound from this process took 90-180 s for a million and
 * left the heap they were built in resident, which the CRLs measured after them then reused unseen.
 * `revocationChangedAt`: when their revocation state changed (null: before any delta's base). Returns seconds.
 */
async function fillRevoked(ctx: ServerContext, count: number, revocationChangedAt: number | null = null): Promise<number> {
  return fillCertificates(ctx.store.db, ctx.ca.issuerKeyId, count, { serial: (s) => s.randomSerial, revoked: true, revocationChangedAt });
}

/** Prints whole-CRL and per-shard generation time, peak memory and sizes with `revoked` revoked rows added. */
export async function measureCrl(ctx: ServerContext, revoked: number, shards = 16): Promise<void> {
  if (revoked <= 0) return;
  const fillSeconds = await fillRevoked(ctx, revoked);
  const service = new RevocationService({
    store: ctx.store, ca: ctx.ca, clock: ctx.clock, crlValidityHours: 168, crlRefreshMinutes: 60,
    crlShards: { count: shards, publicUrl: ctx.config.publicUrl }, ocsp: ctx.ocsp,
    // On, so that the complete CRLs measured below are the bases of the deltas measured after them.
    deltaCrl: { everyMinutes: 15, publicUrl: ctx.config.publicUrl },
  });
  // The shards first: memory a larger CRL made resident stays resident after it is freed, and a shard
  // measured after the whole CRL grew the resident set by 2 MB where it needs more than its own size.
  const sizes: number[] = [];
  let totalMs = 0;
  let peakMb = 0;
  for (let k = 0; k < shards; k++) {
    const m = await measured(() => service.crlShard(k));
    sizes.push(m.value.length);
    totalMs += m.ms;
    peakMb = Math.max(peakMb, m.peakMb);
  }
  const whole = await measured(() => service.crl("issuing"));
  line(`CRL, whole, ${revoked.toLocaleString("en")} revoked`,
    `${(whole.ms / 1000).toFixed(1).padStart(8)} s    ${(whole.value.length / 1048576).toFixed(1)} MB, peak memory +${whole.peakMb.toFixed(0)} MB (a 5 ms timer saw +${whole.sampledMb.toFixed(0)}; the process's resident set at the peak ${whole.residentMb.toFixed(0)} MB) (rows added in ${fillSeconds.toFixed(0)} s)`);
  const kb = (n: number) => (n / 1024).toFixed(0);
  line(`CRL, ${shards} shards`,
    `${(totalMs / 1000 / shards).toFixed(2).padStart(8)} s per shard, peak memory +${peakMb.toFixed(0)} MB; sizes ${kb(Math.min(...sizes))}-${kb(Math.max(...sizes))} KB (whole ${kb(whole.value.length)} KB)`);
  const kb1 = (n: number) => (n / 1024).toFixed(1);
  const since = Number(process.env.UKEY_BENCH_CRL_DELTA ?? 1000);
  if (since <= 0) return;
  // Revoked after the complete CRL was signed (their state changed now): only the deltas list them. Their
  // memory is measured after the whole CRL's, so it is the least they take, not the most.
  await fillRevoked(ctx, since, ctx.clock.now().getTime());
  const delta = await measured(() => service.deltaCrl());
  const deltaSizes: number[] = [];
  let deltaMs = 0;
  for (let k = 0; k < shards; k++) {
    const m = await measured(() => service.deltaCrl(k));
    deltaSizes.push(m.value.length);
    deltaMs += m.ms;
  }
  line(`CRL delta, ${since.toLocaleString("en")} revoked since the base`,
    `${(delta.ms / 1000).toFixed(2).padStart(8)} s    ${kb1(delta.value.length)} KB (base ${kb(whole.value.length)} KB), peak memory +${delta.peakMb.toFixed(0)} MB; per shard ${(deltaMs / shards).toFixed(0)} ms, ${kb1(Math.min(...deltaSizes))}-${kb1(Math.max(...deltaSizes))} KB (bases ${kb(Math.min(...sizes))}-${kb(Math.max(...sizes))} KB)`);
}

/**
 * This file alone (node --expose-gc --import tsx bench/crl-bench.ts): a bench context on the embedded
 * database, then measureCrl with UKEY_BENCH_CRL_REVOKED (default 1,000,000) revoked certificates.
 */
async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ukey-crl-bench-"));
  try {
    const ctx = await openBenchContext(dir);
    try {
      console.log(`ukey-renew CRL bench (P-256 CA key; embedded; node ${process.version}${globalThis.gc ? "" : "; without --expose-gc"})`);
      await measureCrl(ctx, Number(process.env.UKEY_BENCH_CRL_REVOKED ?? 1_000_000));
    } finally {
      await ctx.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
