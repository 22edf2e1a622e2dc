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
// hashes run through a bounded queue, the overflow is refused at once. One
// run measures renewals without and then during a flood from 48 clients,
// each on its own address; the per-client request limit is raised here, so
// that the queue, not the limiter, is what holds the flood back.
const ROUNDS = 3;
const PER_ROUND = 3;
const FLOOD_CLIENTS = 48;
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
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  ctx = await openServerContext(dataDir, env, systemClock);
  await ctx.store.holders.insert({
    id: "F1", kind: "person", name: "Flood Test", idType: "resident-id", idHash: "00".repeat(32), idMasked: "1101**********1234",
    phone: null, email: null, organisationId: null, createdAt: Date.now(),
  });
  for (let i = 0; i < 2 * ROUNDS * PER_ROUND + 2; i++) {
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

/** Times of `n` renewals, one after another, as one holder's agent makes them. */
async function renewalTimes(n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await driveRenewal(app, jobs.shift()!);
    times.push(performance.now() - started);
  }
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

test("a flood of bogus operator sign-ins from many clients keeps a renewal within twice its time without the flood", async () => {
  await renewalTimes(2); // warm-up
  // Each client at most 4 sign-ins a second: about 190 a second in all, some thirty times the flood that took renewals to seconds.
  const flood = fork(join(import.meta.dirname, "support", "sign-in-flood-client.mjs"), [String(port), String(FLOOD_CLIENTS), "4", "120"]);
  const report = new Promise<{ statuses: Record<string, number> }>((resolve) => flood.on("message", (m: { statuses?: Record<string, number> }) => { if (m.statuses) resolve(m as { statuses: Record<string, number> }); }));
  const quiet: number[] = [];
  const flooded: number[] = [];
  try {
    // Quiet and flooded rounds alternate, so that load from elsewhere on this machine falls on both sides alike.
    for (let round = 0; round < ROUNDS; round++) {
      quiet.push(...await renewalTimes(PER_ROUND));
      flood.send("flood");
      await new Promise((r) => setTimeout(r, 1000));
      flooded.push(...await renewalTimes(PER_ROUND));
      flood.send("calm");
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    flood.send("stop");
  }
  const { statuses } = await report;
  flood.kill();
  const ratio = median(flooded) / median(quiet);
  process.stdout.write(`renewal median ${median(quiet).toFixed(1)} ms without, ${median(flooded).toFixed(1)} ms during the flood (x${ratio.toFixed(2)}); flood answers ${JSON.stringify(statuses)}\n`);
  // The flood was real, and the queue refused its overflow at once (503 SIGN_IN_BUSY) while hashing some (401).
  assert.ok((statuses["503"] ?? 0) > 100, `the wait list overflowed: ${JSON.stringify(statuses)}`);
  assert.ok((statuses["401"] ?? 0) > 0, `some sign-ins were hashed and refused: ${JSON.stringify(statuses)}`);
  assert.ok(ratio <= 2, `renewal median ${median(flooded).toFixed(1)} ms during the flood, ${median(quiet).toFixed(1)} ms without`);
});
