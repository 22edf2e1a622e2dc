import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { policyDay } from "@ukey/policy";
import { createTestDatabase } from "../../../store/test/support/postgres.js";
import type { ServerContext } from "../../src/server-context.js";
import { certificate, holder, nineAm, reminderWorld, type ReminderWorld } from "./support.js";

// Two server instances on one real PostgreSQL run their reminder rounds at
// the same moment, again and again: every reminder is enqueued once and
// sent once (claims skip rows the other instance holds).
const E = policyDay(new Date("2028-03-01T00:00:00Z"));
let db: { url: string; drop(): Promise<void> };
let w: ReminderWorld;
let second: ServerContext;

before(async () => {
  db = await createTestDatabase();
  w = await reminderWorld({ at: nineAm(E - 8), env: { UKEY_DATABASE_URL: db.url }, config: (c) => { c.reminders = { batchSize: 3 }; } });
  second = await w.reopen();
  assert.equal(w.ctx.store.db.engine, "postgres");
  assert.equal(second.store.db.engine, "postgres");
});
after(async () => {
  await w?.close();
  await db?.drop();
});

test("two instances at once: each reminder enqueued once and sent once", async () => {
  const holders = [];
  for (let i = 0; i < 30; i++) {
    const h = await holder(w.ctx.store, { phone: `1590000${String(1000 + i)}` });
    await certificate(w.ctx.store, h.id, E + (i % 3));
    holders.push(h);
  }
  const rounds: Array<Awaited<ReturnType<ServerContext["reminders"]["runOnce"]>>> = [];
  await Promise.all([w.ctx, second].map((c) => c.reminders.runOnce()));
  // Seven days before E, E+1 and E+2: the 7-day threshold over three days, both instances every time.
  for (let d = E - 7; d <= E - 5; d++) {
    w.clock.set(nineAm(d));
    rounds.push(...await Promise.all([w.ctx.reminders.runOnce(), second.reminders.runOnce(), w.ctx.reminders.runOnce(), second.reminders.runOnce()]));
  }
  const enqueued = rounds.reduce((n, r) => n + r.scan.enqueued, 0);
  const sent = rounds.reduce((n, r) => n + r.send.sent, 0);
  assert.equal(enqueued, 30);
  assert.equal(sent, 30);
  const all = (await w.ctx.store.reminders.list({ limit: 1000 }));
  assert.equal(all.length, 30);
  assert.ok(all.every((r) => r.status === "sent" && r.attempts === 1 && r.threshold === 7));
  for (const h of holders) {
    assert.equal(w.outbox().filter((l) => l.holderId === h.id && l.purpose === "reminder").length, 1, h.id);
  }
});
