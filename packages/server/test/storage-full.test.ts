import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { sqliteFile } from "@ukey/store";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { mountSmallVolume, type SmallVolume } from "../../store/test/support/small-volume.js";
import { buildApp } from "../src/app.js";
import { totpCodeAt } from "../src/admin/operator-credentials.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// The embedded database on a real small filesystem (a tmpfs the test
// mounts) that fills up under writes through the real app: refusals are
// 503 STORAGE_FULL, logged as a count per interval; readiness says so while
// liveness does not; once space is freed the server recovers by itself, and
// nothing it reported written is lost.
let t: TempDir;
let volume: SmallVolume;
let dataDir: string;
let env: Record<string, string>;
const clock = fixedClock(new Date("2026-06-01T02:00:00Z"));
const password = "a long operator password 42";
let totpSecret: string;

before(() => {
  t = tempDir();
  volume = mountSmallVolume(16);
  dataDir = `${volume.dir}/data`;
  env = { UKEY_CA_PASSPHRASE_FILE: t.write("ca-passphrase", "correct horse battery staple\n") };
  const init = runUkeyServer(["init", "--data-dir", dataDir, "--json"], env);
  assert.equal(init.status, 0, init.stdout + init.stderr);
  const op = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", "olga", "--role", "operator", "--password-file", t.write("pw", password), "--json"], env);
  assert.equal(op.status, 0, op.stdout + op.stderr);
  totpSecret = op.json<{ totpSecret: string }>().totpSecret;
  // One summary line a second, so that a few seconds of refusals show the rate limit.
  const config = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")) as Record<string, unknown>;
  config.storage = { failureLogSeconds: 1 };
  // Thousands of admin requests from one address fill the volume: the per-address request limit is not under test.
  config.rateLimits = { rules: { adminApi: { max: 1_000_000 } } };
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(config, null, 2));
});
after(() => {
  volume?.unmount();
  t?.cleanup();
});

async function signIn(app: FastifyInstance): Promise<string> {
  clock.advance(30_000);
  const r = await app.inject({ method: "POST", url: "/api/v1/admin/sign-in", payload: { operatorId: "olga", password, totp: totpCodeAt(totpSecret, clock.now()) } });
  assert.equal(r.statusCode, 200, r.body);
  return r.json<{ token: string }>().token;
}

test("a full volume: 503 STORAGE_FULL, a log line per second, /readyz 503 and /healthz 200; freed space: recovery without a restart, nothing lost", async () => {
  const ctx: ServerContext = await openServerContext(dataDir, env, clock);
  const log: string[] = [];
  const app = await buildApp(ctx, { logStream: { write: (line) => { log.push(line); } } });
  const written: string[] = [];
  try {
    const token = await signIn(app);
    const addHolder = (id: string) => app.inject({
      method: "POST", url: "/api/v1/admin/holders", headers: { authorization: `Bearer ${token}` },
      payload: { id, name: `Holder ${id} `.padEnd(200, "x"), idType: "resident-id", idNumber: "110101199003071234" },
    });
    const file = sqliteFile(dataDir);
    const filler = volume.fill("filler", 2 * 2 ** 20);

    const refused: Array<{ status: number; code: string }> = [];
    let maxWal = 0;
    let firstRefusal: number | undefined;
    // Until 300 refusals and at least 3 s of them, so that several log intervals pass.
    for (let round = 0; (refused.length < 300 || performance.now() - (firstRefusal ?? Infinity) < 3000) && round < 20_000; round++) {
      const ids = Array.from({ length: 8 }, (_, i) => `H${round}-${i}`);
      const answers = await Promise.all(ids.map(addHolder));
      answers.forEach((a, i) => {
        if (a.statusCode === 201) written.push(ids[i]!);
        else refused.push({ status: a.statusCode, code: a.json<{ code: string }>().code });
      });
      if (refused.length) firstRefusal ??= performance.now();
      maxWal = Math.max(maxWal, statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    }
    const seconds = (performance.now() - firstRefusal!) / 1000;
    assert.ok(written.length > 200, `${written.length} holders written before the volume filled`);
    assert.ok(refused.length >= 300, "the volume filled up");
    assert.deepEqual([...new Set(refused.map((r) => `${r.status} ${r.code}`))], ["503 STORAGE_FULL"]);
    assert.ok(maxWal <= 2 ** 20, `checkpoints kept the WAL small (it grew to ${maxWal} bytes)`);

    const ready = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 503);
    assert.equal(ready.json<{ code: string }>().code, "STORAGE_FULL");
    const live = await app.inject({ method: "GET", url: "/healthz" });
    assert.equal(live.statusCode, 200);

    const storageLines = log.filter((l) => l.includes("STORAGE_FULL"));
    assert.ok(storageLines.length >= 2, `the failure is logged: ${storageLines.length} lines`);
    assert.ok(storageLines.length <= Math.ceil(seconds) + 3, `${storageLines.length} lines for ${seconds.toFixed(1)} s of refusals: one per second at most`);
    assert.ok(storageLines.every((l) => !l.includes('"stack"')), "no stack per refusal");
    assert.ok(log.some((l) => /"refused":\d+/.test(l)), "a summary line counts the refusals");

    rmSync(filler);
    const back = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(back.statusCode, 200, back.body);
    assert.equal(back.json<{ status: string }>().status, "ready");
    for (let i = 0; i < 20; i++) {
      const a = await addHolder(`after-${i}`);
      assert.equal(a.statusCode, 201, a.body);
      written.push(`after-${i}`);
    }
  } finally {
    await app.close();
    await ctx.close();
  }

  const reopened = await openServerContext(dataDir, env, clock);
  try {
    const missing = [];
    for (const id of written) if (!(await reopened.store.holders.get(id))) missing.push(id);
    assert.deepEqual(missing, [], "every holder reported created is stored");
    const audit = await reopened.store.audit.verify();
    assert.equal(audit.ok, true, JSON.stringify(audit));
    const created = (await reopened.store.audit.list(1, 1000)).length;
    assert.ok(created > 0);
  } finally {
    await reopened.close();
  }
});

test("the OpenAPI document describes /healthz and /readyz", async () => {
  const ctx = await openServerContext(dataDir, env, clock);
  const app = await buildApp(ctx);
  try {
    const doc = (await app.inject({ method: "GET", url: "/api/v1/openapi.json" })).json<{ paths: Record<string, { get?: { tags?: string[]; responses?: Record<string, unknown> } }> }>();
    assert.deepEqual(doc.paths["/healthz"]?.get?.tags, ["health"]);
    assert.deepEqual(doc.paths["/readyz"]?.get?.tags, ["health"]);
    assert.ok(doc.paths["/readyz"]?.get?.responses?.["503"], "readiness documents its 503");
  } finally {
    await app.close();
    await ctx.close();
  }
});

test("PostgreSQL gone: /readyz 503 DATABASE_UNAVAILABLE while /healthz stays 200", async () => {
  const pg = await createTestDatabase();
  const dir = t.path("pgdata");
  const pgEnv = { ...env, UKEY_DATABASE_URL: pg.url };
  const init = runUkeyServer(["init", "--data-dir", dir, "--json"], pgEnv);
  assert.equal(init.status, 0, init.stdout + init.stderr);
  const ctx = await openServerContext(dir, pgEnv, clock);
  const app = await buildApp(ctx, { logStream: { write: () => undefined } });
  try {
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).json<{ engine: string }>().engine, "postgres");
    await pg.drop();
    const ready = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 503, ready.body);
    assert.equal(ready.json<{ code: string }>().code, "DATABASE_UNAVAILABLE");
    // The driver's message names the database's host, port, user and database: the answer names the log line instead.
    const { hostname, port, pathname } = new URL(pg.url);
    for (const inside of [hostname, port, pathname.slice(1), "ECONNREFUSED", "does not exist"].filter(Boolean)) {
      assert.ok(!ready.body.includes(inside), `the answer does not say ${inside}: ${ready.body}`);
    }
    assert.match(ready.json<{ params: { reason: string } }>().params.reason, /^log req-\w+$/);
    assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
  } finally {
    await app.close();
    await ctx.close().catch(() => undefined);
    await pg.drop();
  }
});
