// Renewals over HTTP through the whole order path: start (policy; the first
// challenge comes with the order), proof of possession (verified; it answers
// the order credential the later steps send), CSR
// (verified), issuance with durable commit, complete (old one superseded),
// all audited. run-bench.ts calls measureRenewals; run alone
// (`node --import tsx bench/renewal-bench.ts`, add --cpu-prof to profile the
// server) it sets up its own data directory and measures only this.
import "reflect-metadata";
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webcrypto } from "node:crypto";
import { Session } from "node:inspector";
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import * as x509 from "@peculiar/x509";
import { systemClock } from "@ukey/policy";
import { buildApp, formatCertId, hashIdNumber, maskIdNumber, openServerContext, runCli, type ServerContext } from "@ukey/server";

/** What one renewal run measured; CPU figures are seconds of CPU per second of wall time (1.0 = one core). */
export interface RenewalResult {
  rate: number;
  done: number;
  failed: number;
  firstError?: string;
  elapsed: number;
  serverCpu: number;
  clientCpu: number;
  /** Of serverCpu, what the main thread (event loop) used; undefined where /proc is missing. */
  mainThreadCpu?: number;
  /** Bytes the server process wrote to the disk per renewal (WAL, checkpoints); undefined where /proc is missing. */
  diskBytesPerRenewal?: number;
  /** One renewal's time, first request to last answer, in milliseconds: median and 99th percentile. */
  p50: number;
  p99: number;
  p999: number;
  /** Where the time went: mean milliseconds of each request (start, possession, csr, complete) over the slowest 1% of renewals, and over the middle ones (45th to 55th percentile). */
  slowestSteps: number[];
  middleSteps: number[];
  /** Of slowestSteps and middleSteps, the part inside the server: from the request's arrival (headers parsed) to its answer (Server-Timing). */
  slowestInServer: number[];
  middleInServer: number[];
  /** The server's garbage collections in the measured window: how many, their total and longest pause (ms). */
  gc: { count: number; totalMs: number; maxMs: number };
  /** The server's event-loop delay in the measured window (ms): 99th percentile and maximum. */
  loopDelay: { p99Ms: number; maxMs: number };
}

/** What the load client sends back at the end of a measurement. */
interface LoadClientResult {
  done: number; failed: number; firstError?: string; elapsed: number; cpuMicros: number;
  p50: number; p99: number; p999: number; slowestSteps: number[]; middleSteps: number[]; slowestInServer: number[]; middleInServer: number[];
}

/** CPU ticks of this process's main thread, from /proc (Linux); undefined elsewhere. */
function mainThreadTicks(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

/** Bytes this process has caused to be written to the disk, from /proc (Linux); undefined elsewhere. */
function diskWriteBytes(): number | undefined {
  try {
    const m = /^write_bytes: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The profile the renewal bench uses: possession only (as seed 004's), P-256. */
export const benchProfile = { id: "bench", preset: "gov-supervision", certificates: null, keyAlgorithms: ["p256"] };

/**
 * Issues `renewals` certificates on the bench profile to holder `holderId`
 * and writes, for each, the agent's side of a renewal (certId, the old key,
 * a CSR for a new key) to a JSON file in `dir`. Nothing here is timed.
 */
export async function prepareRenewalJobs(ctx: ServerContext, holderId: string, renewals: number, dir: string, name = "renewal-jobs"): Promise<string> {
  const ecAlg = { name: "ECDSA", namedCurve: "P-256" };
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const csrFor = async () => {
    const k = await webcrypto.subtle.generateKey(ecAlg, true, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "", keys: k, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", k.privateKey));
    return { csr: csr.toString("pem"), key: `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString("base64")}\n-----END PRIVATE KEY-----\n` };
  };
  const notAfter = new Date(Date.now() + 30 * 86_400_000);
  const jobs: Array<{ certId: string; oldKey: string; csr: string }> = [];
  // Chunks of concurrent issuance share group commits: setup stays short.
  for (let i = 0; i < renewals; i += 256) {
    const chunk = await Promise.all(Array.from({ length: Math.min(256, renewals - i) }, async () => {
      const old = await csrFor();
      const fresh = await csrFor();
      const c = await ctx.issuance.issue({ holderId, profileId: benchProfile.id, csr: old.csr, actor: "bench", notAfter });
      return { certId: formatCertId(c.issuerKeyId, c.serial), oldKey: old.key, csr: fresh.csr };
    }));
    jobs.push(...chunk);
  }
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(jobs));
  return file;
}

/**
 * A fresh data directory in `dir` (a CA of `algorithm`, default P-256; the
 * possession-only bench profile for keys of that algorithm; holder B1) and
 * the server context on it. Close the context. `opts.env` adds to the
 * environment of init and of the context (e.g. UKEY_DATABASE_URL).
 */
/** The SM2 pair profile of the SM2 bench (preset gov-supervision, seed 004), served with a KMC. */
export const benchPairProfile = { id: "bench-pair", preset: "gov-supervision" };

export async function openBenchContext(dir: string, algorithm: "p256" | "sm2" = "p256", opts: { pairs?: boolean; env?: Record<string, string> } = {}): Promise<ServerContext> {
  const pass = join(dir, "pass");
  writeFileSync(pass, "benchmark passphrase 0123456789\n");
  const kmcPass = join(dir, "kmc-pass");
  writeFileSync(kmcPass, "benchmark kmc passphrase 9876543210\n");
  const env = { UKEY_CA_PASSPHRASE_FILE: pass, ...(opts.pairs ? { UKEY_KMC_PASSPHRASE_FILE: kmcPass } : {}), ...opts.env };
  const quiet = { out: () => {}, err: (s: string) => process.stderr.write(s), env, clock: systemClock };
  const dataDir = join(dir, "data");
  if (await runCli(["init", "--data-dir", dataDir, "--algorithm", algorithm], quiet) !== 0) throw new Error("init failed");
  const cfgFile = join(dataDir, "config.json");
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.profiles.push({ ...benchProfile, keyAlgorithms: [algorithm] });
  if (opts.pairs) {
    cfg.profiles.push(benchPairProfile);
    cfg.kmc = { masterKey: { type: "file" } };
  }
  // Thousands of renewals and OCSP requests come from this one loopback client: it is on the allow list,
  // as an institution lists its relying parties' OCSP clients; the limits themselves keep their defaults.
  cfg.rateLimits = { allowList: ["127.0.0.1", "::1"] };
  if (opts.pairs && await runCli(["kmc", "init", "--data-dir", dataDir], quiet) !== 0) throw new Error("kmc init failed");
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  const ctx = await openServerContext(dataDir, env, systemClock);
  const at = Date.now();
  await ctx.store.transaction(async (r) => {
    await r.holders.insert({ id: "B1", kind: "person", name: "Bench Holder", idType: "resident-id", idHash: hashIdNumber(ctx.idKey, "resident-id", "110101199003071234"), idMasked: maskIdNumber("110101199003071234"), phone: null, email: "b1@example.com", organisationId: null, createdAt: at });
  });
  return ctx;
}

/** Renewals before the measured ones (not counted): the server reaches its steady state first. */
export const RENEWAL_WARM_UP_SECONDS = 2;

/**
 * Holders renewing at once, one measurement each (UKEY_BENCH_AGENTS, e.g.
 * "256,512"). Each agent waits for every answer, so throughput is agents
 * divided by the time of one renewal until the server's event loop is full:
 * at 256 it still waits for commits now and then, at 512 it is saturated.
 * Both are printed, each with the time one renewal takes.
 */
export function benchAgents(): number[] {
  const list = (process.env.UKEY_BENCH_AGENTS ?? "256,512").split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0);
  if (!list.length) throw new Error("UKEY_BENCH_AGENTS: give agent counts such as 256,512");
  return list;
}

/** Certificates prepared per measurement (UKEY_BENCH_RENEWALS): enough for the warm-up and the measured seconds at about 1,000/s. */
export function benchRenewals(): number {
  const n = Number(process.env.UKEY_BENCH_RENEWALS ?? 8000);
  if (!Number.isInteger(n) || n < 100) throw new Error("UKEY_BENCH_RENEWALS: at least 100");
  return n;
}

/**
 * Serves the real app on loopback and lets `agents` concurrent agents (a
 * load client in one child process) renew the prepared certificates until
 * the list is done or `seconds` are up, after `warmUpSeconds` of renewals
 * that are not counted. The server's and the client's CPU
 * are measured over the same window: both share this machine's cores.
 */
export async function measureRenewals(ctx: ServerContext, jobsFile: string, agents: number, seconds: number, warmUpSeconds = RENEWAL_WARM_UP_SECONDS): Promise<RenewalResult> {
  const app = await buildApp(ctx);
  // Server-Timing on every answer: the milliseconds from the request's arrival (its headers parsed) to its
  // answer, so that the client can tell time inside the server from time spent before the server read it.
  const arrived = new WeakMap<object, number>();
  app.addHook("onRequest", (req, _reply, done) => { arrived.set(req, performance.now()); done(); });
  app.addHook("onSend", (req, reply, payload, done) => {
    void reply.header("server-timing", `app;dur=${(performance.now() - (arrived.get(req) ?? NaN)).toFixed(1)}`);
    done(null, payload);
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  try {
    const port = (app.server.address() as { port: number }).port;
    const client = fork(join(import.meta.dirname, "renewal-load-client.mjs"), [String(port), jobsFile, String(seconds), String(agents), String(warmUpSeconds)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    let cpuAtStart: NodeJS.CpuUsage | undefined;
    let ticksAtStart: number | undefined;
    let diskAtStart: number | undefined;
    // Pauses and event-loop delay of this (the server's) process, counted from the client's "ready" on.
    const gc = { count: 0, totalMs: 0, maxMs: 0 };
    let counting = false;
    const gcObserver = new PerformanceObserver((list) => {
      if (!counting) return;
      for (const e of list.getEntries()) {
        gc.count++;
        gc.totalMs += e.duration;
        gc.maxMs = Math.max(gc.maxMs, e.duration);
      }
    });
    gcObserver.observe({ entryTypes: ["gc"] });
    const loop = monitorEventLoopDelay({ resolution: 5 });
    let rr: LoadClientResult;
    try {
      rr = await new Promise<LoadClientResult>((resolve, reject) => {
        client.on("message", (m: { ready?: true } & Record<string, unknown>) => {
          if (m.ready) {
            cpuAtStart = process.cpuUsage();
            ticksAtStart = mainThreadTicks();
            diskAtStart = diskWriteBytes();
            counting = true;
            loop.enable();
          }
          else resolve(m as unknown as LoadClientResult);
        });
        client.on("exit", (code) => reject(new Error(`renewal load client exited with ${code}`)));
      });
    } finally {
      loop.disable();
      gcObserver.disconnect();
    }
    const used = process.cpuUsage(cpuAtStart);
    const ticks = mainThreadTicks();
    const disk = diskWriteBytes();
    return {
      rate: rr.done / rr.elapsed, done: rr.done, failed: rr.failed, firstError: rr.firstError, elapsed: rr.elapsed, p50: rr.p50, p99: rr.p99, p999: rr.p999,
      slowestSteps: rr.slowestSteps, middleSteps: rr.middleSteps, slowestInServer: rr.slowestInServer, middleInServer: rr.middleInServer, gc,
      loopDelay: { p99Ms: loop.percentile(99) / 1e6, maxMs: loop.max / 1e6 },
      serverCpu: (used.user + used.system) / 1e6 / rr.elapsed, clientCpu: rr.cpuMicros / 1e6 / rr.elapsed,
      // Clock ticks are 1/100 s on Linux.
      mainThreadCpu: ticks === undefined || ticksAtStart === undefined ? undefined : (ticks - ticksAtStart) / 100 / rr.elapsed,
      diskBytesPerRenewal: disk === undefined || diskAtStart === undefined || rr.done === 0 ? undefined : (disk - diskAtStart) / rr.done,
    };
  } finally {
    await app.close();
  }
}

/** One line for the bench output: the rate, its ratio to the raw bound, and the CPU each side used. */
export function renewalLine(r: RenewalResult, agents: number, bound?: number): string {
  const fresh = process.env.UKEY_BENCH_CONNECTION_PER_RENEWAL === "1" ? ", a connection each" : process.env.UKEY_BENCH_COLD_CONNECTIONS === "1" ? ", cold connections" : "";
  const label = `renewals over HTTP (4 requests each, ${agents} agents${fresh})`.padEnd(48);
  const perRenewal = (cores: number) => (cores * r.elapsed * 1000 / Math.max(1, r.done)).toFixed(2);
  const ratio = bound ? `   raw bound ${bound.toFixed(0)} /s, ratio ${(r.rate / bound).toFixed(2)}` : "";
  return `${label} ${r.rate.toFixed(0).padStart(8)} /s${ratio} (target >= 1000/s)   done ${r.done} failed ${r.failed} in ${r.elapsed.toFixed(1)} s after ${RENEWAL_WARM_UP_SECONDS} s warm-up`
    + `; one renewal p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms (${(r.p99 / Math.max(1, r.p50)).toFixed(1)}x p50; target <= 3x), p99.9 ${r.p999.toFixed(0)} ms`
    + `\n${"".padEnd(49)}CPU (cores): server ${r.serverCpu.toFixed(2)}${r.mainThreadCpu === undefined ? "" : ` (main thread ${r.mainThreadCpu.toFixed(2)})`}, load client ${r.clientCpu.toFixed(2)}`
    + `; per renewal: server ${perRenewal(r.serverCpu)} ms${r.mainThreadCpu === undefined ? "" : ` (main thread ${perRenewal(r.mainThreadCpu)} ms)`}, client ${perRenewal(r.clientCpu)} ms`
    + `${r.diskBytesPerRenewal === undefined ? "" : `, disk writes ${(r.diskBytesPerRenewal / 1024).toFixed(0)} KB`}${r.firstError ? `   first error: ${r.firstError}` : ""}`
    + `\n${"".padEnd(49)}where the time went (ms per request start/possession/csr/complete): slowest 1% ${steps(r.slowestSteps)}, middle ${steps(r.middleSteps)}`
    + `\n${"".padEnd(49)}of which inside the server (arrival to answer): slowest 1% ${steps(r.slowestInServer)}, middle ${steps(r.middleInServer)}`
    + `\n${"".padEnd(49)}server GC ${r.gc.count} pauses, ${r.gc.totalMs.toFixed(0)} ms in all, longest ${r.gc.maxMs.toFixed(1)} ms; event-loop delay p99 ${r.loopDelay.p99Ms.toFixed(1)} ms, max ${r.loopDelay.maxMs.toFixed(1)} ms`;
}

function steps(ms: number[]): string {
  return ms.map((m) => m.toFixed(0)).join("/");
}

async function main(): Promise<void> {
  const seconds = Number(process.env.UKEY_BENCH_SECONDS ?? 5);
  const dir = mkdtempSync(join(tmpdir(), "ukey-renewal-bench-"));
  try {
    const ctx = await openBenchContext(dir);
    try {
      for (const agents of benchAgents()) {
        const jobsFile = await prepareRenewalJobs(ctx, "B1", benchRenewals(), dir, `jobs-${agents}`);
        // UKEY_BENCH_CPU_PROFILE=<file>: a CPU profile of the server's main thread over the timed part only (of the last measurement).
        const profileFile = process.env.UKEY_BENCH_CPU_PROFILE;
        const session = profileFile ? new Session() : undefined;
        const post = (method: string) => new Promise<unknown>((resolve, reject) => session!.post(method, (e, v) => (e ? reject(e) : resolve(v))));
        if (session) {
          session.connect();
          await post("Profiler.enable");
          await post("Profiler.start");
        }
        const r = await measureRenewals(ctx, jobsFile, agents, seconds);
        if (session) {
          const { profile } = await post("Profiler.stop") as { profile: unknown };
          writeFileSync(profileFile!, JSON.stringify(profile));
          session.disconnect();
        }
        console.log(renewalLine(r, agents));
      }
    } finally {
      await ctx.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
