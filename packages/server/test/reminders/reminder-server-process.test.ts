import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { policyDay, systemClock } from "@ukey/policy";
import { openStore } from "@ukey/store";
import { startUkeyServer, type RunningServer } from "../support/fixtures.js";
import { certificate, holder, reminderWorld, type ReminderWorld } from "./support.js";

// The real `ukey-server start` process runs reminder rounds by itself once
// it listens: a certificate that reaches its 30-day threshold today is
// reminded without anyone asking, through the configured outbox.
let w: ReminderWorld;
let server: RunningServer | undefined;
let holderId = "";

before(async () => {
  w = await reminderWorld({ at: systemClock.now(), config: (c) => { c.reminders = { intervalSeconds: 10 }; } });
  await w.ctx.close();
  const store = await openStore({ dataDir: w.dataDir });
  try {
    const h = await holder(store, { phone: "15900000041" });
    holderId = h.id;
    await certificate(store, h.id, policyDay(systemClock.now()) + 30);
  } finally {
    await store.close();
  }
  server = await startUkeyServer(w.dataDir, w.env);
});
after(async () => {
  await server?.stop();
  await w?.close();
});

test("a listening server sends due reminders on its own, one interval after start", async () => {
  const reminders = () => w.outbox().filter((l) => l.holderId === holderId && l.purpose === "reminder");
  // The first round comes 10 to 11 seconds after start; wait for it (generously, on a busy machine).
  for (let i = 0; i < 240 && reminders().length === 0; i++) await sleep(500);
  const got = reminders();
  assert.equal(got.length, 1, readFileSync(`${w.dataDir}/outbox.jsonl`, { encoding: "utf8", flag: "a+" }));
  assert.match(got[0]!.text, /还剩 30 天/);
  assert.equal(got[0]!.to, "15900000041");
});
