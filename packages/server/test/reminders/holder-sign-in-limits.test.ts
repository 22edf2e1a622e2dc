import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { policyDay } from "@ukey/policy";
import { createTestDatabase } from "../../../store/test/support/postgres.js";
import { buildApp } from "../../src/app.js";
import { holder, nineAm, reminderWorld, type ReminderWorld } from "./support.js";

// The per-customer-number limits of holder sign-in (codes sent and wrong
// codes per 24 hours) live in the database, so a holder is protected
// however requests are spread over instances: on SQLite one instance, on
// PostgreSQL two contexts on one database, their requests alternating.
const E = policyDay(new Date("2027-09-01T00:00:00Z"));

const engines = [
  { name: "SQLite", instances: 1, database: async () => ({ env: {}, drop: async () => {} }) },
  {
    name: "PostgreSQL", instances: 2,
    database: async () => { const db = await createTestDatabase(); return { env: { UKEY_DATABASE_URL: db.url }, drop: () => db.drop() }; },
  },
];

for (const engine of engines) {
  describe(`holder sign-in limits on ${engine.name}`, () => {
    let w: ReminderWorld;
    let drop: () => Promise<void>;
    const apps: FastifyInstance[] = [];
    let turn = 0;

    before(async () => {
      const db = await engine.database();
      drop = db.drop;
      w = await reminderWorld({
        at: nineAm(E - 40), env: db.env,
        config: (c) => {
          c.signIn = { holderCodesPerDay: 3, holderWrongCodesPerDay: 4 };
          // One address sends everything here: the per-address limits are not under test.
          c.rateLimits = { rules: { holderSignInCode: { max: 100_000 }, holderSignInVerify: { max: 100_000 } } };
        },
      });
      apps.push(await buildApp(w.ctx));
      for (let i = 1; i < engine.instances; i++) apps.push(await buildApp(await w.reopen()));
    });
    after(async () => {
      for (const a of apps) await a.close();
      await w?.close();
      await drop?.();
    });

    /** The next instance in turn. */
    const post = (url: string, payload: object): Promise<LightMyRequestResponse> => apps[turn++ % apps.length]!.inject({ method: "POST", url, payload });
    const code = (r: LightMyRequestResponse) => r.json<{ code?: string }>().code ?? String(r.statusCode);

    test("codes sent for one customer number count on every instance, and the quiet time too", async () => {
      const h = await holder(w.ctx.store, { phone: "15900000041" });
      const answers: string[] = [];
      for (let i = 0; i < 4; i++) {
        w.clock.advance(61_000);
        answers.push(code(await post("/api/v1/holder/sign-in", { holderId: h.id })));
        answers.push(code(await post("/api/v1/holder/sign-in", { holderId: h.id })));
      }
      assert.deepEqual(answers, ["200", "CODE_RESEND_TOO_SOON", "200", "CODE_RESEND_TOO_SOON", "200", "CODE_RESEND_TOO_SOON", "CODE_DAILY_LIMIT", "CODE_DAILY_LIMIT"]);
      w.clock.advance(24 * 3_600_000);
      assert.equal(code(await post("/api/v1/holder/sign-in", { holderId: h.id })), "200", "a new day, a new quota");
    });

    test("wrong codes for one customer number count on every instance; then even the right code waits", async () => {
      const h = await holder(w.ctx.store, { phone: "15900000042" });
      w.clock.advance(61_000);
      const first = (await post("/api/v1/holder/sign-in", { holderId: h.id })).json<{ challengeId: string }>();
      const answers: string[] = [];
      for (let i = 0; i < 3; i++) answers.push(code(await post("/api/v1/holder/sign-in/verify", { challengeId: first.challengeId, code: "000000" })));
      w.clock.advance(61_000);
      const second = (await post("/api/v1/holder/sign-in", { holderId: h.id })).json<{ challengeId: string }>();
      answers.push(code(await post("/api/v1/holder/sign-in/verify", { challengeId: second.challengeId, code: "000000" })));
      // The right code of the second challenge, from the outbox, once the message is out.
      let sent: string | undefined;
      for (let i = 0; i < 500 && !sent; i++) {
        sent = w.outbox().filter((m) => m.holderId === h.id).at(1)?.text;
        if (!sent) await new Promise((r) => setTimeout(r, 10));
      }
      const right = /\b(\d{6})\b/.exec(sent!)![1]!;
      const refused = await post("/api/v1/holder/sign-in/verify", { challengeId: second.challengeId, code: right === "000000" ? "000001" : right });
      answers.push(code(refused));
      assert.deepEqual(answers, ["CODE_INVALID", "CODE_INVALID", "CODE_INVALID", "CODE_INVALID", "CODE_GUESSES_EXHAUSTED"]);
      assert.equal(refused.statusCode, 429);
      assert.ok(Number(refused.headers["retry-after"]) > 23 * 3600, "Retry-After names the end of the day's window");
    });
  });
}
