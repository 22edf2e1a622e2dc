import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { policyDay } from "@ukey/policy";
import type { ReminderRecord } from "@ukey/store";
import { scanReminders } from "../../src/reminders/reminder-scan.js";
import { ReminderScheduler } from "../../src/reminders/reminder-scheduler.js";
import type { ServerContext } from "../../src/server-context.js";
import { certificate, holder, nineAm, reminderWorld, type ReminderWorld } from "./support.js";

// The scheduler on a real embedded database with a fixed clock: one
// reminder per certificate and threshold, across days, restarts, renewals,
// opt-outs and organisations. Messages go to the demo outbox file.
const START = new Date("2027-01-01T01:00:00Z");
const E0 = policyDay(START) + 100;
let w: ReminderWorld;
let ctx: ServerContext;

before(async () => {
  w = await reminderWorld({ at: nineAm(E0 - 100) });
  ctx = w.ctx;
});
after(async () => {
  await w?.close();
});

const remindersOf = async (serial: string): Promise<ReminderRecord[]> =>
  (await ctx.store.reminders.list({ limit: 1000 })).filter((r) => r.certificateSerial === serial).sort((a, b) => b.threshold - a.threshold);
const linesTo = (holderId: string) => w.outbox().filter((l) => l.holderId === holderId && l.purpose === "reminder");
const at = (day: number) => w.clock.set(nineAm(day));

describe("reminder thresholds with a fixed clock", () => {
  test("walked day by day from 100 days before expiry to 40 after: exactly one reminder per threshold, on its day", async () => {
    const h = await holder(ctx.store);
    const c = await certificate(ctx.store, h.id, E0);
    for (let d = E0 - 100; d <= E0 + 40; d++) {
      at(d);
      await ctx.reminders.runOnce();
      // A second round the same day finds nothing new.
      if (d % 10 === 0) assert.equal((await ctx.reminders.runOnce()).scan.enqueued, 0);
    }
    const rs = await remindersOf(c.serial);
    assert.deepEqual(rs.map((r) => r.threshold), [90, 30, 7, 1, 0, -30]);
    assert.deepEqual(rs.map((r) => policyDay(r.createdAt)), [E0 - 90, E0 - 30, E0 - 7, E0 - 1, E0, E0 + 30], "each on the day it is reached");
    assert.ok(rs.every((r) => r.status === "sent" && r.delivered.join() === "sms" && r.attempts === 1));
    const texts = linesTo(h.id).map((l) => l.text);
    assert.equal(texts.length, 6);
    const date = new Date(c.notAfter + 8 * 3_600_000).toISOString().slice(0, 10);
    assert.match(texts[0]!, new RegExp(`将于 ${date} 到期，还剩 90 天`));
    assert.match(texts[0]!, new RegExp(`expires on ${date}, in 90 days`));
    assert.match(texts[0]!, /在线更新将于 .* 开放|现在可以通过网页在线更新/);
    assert.match(texts[0]!, /http:\/\/localhost:8080\/#\/renew/);
    assert.match(texts[1]!, /还剩 30 天.*现在可以通过网页在线更新/s);
    assert.match(texts[3]!, /还剩 1 天[\s\S]*in 1 day\b/);
    assert.match(texts[4]!, new RegExp(`今天（${date}）到期[\\s\\S]*expires today, ${date}`));
    assert.match(texts[5]!, /已过期 30 天[\s\S]*30 days ago/);
    assert.ok(w.outbox().filter((l) => l.holderId === h.id).every((l) => l.to === "15900000005" && l.channel === "sms"));
  });

  test("after a gap, only the last threshold reached is sent, not the ones it passed", async () => {
    const E1 = E0 + 300;
    const h = await holder(ctx.store);
    const c = await certificate(ctx.store, h.id, E1);
    at(E1 - 100);
    await ctx.reminders.runOnce();
    at(E1 - 5);
    await ctx.reminders.runOnce();
    assert.deepEqual((await remindersOf(c.serial)).map((r) => r.threshold), [7]);
    assert.equal(linesTo(h.id).length, 1);
  });

  test("restart between scan and send: the next process sends what the previous one enqueued, once", async () => {
    const E2 = E0 + 400;
    const h = await holder(ctx.store);
    const c = await certificate(ctx.store, h.id, E2);
    at(E2 - 30);
    const scanned = await scanReminders({ store: ctx.store }, w.clock.now().getTime());
    assert.equal(scanned.enqueued, 1);
    assert.equal((await remindersOf(c.serial))[0]?.status, "pending");
    await ctx.close();
    ctx = await w.reopen();
    const sent = await ctx.reminders.runOnce();
    assert.equal(sent.send.sent, 1);
    await ctx.close();
    ctx = await w.reopen();
    w.clock.advance(3_600_000);
    assert.deepEqual((await ctx.reminders.runOnce()).send.claimed, 0);
    assert.equal(linesTo(h.id).length, 1);
    assert.equal((await remindersOf(c.serial))[0]?.status, "sent");
  });

  test("a renewed, revoked or superseded certificate gets none, also when renewed between scan and send", async () => {
    const E3 = E0 + 500;
    const h = await holder(ctx.store);
    const renewedByNewer = await certificate(ctx.store, h.id, E3);
    await certificate(ctx.store, h.id, E3 + 1825);
    const h2 = await holder(ctx.store);
    const revoked = await certificate(ctx.store, h2.id, E3, { status: "revoked", revokedAt: 1, revocationReason: "keyCompromise" });
    const h3 = await holder(ctx.store);
    const superseded = await certificate(ctx.store, h3.id, E3, { status: "superseded", revokedAt: 1, revocationReason: "superseded" });
    const h4 = await holder(ctx.store);
    const renewedByOrder = await certificate(ctx.store, h4.id, E3);
    await ctx.store.orders.insert({
      id: `order-${renewedByOrder.serial}`, certificateSerial: renewedByOrder.serial, holderId: h4.id, profileId: "personal", state: "completed",
      channel: "web", newSerial: null, data: {}, createdAt: 0, updatedAt: 0,
    });
    const h5 = await holder(ctx.store);
    const late = await certificate(ctx.store, h5.id, E3);
    at(E3 - 30);
    await scanReminders({ store: ctx.store }, w.clock.now().getTime());
    for (const c of [renewedByNewer, revoked, superseded, renewedByOrder]) assert.deepEqual(await remindersOf(c.serial), [], c.serial);
    assert.equal((await remindersOf(late.serial)).length, 1);
    // Renewed after the scan: the sender cancels it instead of sending.
    await certificate(ctx.store, h5.id, E3 + 1825);
    const r = await ctx.reminders.runOnce();
    assert.equal(r.send.cancelled, 1);
    assert.equal((await remindersOf(late.serial))[0]?.status, "cancelled");
    for (const x of [h, h2, h3, h4, h5]) assert.deepEqual(linesTo(x.id), []);
    const audit = await ctx.store.audit.list(1, 100_000);
    assert.ok(audit.some((a) => a.action === "reminder.cancelled" && a.subjectId === late.serial));
  });

  test("opt-out: a channel turned off is skipped; with none left the reminder is in the bell only", async () => {
    const E4 = E0 + 600;
    const both = await holder(ctx.store, { phone: "15900000006", email: "both@example.cn" });
    const none = await holder(ctx.store, { phone: "15900000007", email: "none@example.cn" });
    await ctx.store.holderPreferences.put({ holderId: both.id, smsReminders: false, emailReminders: true }, 0);
    await ctx.store.holderPreferences.put({ holderId: none.id, smsReminders: false, emailReminders: false }, 0);
    const c1 = await certificate(ctx.store, both.id, E4);
    const c2 = await certificate(ctx.store, none.id, E4);
    at(E4 - 7);
    await ctx.reminders.runOnce();
    assert.deepEqual(linesTo(both.id).map((l) => [l.channel, l.to]), [["email", "both@example.cn"]]);
    assert.deepEqual(linesTo(none.id), []);
    assert.deepEqual((await remindersOf(c1.serial)).map((r) => [r.status, r.delivered]), [["sent", ["email"]]]);
    assert.deepEqual((await remindersOf(c2.serial)).map((r) => [r.status, r.delivered]), [["sent", ["bell"]]]);
  });

  test("an organisation's contact gets one digest for all its and its members' certificates, the members none", async () => {
    const E5 = E0 + 700;
    const org = await holder(ctx.store, { kind: "organisation", name: "示例证券有限公司", phone: null, email: "pki@org.example.cn" });
    const m1 = await holder(ctx.store, { organisationId: org.id, phone: "15900000008" });
    const m2 = await holder(ctx.store, { organisationId: org.id, phone: "15900000009" });
    const certs = [
      await certificate(ctx.store, m1.id, E5), await certificate(ctx.store, m1.id, E5, { profileId: "personal-2" }),
      await certificate(ctx.store, m2.id, E5), await certificate(ctx.store, org.id, E5),
    ];
    // personal-2 is not a configured profile: the scan reaches only configured ones.
    at(E5 - 30);
    await ctx.reminders.runOnce();
    const digest = linesTo(org.id);
    assert.equal(digest.length, 1);
    assert.equal(digest[0]!.to, "pki@org.example.cn");
    assert.match(digest[0]!.text, /示例证券有限公司：有 3 张证书需要更新/);
    assert.match(digest[0]!.text, /3 certificates to renew/);
    assert.match(digest[0]!.text, /#\/org/);
    for (const c of [certs[0]!, certs[2]!, certs[3]!]) assert.ok(digest[0]!.text.includes(c.serial.slice(-6).toUpperCase()), c.serial);
    assert.deepEqual(linesTo(m1.id), []);
    assert.deepEqual(linesTo(m2.id), []);
    for (const c of [certs[0]!, certs[2]!, certs[3]!]) assert.equal((await remindersOf(c.serial))[0]?.recipientId, org.id);
  });

  test("members of an organisation that is not on record are each told of their own certificate only", async () => {
    const E7 = E0 + 750;
    const a = await holder(ctx.store, { organisationId: "ORG-NOT-ON-RECORD", phone: "15900000031" });
    const b = await holder(ctx.store, { organisationId: "ORG-NOT-ON-RECORD", phone: "15900000032" });
    const ca = await certificate(ctx.store, a.id, E7);
    const cb = await certificate(ctx.store, b.id, E7);
    at(E7 - 7);
    await ctx.reminders.runOnce();
    for (const [h, mine, theirs] of [[a, ca, cb], [b, cb, ca]] as const) {
      const got = linesTo(h.id);
      assert.equal(got.length, 1, h.id);
      assert.ok(got[0]!.text.includes(mine.serial.slice(-6).toUpperCase()));
      assert.ok(!got[0]!.text.includes(theirs.serial.slice(-6).toUpperCase()));
    }
  });

  test("started, the scheduler runs rounds on its own until stopped", async () => {
    const E6 = E0 + 900;
    const h = await holder(ctx.store);
    const c = await certificate(ctx.store, h.id, E6);
    at(E6 - 1);
    const events: string[] = [];
    // Its own scheduler with a 20 ms interval (the configuration allows 10 s at least).
    const s = new ReminderScheduler({
      store: ctx.store, senders: ctx.senders, clock: w.clock, profiles: ctx.reminders.profiles, institution: { name: "Demo" }, publicUrl: "https://renew.example",
      settings: { enabled: true, intervalSeconds: 0.02, maxAttempts: 5, retryBaseSeconds: 60, batchSize: 10 }, random: () => 0.5,
    });
    s.observe((e) => events.push(`${e.channel} ${e.outcome}`));
    s.start();
    s.start();
    try {
      for (let i = 0; i < 3000 && (await remindersOf(c.serial))[0]?.status !== "sent"; i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      await s.stop();
    }
    assert.deepEqual((await remindersOf(c.serial)).map((r) => [r.threshold, r.status]), [[1, "sent"]]);
    assert.deepEqual(events, ["sms sent"]);
    assert.match(linesTo(h.id)[0]!.text, /https:\/\/renew\.example\/#\/renew/);
  });
});
