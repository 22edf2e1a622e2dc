import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { systemClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { formatCertId } from "../src/cert-id.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, keyArgs, opensslCsr, tempDir, type TempDir } from "./support/fixtures.js";
import { driveRenewal, type RenewalJob } from "./support/renewal-driver.js";

// A flood of bogus operator sign-ins must not starve renewals: password
// hashes run through one bounded queue off the event loop, the overflow is
// refused at once. What is asserted are the queue's own counts (the ones
// /metrics shows), never times, so that a slow or busy machine gives the
// same verdict; how long a renewal takes during a flood is measured in the
// bench (bench/sign-in-flood-bench.ts). 48 clients flood, each on its own
// address; the per-client request limit is raised here, so that the queue,
// not the limiter, is what holds the flood back.
const CONCURRENT_HASHES = 1;
const WAITING_HASHES = 16;
const FLOOD_CLIENTS = 48;
const RENEWALS_DURING_FLOOD = 6;
/** Sign-ins answered before the renewals start: six times what the hash queue's slot and wait list hold. */
const FLOOD_FIRST = 100;
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let port: number;
const jobs: RenewalJob[] = [];

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const file = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(file, "utf8")) as { profiles: unknown[] } & Record<string, unknown>;
  // Possession only, as seed 004's profile; certificates inside their window at once.
  cfg.profiles.push({ id: "quick", preset: "gov-supervision", certificates: null, keyAlgorithms: ["p256"] });
  cfg.rateLimits = { rules: { operatorSignIn: { max: 10_000_000 } } };
  cfg.signIn = { concurrentHashes: CONCURRENT_HASHES, waitingHashes: WAITING_HASHES };
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  ctx = await openServerContext(dataDir, env, systemClock);
  await ctx.store.holders.insert({
    id: "F1", kind: "person", name: "Flood Test", idType: "resident-id", idHash: "00".repeat(32), idMasked: "1101**********1234",
    phone: null, email: null, organisationId: null, createdAt: Date.now(),
  });
  for (let i = 0; i < RENEWALS_DURING_FLOOD + 1; i++) {
    const old = opensslCsr(t, `old${i}`, keyArgs.p256);
    const fresh = opensslCsr(t, `new${i}`, keyArgs.p256, "/");
    const c = await ctx.issuance.issue({ holderId: "F1", profileId: "quick", csr: readFileSync(old.csr), actor: "test", notAfter: new Date(Date.now() + 30 * 86_400_000) });
    jobs.push({ certId: formatCertId(c.issuerKeyId, c.serial), keyFile: old.key, csrPem: readFileSync(fresh.csr, "utf8") });
  }
  app = await buildApp(ctx);
  await app.listen({ host: "127.0.0.1", port: 0 });
  port = (app.server.address() as { port: number }).port;
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

/** Resolves when `cond` holds; the deadline only turns a hang into a failure that says what it waited for. */
async function until(cond: () => boolean, what: string, deadlineMs = 120_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The sign-in hash counters on GET /metrics, as Prometheus reads them. */
async function scrapedHashCounts(): Promise<Record<string, number>> {
  const res = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(res.statusCode, 200, res.body);
  const counts: Record<string, number> = {};
  for (const m of res.body.matchAll(/^ukey_sign_in_hashes_total\{outcome="(\w+)"\} (\d+)$/gm)) counts[m[1]!] = Number(m[2]);
  return counts;
}

test("a renewal asks the sign-in hash queue for nothing", async () => {
  const idle = ctx.signInHashes.stats();
  await driveRenewal(app, jobs.shift()!);
  assert.deepEqual(ctx.signInHashes.stats(), idle);
});

test("a flood of bogus operator sign-ins from many clients: one hash at a time, at most 16 waiting, the rest refused at once with SIGN_IN_BUSY, renewals completing beside it", async () => {
  const start = ctx.signInHashes.stats();
  // Each client at most 4 sign-ins a second: about 190 a second in all, some thirty times the flood that took renewals to seconds.
  const flood = fork(join(import.meta.dirname, "support", "sign-in-flood-client.mjs"), [String(port), String(FLOOD_CLIENTS), "4", "300"]);
  let answered = 0;
  const report = new Promise<{ statuses: Record<string, number> }>((resolve, reject) => {
    flood.on("message", (m: { statuses?: Record<string, number>; answered?: number }) => {
      if (m.answered !== undefined) answered = m.answered;
      if (m.statuses) resolve(m as { statuses: Record<string, number> });
    });
    flood.on("exit", (code) => reject(new Error(`the flood client exited with ${code} before it reported`)));
  });
  // What a renewal's own steps see of the queue: sampled on the event loop they run on, and at each renewal's end.
  const seen = { samples: 0, hashRunning: 0 };
  const atCompletion: Array<{ running: number; waiting: number }> = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    flood.send("flood");
    // Counted by the flood's answers, not by the queue: a sign-in that bypassed the queue must still start the renewals.
    await until(() => answered >= FLOOD_FIRST, `${FLOOD_FIRST} sign-ins answered`);
    sampler = setInterval(() => {
      seen.samples++;
      if (ctx.signInHashes.load.running > 0) seen.hashRunning++;
    }, 5);
    for (let i = 0; i < RENEWALS_DURING_FLOOD; i++) {
      // Throws, naming the step, if any renewal step is refused.
      await driveRenewal(app, jobs.shift()!);
      atCompletion.push(ctx.signInHashes.load);
    }
  } finally {
    clearInterval(sampler);
    flood.send("stop");
  }
  // Every client has had its last answer when the flood reports: nothing is in flight any more.
  const { statuses } = await report;
  const end = ctx.signInHashes.stats();
  const hashed = end.hashed - start.hashed;
  const refused = end.refused - start.refused;
  process.stdout.write(`flood answers ${JSON.stringify(statuses)}; queue: ${hashed} hashed, ${refused} refused, at most ${end.peakRunning} running and ${end.peakWaiting} waiting; `
    + `a hash was running in ${seen.hashRunning} of ${seen.samples} samples taken during the renewals; at each renewal's end (running/waiting) ${atCompletion.map((l) => `${l.running}/${l.waiting}`).join(" ")}\n`);

  // The bounds held: never more hashes at once than the slots (the rest of the thread pool stays the renewals'), never a longer wait list.
  assert.equal(end.peakRunning, CONCURRENT_HASHES, "hashes running at once");
  assert.equal(end.peakWaiting, WAITING_HASHES, "the wait list filled up to its bound and never beyond");
  // Every sign-in was either hashed (and refused as the bad password it was, 401) or refused at once (503 SIGN_IN_BUSY):
  // the queue counted a refusal for each 503, so none of those waited for a slot or ran a hash.
  assert.deepEqual(statuses, { "401 OPERATOR_SIGN_IN_FAILED": hashed, "503 SIGN_IN_BUSY": refused });
  assert.ok(hashed > 0 && refused > FLOOD_FIRST / 2, `the flood was real: ${hashed} hashed, ${refused} refused`);
  // Prometheus sees the same counts.
  assert.deepEqual(await scrapedHashCounts(), { hashed: end.hashed, refused: end.refused });
  // The renewals all completed (driveRenewal throws otherwise) while the flood held the queue: they do not queue behind it.
  assert.equal(atCompletion.length, RENEWALS_DURING_FLOOD);
  assert.ok(atCompletion.some((l) => l.running === CONCURRENT_HASHES && l.waiting === WAITING_HASHES), "some renewal completed while the hash queue was full");
  // Hashes run off the event loop: the renewals' event loop turned while a hash was running. A hash on the main
  // thread would start and finish within one turn, and no sample would ever see it running.
  assert.ok(seen.hashRunning > 0, `a hash was running in ${seen.hashRunning} of ${seen.samples} samples`);
});
