// What a flood of bogus operator sign-ins costs a renewal: the median time of
// one holder's renewals (one agent, renewal-load-client.mjs, each renewal
// after the previous one) while 48 clients flood the sign-in route, against
// the median without the flood, measured in alternating rounds of one run so
// that load from elsewhere on this machine falls on both sides alike; the
// figure is the median over the rounds of each round's ratio (flooded to the
// quiet side just before it). The
// flood comes from the sign-in flood test's client, each of its clients on
// its own loopback address; the per-client sign-in limit is raised, so that
// the password hash queue, not the limiter, is what holds the flood back.
// The test (packages/server/test/sign-in-flood.test.ts) asserts the queue's
// bounds from its counts; this measures what they buy. run-bench.ts calls
// measureSignInFlood; run alone: `node --import tsx bench/sign-in-flood-bench.ts`.
import "reflect-metadata";
import { fork } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "@ukey/policy";
import { buildApp, openServerContext, type ServerContext } from "@ukey/server";
import { openBenchContext, prepareRenewalJobs } from "./renewal-bench.js";

const FLOOD_CLIENTS = 48;
/** Sign-ins a second per flood client at most: about 190 a second in all. */
const FLOOD_PER_CLIENT = 4;
const TARGET_RATIO = 2;
const floodClient = join(import.meta.dirname, "..", "packages", "server", "test", "support", "sign-in-flood-client.mjs");

/** What measureSignInFlood measured: renewal medians (ms) per round on each side, the median of their ratios, and the flood's answers. */
export interface SignInFloodResult {
  quiet: number[];
  flooded: number[];
  ratio: number;
  renewals: { done: number; failed: number; firstError?: string };
  floodAnswers: Record<string, number>;
  queue: { hashed: number; refused: number; peakRunning: number; peakWaiting: number };
}

/**
 * A bench data directory in `dir` (openBenchContext's) whose operator
 * sign-in limit per client is raised out of the flood's way. Close the context.
 */
async function openFloodContext(dir: string): Promise<ServerContext> {
  await (await openBenchContext(dir)).close();
  const file = join(dir, "data", "config.json");
  const cfg = JSON.parse(readFileSync(file, "utf8")) as { rateLimits: Record<string, unknown> };
  cfg.rateLimits = { ...cfg.rateLimits, rules: { operatorSignIn: { max: 10_000_000 } } };
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  return openServerContext(join(dir, "data"), { UKEY_CA_PASSPHRASE_FILE: join(dir, "pass") }, systemClock);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Measures renewals without and during a sign-in flood in `rounds` (default
 * 5) alternating rounds of `seconds` (default 2) a side, in a data directory
 * of its own under `dir`, after 3 seconds of renewals that are not counted.
 * @throws Error when a child process fails.
 */
export async function measureSignInFlood(dir: string, seconds = 2, rounds = 5): Promise<SignInFloodResult> {
  const own = join(dir, "sign-in-flood");
  mkdirSync(own, { recursive: true });
  const ctx = await openFloodContext(own);
  try {
    // One agent renews about 50 a second here; each side gets jobs for five times that, the list ending a round early rather than late.
    const perSide = Math.max(100, Math.ceil(seconds * 250));
    const jobFiles: string[] = [];
    for (let i = 0; i < 2 * rounds + 1; i++) jobFiles.push(await prepareRenewalJobs(ctx, "B1", i === 0 ? 3 * perSide / seconds : perSide, own, `flood-jobs-${i}`));
    const app = await buildApp(ctx);
    await app.listen({ host: "127.0.0.1", port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const flood = fork(floodClient, [String(port), String(FLOOD_CLIENTS), String(FLOOD_PER_CLIENT), String(3600)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const report = new Promise<Record<string, number>>((resolve, reject) => {
      flood.on("message", (m: { statuses?: Record<string, number> }) => { if (m.statuses) resolve(m.statuses); });
      flood.on("exit", (code) => reject(new Error(`sign-in flood client exited with ${code} before it reported`)));
    });
    const renewals = { done: 0, failed: 0, firstError: undefined as string | undefined };
    const round = (jobsFile: string, secs: number) => new Promise<number>((resolve, reject) => {
      const client = fork(join(import.meta.dirname, "renewal-load-client.mjs"), [String(port), jobsFile, String(secs), "1", "0.2"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      client.on("message", (m: { ready?: true; done?: number; failed?: number; firstError?: string; p50?: number }) => {
        if (m.ready) return;
        renewals.done += m.done ?? 0;
        renewals.failed += m.failed ?? 0;
        renewals.firstError ??= m.firstError;
        resolve(m.p50 ?? NaN);
      });
      client.on("exit", (code) => reject(new Error(`renewal load client exited with ${code}`)));
    });
    const quiet: number[] = [];
    const flooded: number[] = [];
    let before: ReturnType<ServerContext["signInHashes"]["stats"]>;
    try {
      await round(jobFiles[0]!, 3);
      renewals.done = 0;
      renewals.failed = 0;
      before = ctx.signInHashes.stats();
      for (let r = 0; r < rounds; r++) {
        quiet.push(await round(jobFiles[1 + 2 * r]!, seconds));
        flood.send("flood");
        // The flood fills the hash queue's slot and wait list before the renewals start.
        await new Promise((res) => setTimeout(res, 500));
        flooded.push(await round(jobFiles[2 + 2 * r]!, seconds));
        flood.send("calm");
        // The flood's answers drain: 16 waiting hashes take a second or two.
        await new Promise((res) => setTimeout(res, 2000));
      }
    } catch (e) {
      flood.send("stop");
      report.catch(() => {});
      await app.close();
      throw e;
    }
    flood.send("stop");
    const floodAnswers = await report;
    await app.close();
    const after = ctx.signInHashes.stats();
    return {
      quiet, flooded, ratio: median(flooded.map((f, i) => f / quiet[i]!)), renewals, floodAnswers,
      queue: { hashed: after.hashed - before.hashed, refused: after.refused - before.refused, peakRunning: after.peakRunning, peakWaiting: after.peakWaiting },
    };
  } finally {
    await ctx.close();
  }
}

/** The bench line: the median of the rounds' ratios with its target, then what each side and the flood did. */
export function signInFloodLine(r: SignInFloodResult): string {
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(1)).join("/");
  return `${`renewal during a sign-in flood (${FLOOD_CLIENTS} clients)`.padEnd(48)} ${r.ratio.toFixed(2).padStart(8)} x   renewal p50 during / without, median of ${r.quiet.length} alternating rounds (target <= ${TARGET_RATIO}x)`
    + `\n${"".padEnd(49)}p50 per round without ${ms(r.quiet)} ms, during ${ms(r.flooded)} ms (medians ${median(r.quiet).toFixed(1)} and ${median(r.flooded).toFixed(1)} ms); renewals done ${r.renewals.done} failed ${r.renewals.failed}${r.renewals.firstError ? ` (first error: ${r.renewals.firstError})` : ""}`
    + `\n${"".padEnd(49)}flood answers ${JSON.stringify(r.floodAnswers)}; hash queue: ${r.queue.hashed} hashed, ${r.queue.refused} refused, at most ${r.queue.peakRunning} running and ${r.queue.peakWaiting} waiting`;
}

/** True when the flood's cost is within its target and every renewal went through. */
export function signInFloodMet(r: SignInFloodResult): boolean {
  return r.ratio <= TARGET_RATIO && r.renewals.failed === 0;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "ukey-sign-in-flood-bench-"));
  try {
    const r = await measureSignInFlood(dir, Number(process.env.UKEY_BENCH_SECONDS ?? 2));
    console.log(signInFloodLine(r));
    if (!signInFloodMet(r)) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) await main();
