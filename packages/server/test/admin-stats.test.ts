import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { totpCodeAt } from "../src/admin/operator-credentials.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// The console's aggregates through the real app on a real embedded database:
// expiries per week plus overdue, orders by state, profiles with timelines.
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let token: string;
const clock = fixedClock(new Date("2026-06-01T02:00:00Z"));
const DAY = 86_400_000;
// Start of 2026-06-01 in CST (UTC+8).
const from = Date.parse("2026-05-31T16:00:00Z");

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  const pw = t.write("audrey.password", "audrey reads the audit log\n");
  const op = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", "audrey", "--role", "auditor", "--password-file", pw, "--json"], env);
  assert.equal(op.status, 0, op.stdout + op.stderr);
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  const signIn = await app.inject({
    method: "POST", url: "/api/v1/admin/sign-in",
    payload: { operatorId: "audrey", password: "audrey reads the audit log", totp: totpCodeAt(op.json<{ totpSecret: string }>().totpSecret, clock.now()) },
  });
  assert.equal(signIn.statusCode, 200, signIn.body);
  token = signIn.json<{ token: string }>().token;
  const cert = (notAfter: number, status: "active" | "expired" | "superseded") => ctx.store.certificates.insertImported({
    serial: randomBytes(8).toString("hex").replace(/^0/, "1"), issuerKeyId: "aa11", issuerDn: "CN=Old CA", subjectDn: "CN=H1", sans: [],
    notBefore: from - 1000 * DAY, notAfter, status, revocationReason: null, revokedAt: null, spkiSha256: randomBytes(32).toString("hex"),
    kind: "hardware", tokenSerial: null, holderId: "H1", profileId: "personal", der: Buffer.from([0x30, 0x00]), createdAt: from, updatedAt: from,
  });
  await cert(from + 2 * DAY, "active");
  await cert(from + 3 * DAY, "active");
  await cert(from + 10 * DAY, "active");
  await cert(from + 10 * DAY, "superseded");
  await cert(from - 5 * DAY, "expired");
  await ctx.store.orders.insert({
    id: "O-stats-1", certificateSerial: null, holderId: "H1", profileId: "personal", state: "created", channel: "web", newSerial: null, data: {},
    createdAt: from, updatedAt: from,
  });
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

const get = (url: string, auth = true) =>
  app.inject({ method: "GET", url: `/api/v1/admin${url}`, headers: auth ? { authorization: `Bearer ${token}` } : {} });

test("expiries per week from the start of today (CST), with the overdue ones", async () => {
  const r = await get("/stats/expiries");
  assert.equal(r.statusCode, 200, r.body);
  const j = r.json<{ from: number; weekMs: number; overdue: number; total: number; weeks: { start: number; count: number }[] }>();
  assert.equal(j.from, from);
  assert.equal(j.weeks.length, 52);
  assert.deepEqual(j.weeks.slice(0, 3).map((w) => w.count), [2, 1, 0]);
  assert.equal(j.weeks[1]!.start, from + 7 * DAY);
  assert.equal(j.overdue, 1);
  assert.equal(j.total, 4);
  const shorter = await get("/stats/expiries?weeks=4");
  assert.equal(shorter.json<{ weeks: unknown[] }>().weeks.length, 4);
});

test("orders by state", async () => {
  const r = await get("/stats/orders");
  assert.equal(r.statusCode, 200, r.body);
  assert.equal(r.json<{ byState: Record<string, number> }>().byState.created, 1);
});

test("profiles with their renewal windows as SVG timelines", async () => {
  const r = await get("/profiles");
  assert.equal(r.statusCode, 200, r.body);
  const p = r.json<{ profiles: { id: string; timelineSvg: string; renewal: { channels?: unknown } }[] }>().profiles.find((x) => x.id === "personal");
  assert.ok(p, "the default profile is listed");
  assert.match(p.timelineSvg, /^<svg[\s\S]*<\/svg>\s*$/);
  assert.ok(p.renewal && typeof p.renewal === "object");
});

test("refuses without a token and records the refusal; bad parameters get REQUEST_INVALID", async () => {
  const cases = [
    { name: "no token", res: () => get("/stats/expiries", false), status: 401, code: "SESSION_INVALID" },
    { name: "forged token", res: () => app.inject({ method: "GET", url: "/api/v1/admin/stats/orders", headers: { authorization: "Bearer uks1.forged.x" } }), status: 401, code: "SESSION_INVALID" },
    { name: "weeks out of range", res: () => get("/stats/expiries?weeks=1000"), status: 400, code: "REQUEST_INVALID" },
    { name: "unknown parameter", res: () => get("/stats/expiries?week=3"), status: 400, code: "REQUEST_INVALID" },
  ];
  for (const c of cases) {
    const r = await c.res();
    assert.equal(r.statusCode, c.status, `${c.name}: ${r.body}`);
    assert.equal(r.json<{ code: string }>().code, c.code, c.name);
  }
  await ctx.refusals.flush();
  const audit = await ctx.store.audit.list(1, 1000);
  assert.ok(audit.some((e) => e.action === "admin.refused" && e.subjectId === "GET /api/v1/admin/stats/expiries"));
  assert.ok(audit.some((e) => e.action === "admin.viewed" && e.subjectType === "stats" && e.actor === "operator:audrey"));
});
