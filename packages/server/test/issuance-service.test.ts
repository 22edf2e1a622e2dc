import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { resolve } from "node:path";
import { fixedClock, UkeyError } from "@ukey/policy";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { IssuanceService } from "../src/issuance-service.js";
import { IntentSweeper } from "../src/intent-sweeper.js";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { addHolder, initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let csr: Buffer;
// The CA is made with the real clock by the CLI; the service runs a fixed one a day later.
const start = new Date(Math.ceil(Date.now() / 86_400_000) * 86_400_000 + 8 * 3_600_000);
const clock = fixedClock(start);

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  csr = readFileSync(opensslCsr(t, "k", keyArgs.p256).csr);
});
after(() => t.cleanup());

async function withContext<T>(fn: (ctx: ServerContext) => Promise<T>): Promise<T> {
  const ctx = await openServerContext(dataDir, env, clock);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

test("concurrent requests share group commits and each gets its own durable certificate", async () => {
  await withContext(async (ctx) => {
    let transactions = 0;
    const store = { ...ctx.store, holders: ctx.store.holders, profiles: ctx.store.profiles, transaction: <T>(fn: Parameters<typeof ctx.store.transaction<T>>[0]) => { transactions++; return ctx.store.transaction(fn); } };
    const svc = new IssuanceService({ store, ca: ctx.ca, clock, institution: ctx.config.institution, batchSize: 64 });
    const n = 300;
    const certs = await Promise.all(Array.from({ length: n }, () => svc.issue({ holderId: "H1", profileId: "personal", csr, actor: "test" })));
    assert.equal(new Set(certs.map((c) => c.serial)).size, n);
    // Two transactions (intent, then certificate) per batch, far fewer than per certificate.
    assert.ok(transactions <= 2 * Math.ceil(n / 64) + 4, `${transactions} transactions`);
    for (const c of certs.slice(0, 20)) {
      const stored = await ctx.store.certificates.get(c.serial);
      assert.equal(stored?.status, "active");
      assert.deepEqual(stored?.der, c.der);
      assert.equal(stored?.notAfter, start.getTime() + 1825 * 86_400_000);
    }
    const audit = await ctx.store.audit.list(0, 10_000);
    assert.equal(audit.filter((e) => e.action === "certificate.issued" && certs.some((c) => c.serial === e.subjectId)).length, n);
  });
});

test("a signature that fails leaves the intent abandoned and the caller an error", async () => {
  await withContext(async (ctx) => {
    const failing = Object.create(ctx.ca) as typeof ctx.ca;
    failing.signTbs = async () => { throw new Error("token pulled"); };
    const svc = new IssuanceService({ store: ctx.store, ca: failing, clock, institution: ctx.config.institution });
    await assert.rejects(svc.issue({ holderId: "H1", profileId: "personal", csr, actor: "test" }), (e: unknown) => e instanceof UkeyError && e.code === "HSM_OPERATION_FAILED");
    const abandoned = await ctx.store.certificates.search({ status: "abandoned" });
    assert.equal(abandoned.length, 1);
    assert.equal(abandoned[0]!.der, null);
    assert.equal((await ctx.store.certificates.search({ status: "pending" })).length, 0);
  });
});

test("validity never runs past the issuing CA", async () => {
  await withContext(async (ctx) => {
    const c = await ctx.issuance.issue({ holderId: "H1", profileId: "personal", csr, actor: "test", notAfter: new Date("2099-01-01T00:00:00Z") });
    assert.equal(c.notAfter, ctx.ca.issuing.notAfter.getTime());
  });
});

/**
 * Issues from a child process, SIGKILLs it after 200 certificates were
 * reported, and opens the data directory ten minutes later (the same
 * database the child used).
 */
async function killDuringIssuance(dir: string, childEnv: Record<string, string>): Promise<void> {
  const loop = resolve(import.meta.dirname, "support/issue-loop.ts");
  const child = spawn(process.execPath, ["--import", "tsx", loop, dir, childEnv.UKEY_CA_PASSPHRASE_FILE!, t.path("k.csr.pem"), start.toISOString()], {
    stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...childEnv },
  });
  const reported: string[] = [];
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((done) => {
    lines.on("line", (l) => {
      reported.push(l.trim());
      if (reported.length === 200) { child.kill("SIGKILL"); done(); }
    });
  });
  await new Promise((r) => child.once("exit", r));
  assert.ok(reported.length >= 200);
  const later = fixedClock(new Date(start.getTime() + 10 * 60_000));
  const ctx = await openServerContext(dir, childEnv, later);
  try {
    for (const serial of reported) {
      const c = await ctx.store.certificates.get(serial);
      assert.equal(c?.status, "active", `reported ${serial} is ${c?.status}`);
      assert.ok(c?.der && c.der.length > 100);
    }
    assert.equal((await ctx.store.certificates.search({ status: "pending" })).length, 0, "stale intents are closed at open");
    for (const c of await ctx.store.certificates.search({ status: "active", limit: 100_000 })) assert.ok(c.der, `active ${c.serial} has its DER`);
    // Each intent the crash left is closed with its own audit entry.
    const abandoned = (await ctx.store.certificates.search({ status: "abandoned", limit: 100_000 })).map((c) => c.serial);
    const audited = new Set<string>();
    for (let from = 1; ; from += 1000) {
      const page = await ctx.store.audit.list(from, 1000);
      for (const e of page) if (e.action === "certificate.abandoned") audited.add(e.subjectId);
      if (page.length < 1000) break;
    }
    for (const serial of abandoned) assert.ok(audited.has(serial), `abandoned ${serial} is audited`);
    assert.equal((await ctx.store.audit.verify()).ok, true);
  } finally {
    await ctx.close();
  }
}

test("kill -9 during issuance: every certificate reported issued is stored, and no intent stays pending", async () => {
  await killDuringIssuance(dataDir, env);
});

test("kill -9 during issuance on PostgreSQL: every certificate reported issued is stored, and no intent stays pending", async () => {
  const pg = await createTestDatabase();
  try {
    const pgEnv = { ...env, UKEY_DATABASE_URL: pg.url };
    const dir = t.path("pgdata");
    const init = runUkeyServer(["init", "--data-dir", dir, "--json"], pgEnv);
    assert.equal(init.status, 0, init.stdout + init.stderr);
    assert.equal(addHolder(t, dir, pgEnv, "H1").status, 0);
    await killDuringIssuance(dir, pgEnv);
  } finally {
    await pg.drop();
  }
});

test("opening the data directory abandons intents older than abandonAfterSeconds, each with an audit entry", async () => {
  const orphan = {
    serial: "7e57ab", issuerKeyId: "k", issuerDn: "CN=Issuing", subjectDn: "CN=H1", sans: [], notBefore: start.getTime(), notAfter: start.getTime() + 1e9,
    spkiSha256: "s".repeat(64), kind: "hardware" as const, tokenSerial: null, holderId: "H1", profileId: "personal",
    createdAt: start.getTime() - 301_000, updatedAt: start.getTime() - 301_000,
  };
  const young = { ...orphan, serial: "7e57ac", createdAt: start.getTime() - 299_000 };
  await withContext(async (ctx) => {
    await ctx.store.certificates.insertIntent(orphan);
    await ctx.store.certificates.insertIntent(young);
  });
  await withContext(async (ctx) => {
    assert.equal((await ctx.store.certificates.get(orphan.serial))?.status, "abandoned");
    assert.equal((await ctx.store.certificates.get(young.serial))?.status, "pending");
    const entries = (await ctx.store.audit.list(1, 10_000)).filter((e) => e.subjectId === orphan.serial);
    assert.deepEqual(entries.map((e) => [e.action, e.actor]), [["certificate.abandoned", "system"]]);
    await ctx.store.certificates.setStatus(young.serial, "abandoned", start.getTime());
  });
});

test("a signature that comes after a sweep abandoned its intent fails that request alone, and issuance goes on", async () => {
  await withContext(async (ctx) => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => { release = r; });
    const slow = Object.create(ctx.ca) as typeof ctx.ca;
    let first = true;
    slow.signTbs = async function (this: typeof ctx.ca, tbs: Buffer) {
      if (first) { first = false; await held; }
      return (Object.getPrototypeOf(slow) as typeof ctx.ca).signTbs.call(this, tbs);
    };
    const svc = new IssuanceService({ store: ctx.store, ca: slow, clock, institution: ctx.config.institution });
    const late = svc.issue({ holderId: "H1", profileId: "personal", csr, actor: "test" });
    let pending: string | undefined;
    while (!pending) {
      pending = (await ctx.store.certificates.search({ status: "pending" }))[0]?.serial;
      await new Promise((r) => setImmediate(r));
    }
    // The next request waits in the queue: its intent goes into the round that completes the late one.
    const queued = svc.issue({ holderId: "H1", profileId: "personal", csr, actor: "test" });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    const sweeper = new IntentSweeper({ store: ctx.store, clock: fixedClock(new Date(start.getTime() + 301_000)), settings: { abandonAfterSeconds: 300, sweepIntervalSeconds: 60 } });
    assert.deepEqual((await sweeper.runOnce()).map((c) => c.serial), [pending]);
    release();
    await assert.rejects(late, (e: unknown) => e instanceof UkeyError && e.code === "CERT_INTENT_NOT_PENDING");
    const next = await queued;
    assert.equal((await ctx.store.certificates.get(next.serial))?.status, "active", "the request behind it is issued");
    const stored = await ctx.store.certificates.get(pending);
    assert.equal(stored?.status, "abandoned");
    assert.equal(stored?.der, null, "the late certificate was neither stored nor delivered");
    const entries = (await ctx.store.audit.list(1, 10_000)).filter((e) => e.subjectId === pending).map((e) => e.action);
    assert.deepEqual(entries, ["certificate.abandoned"]);
  });
});
