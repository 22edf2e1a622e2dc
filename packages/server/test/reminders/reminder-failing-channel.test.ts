import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { policyDay } from "@ukey/policy";
import { buildApp } from "../../src/app.js";
import { totpCodeAt } from "../../src/admin/operator-credentials.js";
import { runUkeyServer } from "../support/fixtures.js";
import { certificate, holder, nineAm, reminderWorld, type ReminderWorld } from "./support.js";

// A failing SMS gateway: a local HTTP server answering 500 for some phones.
// The reminder is tried again with a growing wait (the channel that worked
// is not sent twice), then marked failed; the console, the audit log and
// the metrics report it, and nothing is lost.
const E = policyDay(new Date("2027-06-01T00:00:00Z"));
let w: ReminderWorld;
let app: FastifyInstance;
let gateway: Server;
const requests: Array<{ to: string; status: number }> = [];
/** Phones the gateway refuses with 500, and how many more times. */
const refuse = new Map<string, number>();
const totpSecrets: Record<string, string> = {};
const passwords = { audrey: "audrey reads the audit log", olga: "olga's long passphrase 42" } as const;

async function operatorToken(id: keyof typeof passwords): Promise<string> {
  w.clock.advance(30_000);
  const r = await app.inject({ method: "POST", url: "/api/v1/admin/sign-in", payload: { operatorId: id, password: passwords[id], totp: totpCodeAt(totpSecrets[id]!, w.clock.now()) } });
  assert.equal(r.statusCode, 200, r.body);
  return r.json<{ token: string }>().token;
}

before(async () => {
  gateway = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const { to } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { to: string };
      const left = refuse.get(to) ?? 0;
      if (left > 0) refuse.set(to, left - 1);
      const status = left > 0 ? 500 : 200;
      requests.push({ to, status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => gateway.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/sms`;
  w = await reminderWorld({
    at: nineAm(E - 8),
    config: (c) => {
      c.delivery = { sms: { type: "webhook", url, secretFile: "secrets/sms-webhook.key", attempts: 1, retryDelayMs: 0 } };
      c.reminders = { maxAttempts: 3, retryBaseSeconds: 60 };
    },
    beforeOpen: (dataDir, env) => {
      mkdirSync(`${dataDir}/secrets`, { recursive: true });
      writeFileSync(`${dataDir}/secrets/sms-webhook.key`, "gateway shared secret\n", { mode: 0o600 });
      for (const [id, role] of [["audrey", "auditor"], ["olga", "operator"]] as const) {
        const pw = `${dataDir}/../${id}.password`;
        writeFileSync(pw, `${passwords[id]}\n`, { mode: 0o600 });
        const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", id, "--role", role, "--password-file", pw, "--json"], env);
        assert.equal(r.status, 0, r.stdout + r.stderr);
        totpSecrets[id] = r.json<{ totpSecret: string }>().totpSecret;
      }
    },
  });
  app = await buildApp(w.ctx);
});
after(async () => {
  await app?.close();
  await w?.close();
  await new Promise<void>((r) => gateway?.close(() => r()));
});

test("a failing channel is retried with backoff, the working one is not resent, and after the last attempt the reminder is failed and reported", async () => {
  const { ctx, clock } = w;
  const flaky = await holder(ctx.store, { phone: "15900000011", email: "flaky@example.cn" });
  const dead = await holder(ctx.store, { phone: "15900000012" });
  refuse.set("15900000011", 2);
  refuse.set("15900000012", 1000);
  const c1 = await certificate(ctx.store, flaky.id, E);
  const c2 = await certificate(ctx.store, dead.id, E);
  const state = async () => Promise.all([c1, c2].map(async (c) => {
    const r = (await ctx.store.reminders.list({ limit: 1000 })).find((x) => x.certificateSerial === c.serial)!;
    return [r.status, r.attempts, r.delivered.join(",")];
  }));
  clock.set(nineAm(E - 7));
  const t0 = clock.now().getTime();
  const first = await ctx.reminders.runOnce();
  assert.equal(first.send.retrying, 2);
  assert.deepEqual(await state(), [["pending", 1, "email"], ["pending", 1, ""]]);
  const r1 = (await ctx.store.reminders.list({ limit: 1000 })).find((x) => x.certificateSerial === c1.serial)!;
  assert.equal(r1.nextAttemptAt, t0 + 60_000, "first wait: retryBaseSeconds");
  assert.match(r1.lastError ?? "", /^sms: webhook: HTTP 500/);

  clock.advance(30_000);
  assert.equal((await ctx.reminders.runOnce()).send.claimed, 0, "not due before its wait");
  clock.set(new Date(t0 + 60_000));
  await ctx.reminders.runOnce();
  assert.deepEqual(await state(), [["pending", 2, "email"], ["pending", 2, ""]]);
  const r2 = (await ctx.store.reminders.list({ limit: 1000 })).find((x) => x.certificateSerial === c1.serial)!;
  assert.equal(r2.nextAttemptAt, t0 + 60_000 + 120_000, "the wait doubles");

  clock.set(new Date(t0 + 180_000));
  const third = await ctx.reminders.runOnce();
  assert.deepEqual([third.send.sent, third.send.failed], [1, 1]);
  assert.deepEqual(await state(), [["sent", 3, "email,sms"], ["failed", 3, ""]]);

  // The flaky gateway got three tries for each; e-mail went once.
  assert.deepEqual(requests.filter((r) => r.to === "15900000011").map((r) => r.status), [500, 500, 200]);
  assert.deepEqual(requests.filter((r) => r.to === "15900000012").map((r) => r.status), [500, 500, 500]);
  assert.equal(w.outbox().filter((l) => l.holderId === flaky.id && l.channel === "email").length, 1);
  // Nothing lost: every attempt is in the outbox table, and the failed reminder stays listed.
  const messages = await ctx.store.outbox.list({ limit: 1000 });
  assert.equal(messages.filter((m) => m.purpose === "reminder" && m.channel === "sms" && m.status === "failed").length, 5);
  const audit = await ctx.store.audit.list(1, 100_000);
  assert.ok(audit.some((a) => a.action === "reminder.failed" && a.subjectId === c2.serial));
  assert.ok(audit.some((a) => a.action === "reminder.sent" && a.subjectId === c1.serial));

  // The operator console lists it.
  const token = await operatorToken("audrey");
  const failed = await app.inject({ method: "GET", url: "/api/v1/admin/reminders?status=failed", headers: { authorization: `Bearer ${token}` } });
  assert.equal(failed.statusCode, 200, failed.body);
  const listed = failed.json<{ reminders: Array<{ certificateSerial: string; attempts: number; lastError: string; status: string }> }>().reminders;
  assert.deepEqual(listed.map((r) => [r.certificateSerial, r.status, r.attempts]), [[c2.serial, "failed", 3]]);
  assert.match(listed[0]!.lastError, /sms: webhook: HTTP 500/);
  assert.equal((await app.inject({ method: "GET", url: "/api/v1/admin/reminders?status=failed" })).statusCode, 401);
  assert.equal((await app.inject({ method: "GET", url: "/api/v1/admin/reminders?status=lost", headers: { authorization: `Bearer ${token}` } })).json<{ code: string }>().code, "REQUEST_INVALID");

  // And so do the metrics.
  const metrics = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(metrics.statusCode, 200);
  assert.match(String(metrics.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  const values = parseMetrics(metrics.body);
  assert.equal(values.get('ukey_reminders{status="failed"}'), 1);
  assert.equal(values.get('ukey_reminders{status="sent"}'), 1);
  assert.equal(values.get('ukey_reminder_messages_total{channel="sms",outcome="retry"}'), 4);
  assert.equal(values.get('ukey_reminder_messages_total{channel="sms",outcome="sent"}'), 1);
  assert.equal(values.get('ukey_reminder_messages_total{channel="sms",outcome="failed"}'), 1);
  assert.equal(values.get('ukey_reminder_messages_total{channel="email",outcome="sent"}'), 1);
});

test("metrics: certificates by status and by time to expiry, counted in the database, and the process's own", async () => {
  const { ctx, clock } = w;
  const now = clock.now().getTime();
  const h = await holder(ctx.store);
  const day = 86_400_000;
  const base = parseMetrics((await app.inject({ method: "GET", url: "/metrics" })).body);
  for (const [offset, status] of [[-3 * day, "active"], [12 * 3_600_000, "active"], [3 * day, "active"], [20 * day, "active"], [60 * day, "active"], [400 * day, "active"], [10 * day, "revoked"]] as const) {
    await ctx.store.certificates.insertImported({
      serial: `${Math.random().toString(16).slice(2)}aa`, issuerKeyId: "aa11", issuerDn: "CN=Test CA", subjectDn: "CN=m", sans: [], notBefore: 0, notAfter: now + offset,
      status, revocationReason: status === "revoked" ? "keyCompromise" : null, revokedAt: status === "revoked" ? now : null, spkiSha256: "00", kind: "file",
      tokenSerial: null, holderId: h.id, profileId: "personal", der: null, createdAt: now, updatedAt: now,
    });
  }
  // Cached for 10 s: the same figures until then.
  const cached = parseMetrics((await app.inject({ method: "GET", url: "/metrics" })).body);
  assert.equal(cached.get('ukey_certificates{status="active"}'), base.get('ukey_certificates{status="active"}'));
  clock.advance(10_001);
  const m = parseMetrics((await app.inject({ method: "GET", url: "/metrics" })).body);
  const d = (k: string) => (m.get(k) ?? 0) - (base.get(k) ?? 0);
  assert.equal(d('ukey_certificates{status="active"}'), 6);
  assert.equal(d('ukey_certificates{status="revoked"}'), 1);
  assert.deepEqual(["expired", "1d", "7d", "30d", "90d", "later"].map((b) => d(`ukey_certificates_expiring{within="${b}"}`)), [1, 1, 1, 1, 1, 1]);
  assert.ok((m.get("process_resident_memory_bytes") ?? 0) > 0);
  assert.ok(m.has("nodejs_eventloop_lag_seconds"));
});

/** The Prometheus text format, parsed: `name{labels}` → value; comments dropped. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

test("operators read and change a holder's reminder channels (operator role to change), audited", async () => {
  const { ctx } = w;
  const h = await holder(ctx.store, { phone: "15900000013", email: "h13@example.cn" });
  const auditor = await operatorToken("audrey");
  const operator = await operatorToken("olga");
  const url = `/api/v1/admin/holders/${h.id}/preferences`;
  const read = await app.inject({ method: "GET", url, headers: { authorization: `Bearer ${auditor}` } });
  assert.deepEqual(read.json(), { holderId: h.id, sms: true, email: true, updatedAt: null });
  const refused = await app.inject({ method: "PUT", url, payload: { sms: false, email: true }, headers: { authorization: `Bearer ${auditor}` } });
  assert.deepEqual([refused.statusCode, refused.json<{ code: string }>().code], [403, "ROLE_FORBIDDEN"]);
  const changed = await app.inject({ method: "PUT", url, payload: { sms: false, email: true }, headers: { authorization: `Bearer ${operator}` } });
  assert.equal(changed.statusCode, 200, changed.body);
  assert.deepEqual((await ctx.store.holderPreferences.get(h.id)).smsReminders, false);
  const unknown = await app.inject({ method: "GET", url: "/api/v1/admin/holders/nobody/preferences", headers: { authorization: `Bearer ${auditor}` } });
  assert.deepEqual([unknown.statusCode, unknown.json<{ code: string }>().code], [404, "HOLDER_NOT_FOUND"]);
  await ctx.refusals.flush();
  const audit = await ctx.store.audit.list(1, 100_000);
  assert.ok(audit.some((a) => a.action === "holder.preferences-changed" && a.actor === "operator:olga" && a.subjectId === h.id));
  assert.ok(audit.some((a) => a.action === "admin.refused" && a.actor === "operator:audrey"));
});
