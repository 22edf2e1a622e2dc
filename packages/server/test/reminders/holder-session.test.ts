import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { policyDay } from "@ukey/policy";
import { buildApp } from "../../src/app.js";
import { certificate, holder, nineAm, reminderWorld, type ReminderWorld } from "./support.js";

// Holder sign-in with the customer number and a one-time code, the session
// (30 minutes, sliding), the bell for a person and for an organisation,
// the certificate list and reminder opt-outs, through the real app.
const E = policyDay(new Date("2027-09-01T00:00:00Z"));
let w: ReminderWorld;
let app: FastifyInstance;
const ids: Record<string, string> = {};
const serials: Record<string, string> = {};

before(async () => {
  // The per-address request limits are not what these tests are about: every request here comes from one address.
  w = await reminderWorld({ at: nineAm(E - 40), config: (c) => { c.rateLimits = { rules: { holderSignInCode: { max: 100_000 }, holderSignInVerify: { max: 100_000 } } }; } });
  const { store } = w.ctx;
  const org = await holder(store, { kind: "organisation", name: "示例证券有限公司", phone: null, email: "pki@org.example.cn" });
  const m1 = await holder(store, { organisationId: org.id, phone: "15900000021" });
  const m2 = await holder(store, { organisationId: org.id, phone: "15900000022" });
  const solo = await holder(store, { phone: "15900000023", email: "solo@example.cn" });
  const mute = await holder(store, { phone: null, email: null });
  Object.assign(ids, { org: org.id, m1: m1.id, m2: m2.id, solo: solo.id, mute: mute.id });
  serials.m1 = (await certificate(store, m1.id, E)).serial;
  serials.m2 = (await certificate(store, m2.id, E + 20)).serial;
  serials.m2far = (await certificate(store, m2.id, E + 1000, { profileId: "personal-far" })).serial;
  serials.solo = (await certificate(store, solo.id, E + 5, { tokenSerial: "TD0123456789" })).serial;
  serials.soloFar = (await certificate(store, solo.id, E + 1500, { profileId: "other" })).serial;
  app = await buildApp(w.ctx);
  // A first round marks where scans start; the next finds what reached 30 days since.
  await w.ctx.reminders.runOnce();
  w.clock.set(nineAm(E - 25));
  await w.ctx.reminders.runOnce();
});
after(async () => {
  await app?.close();
  await w?.close();
});

const post = (url: string, payload: object, token?: string) =>
  app.inject({ method: "POST", url, payload, headers: token ? { authorization: `Bearer ${token}` } : {} });
const get = (url: string, token?: string) => app.inject({ method: "GET", url, headers: token ? { authorization: `Bearer ${token}` } : {} });
const code = (r: LightMyRequestResponse) => r.json<{ code: string }>().code;

const codesOf = (holderId: string) => w.outbox().filter((l) => l.holderId === holderId && l.purpose === "otp");

/**
 * Asks for a sign-in code and waits for it in the demo outbox file (codes
 * go out after the answer). Returns the answer and the message sent.
 */
async function sendCode(holderId: string, channel?: string): Promise<{ started: LightMyRequestResponse; sent: ReturnType<ReminderWorld["outbox"]>[number] }> {
  const before = codesOf(holderId).length;
  const started = await post("/api/v1/holder/sign-in", channel ? { holderId, channel } : { holderId });
  assert.equal(started.statusCode, 200, started.body);
  for (let i = 0; i < 500 && codesOf(holderId).length === before; i++) await new Promise((r) => setTimeout(r, 10));
  const sent = codesOf(holderId);
  assert.equal(sent.length, before + 1, "one message sent");
  return { started, sent: sent[sent.length - 1]! };
}

const codeIn = (text: string) => /\b(\d{6})\b/.exec(text)![1]!;
/** The last sign-in code sent to this holder, read from the demo outbox file. */
const lastCode = (holderId: string) => codeIn(codesOf(holderId).at(-1)!.text);

async function signIn(holderId: string): Promise<string> {
  w.clock.advance(61_000);
  const { started, sent } = await sendCode(holderId);
  const verified = await post("/api/v1/holder/sign-in/verify", { challengeId: started.json<{ challengeId: string }>().challengeId, code: codeIn(sent.text) });
  assert.equal(verified.statusCode, 200, verified.body);
  return verified.json<{ token: string }>().token;
}

describe("holder sign-in", () => {
  test("a code to the phone on record, which the answer does not name; a wrong code five times spends it", async () => {
    const { started, sent } = await sendCode(ids.solo!);
    const s = started.json<{ challengeId: string; expiresAt: string; resendAt: string }>();
    assert.deepEqual(Object.keys(s).sort(), ["challengeId", "expiresAt", "resendAt"]);
    assert.deepEqual([sent.channel, sent.to], ["sms", "15900000023"]);
    assert.equal(Date.parse(s.expiresAt) - w.clock.now().getTime(), 5 * 60_000);
    assert.equal(code(await post("/api/v1/holder/sign-in", { holderId: ids.solo! })), "CODE_RESEND_TOO_SOON");
    const right = lastCode(ids.solo!);
    const wrong = right === "000000" ? "000001" : "000000";
    const answers: string[] = [];
    for (let i = 0; i < 5; i++) answers.push(code(await post("/api/v1/holder/sign-in/verify", { challengeId: s.challengeId, code: wrong })));
    assert.deepEqual(answers, ["CODE_INVALID", "CODE_INVALID", "CODE_INVALID", "CODE_INVALID", "CODE_ATTEMPTS_EXCEEDED"]);
    const late = await post("/api/v1/holder/sign-in/verify", { challengeId: s.challengeId, code: right });
    assert.deepEqual([late.statusCode, code(late)], [409, "CODE_ATTEMPTS_EXCEEDED"], "the right code no longer works");
    // The code is stored only as a keyed hash.
    const rows = await w.ctx.store.db.query<{ code_hash: string }>("SELECT code_hash FROM holder_sign_ins WHERE id = ?", [s.challengeId]);
    assert.match(rows[0]!.code_hash, /^[0-9a-f]{64}$/);
    assert.ok(!rows[0]!.code_hash.includes(right));
  });

  test("a code expires after 5 minutes, works once, and an e-mail code can be asked for", async () => {
    w.clock.advance(61_000);
    const mail = await sendCode(ids.solo!, "email");
    const s = mail.started.json<{ challengeId: string }>();
    assert.deepEqual([mail.sent.channel, mail.sent.to], ["email", "solo@example.cn"]);
    w.clock.advance(5 * 60_000 + 1);
    assert.equal(code(await post("/api/v1/holder/sign-in/verify", { challengeId: s.challengeId, code: lastCode(ids.solo!) })), "CODE_EXPIRED");
    const s2 = (await sendCode(ids.solo!)).started.json<{ challengeId: string }>();
    const ok = await post("/api/v1/holder/sign-in/verify", { challengeId: s2.challengeId, code: lastCode(ids.solo!) });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(ok.json<{ holder: unknown }>().holder, { id: ids.solo, kind: "person", name: (await w.ctx.store.holders.get(ids.solo!))!.name });
    assert.equal(code(await post("/api/v1/holder/sign-in/verify", { challengeId: s2.challengeId, code: lastCode(ids.solo!) })), "CODE_ALREADY_USED");
  });

  const refused: Array<{ name: string; body: object; status: number; code: string }> = [
    { name: "an unknown channel", body: { holderId: "x", channel: "fax" }, status: 400, code: "REQUEST_INVALID" },
    { name: "an unknown field", body: { holderId: "x", password: "1" }, status: 400, code: "REQUEST_INVALID" },
  ];
  for (const c of refused) {
    test(`refuses ${c.name} with ${c.code}, in both languages with a remedy`, async () => {
      const r = await post("/api/v1/holder/sign-in", c.body);
      assert.equal(r.statusCode, c.status, r.body);
      const p = r.json<{ code: string; message: { "zh-CN": string; en: string }; remedy: { "zh-CN": string; en: string } }>();
      assert.equal(p.code, c.code);
      assert.ok(p.message["zh-CN"] && p.message.en && p.remedy["zh-CN"] && p.remedy.en);
    });
  }
  test("an unknown customer number, one with nothing on record and a known one get the same answers, limits and refusals", async () => {
    const known = await holder(w.ctx.store, { phone: "15900000031" });
    const numbers = { known: known.id, mute: ids.mute!, unknown: `nobody-${known.id}` };
    const transcripts: Record<string, string[]> = { known: [], mute: [], unknown: [] };
    const challenges: Record<string, string> = {};
    const note = (who: string, r: LightMyRequestResponse) => {
      const body = r.json<Record<string, unknown>>();
      // The challenge id is random for everyone; everything else must match.
      transcripts[who]!.push(JSON.stringify([r.statusCode, r.headers["retry-after"] ?? null, Object.keys(body).sort(), body.code ?? null, body.message ?? null, body.expiresAt ?? null]));
      if (typeof body.challengeId === "string") challenges[who] = body.challengeId;
    };
    // In lockstep, so that every time in an answer is the same for the three.
    const each = async (fn: (who: string, number: string) => Promise<LightMyRequestResponse>) => {
      for (const [who, number] of Object.entries(numbers)) note(who, await fn(who, number));
    };
    const start = () => each((_who, number) => post("/api/v1/holder/sign-in", { holderId: number }));
    const wrong = () => each((who) => post("/api/v1/holder/sign-in/verify", { challengeId: challenges[who]!, code: "000000" }));
    const sentBefore = w.outbox().length;
    for (let round = 0; round < 10; round++) {
      w.clock.advance(61_000);
      await start();
      await start(); // too soon
      // Four codes of five wrong tries use up the day's 20 wrong codes; later codes meet CODE_GUESSES_EXHAUSTED.
      for (let i = 0; i < (round < 4 ? 5 : 1); i++) await wrong();
    }
    w.clock.advance(61_000);
    await start(); // the eleventh code of the day
    for (const who of ["mute", "unknown"]) assert.deepEqual(transcripts[who], transcripts.known, `${who} answers as a registered number does`);
    const seen = transcripts.known!.map((l) => JSON.parse(l) as [number, string | null, string[], string | null]);
    assert.deepEqual(seen.slice(0, 7).map((l) => [l[0], l[3]]), [
      [200, null], [409, "CODE_RESEND_TOO_SOON"], [401, "CODE_INVALID"], [401, "CODE_INVALID"], [401, "CODE_INVALID"], [401, "CODE_INVALID"], [409, "CODE_ATTEMPTS_EXCEEDED"],
    ]);
    assert.deepEqual(seen[1]![1], "60", "the resend wait is in Retry-After");
    assert.deepEqual(seen.filter((l) => l[3] === "CODE_GUESSES_EXHAUSTED").length, 6);
    assert.deepEqual(seen.at(-1)!.slice(0, 2), [429, String(24 * 3600 - 10 * 61)], "the eleventh code waits for the day's window to end");
    assert.equal(seen.at(-1)![3], "CODE_DAILY_LIMIT");
    await new Promise((r) => setTimeout(r, 50));
    const sent = w.outbox().slice(sentBefore);
    assert.equal(sent.length, 10, "ten codes went to the registered number's phone, none anywhere else");
    assert.ok(sent.every((m) => m.holderId === known.id && m.to === "15900000031"));
  });

  test("an unknown sign-in id is a wrong code, telling nothing", async () => {
    assert.equal(code(await post("/api/v1/holder/sign-in/verify", { challengeId: "no-such", code: "123456" })), "CODE_INVALID");
  });
});

describe("the holder's session and bell", () => {
  test("the session slides 30 minutes from each use; once expired the answer says a renewal in progress is not lost", async () => {
    const token = await signIn(ids.solo!);
    w.clock.advance(20 * 60_000);
    const r = await get("/api/v1/holder/bell", token);
    assert.equal(r.statusCode, 200, r.body);
    const renewed = String(r.headers["x-ukey-session-token"]);
    assert.match(renewed, /^ukh1\./);
    assert.equal(Date.parse(String(r.headers["x-ukey-session-expires-at"])), w.clock.now().getTime() + 30 * 60_000);
    w.clock.advance(20 * 60_000);
    const old = await get("/api/v1/holder/bell", token);
    assert.equal(old.statusCode, 401);
    const p = old.json<{ code: string; remedy: { "zh-CN": string; en: string } }>();
    assert.equal(p.code, "SESSION_EXPIRED");
    assert.match(p.remedy.en, /nothing lost/);
    assert.match(p.remedy["zh-CN"], /不会丢失/);
    assert.equal((await get("/api/v1/holder/bell", renewed)).statusCode, 200, "the renewed token still works");
  });

  test("no token, a forged one, or an operator's token: HOLDER_SIGN_IN_REQUIRED", async () => {
    const token = await signIn(ids.solo!);
    const [prefix, body] = token.split(".");
    const forgedBody = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body!, "base64url").toString()), sub: ids.org })).toString("base64url");
    for (const t of [undefined, `${prefix}.${forgedBody}.${token.split(".")[2]}`, "uks1.e30.AAAA", "garbage"]) {
      const r = await get("/api/v1/holder/bell", t);
      assert.deepEqual([r.statusCode, code(r)], [401, "HOLDER_SIGN_IN_REQUIRED"], String(t));
    }
  });

  test("a person's bell: its unread reminder and its certificates in notice; read marks clear it", async () => {
    const token = await signIn(ids.solo!);
    const bell = (await get("/api/v1/holder/bell", token)).json<{ unreadCount: number; unread: Array<{ id: string; certificateSerial: string; threshold: number }>; expiring: Array<{ serial: string; daysToExpiry: number; state: string; explanation: { en: string } }> }>();
    assert.equal(bell.unreadCount, 1);
    assert.deepEqual(bell.unread.map((r) => [r.certificateSerial, r.threshold]), [[serials.solo, 30]]);
    assert.deepEqual(bell.expiring.map((c) => [c.serial, c.daysToExpiry, c.state]), [[serials.solo, 30, "open"]]);
    assert.match(bell.expiring[0]!.explanation.en, /in 30 days/);
    const read = await post("/api/v1/holder/bell/read", { ids: [bell.unread[0]!.id] }, token);
    assert.deepEqual(read.json(), { marked: 1 });
    assert.equal((await get("/api/v1/holder/bell", token)).json<{ unreadCount: number }>().unreadCount, 0);
    const list = (await get("/api/v1/holder/certificates", token)).json<{ certificates: Array<{ serial: string; certId: string; window: { closesAt: string | null }; tokenSerial: string | null }> }>();
    assert.deepEqual(list.certificates.map((c) => c.serial), [serials.solo, serials.soloFar]);
    assert.deepEqual(list.certificates.map((c) => c.tokenSerial), ["TD0123456789", null], "the key each was issued onto, as recorded (for the portal's diagnostics)");
    assert.match(list.certificates[0]!.certId, /\./);
    assert.ok(list.certificates[0]!.window.closesAt);
  });

  test("an organisation's bell: its members' reminders and certificates; a member sees only its own", async () => {
    const orgToken = await signIn(ids.org!);
    const bell = (await get("/api/v1/holder/bell", orgToken)).json<{ unread: Array<{ certificateSerial: string }>; expiring: Array<{ serial: string; holderId: string }> }>();
    assert.deepEqual(bell.unread.map((r) => r.certificateSerial), [serials.m1], "m2's expires in 45 days: no threshold reached yet");
    assert.deepEqual(bell.expiring.map((c) => c.serial), [serials.m1, serials.m2]);
    const all = (await get("/api/v1/holder/certificates", orgToken)).json<{ certificates: Array<{ serial: string }> }>();
    assert.deepEqual(all.certificates.map((c) => c.serial), [serials.m1, serials.m2, serials.m2far]);
    const m1Token = await signIn(ids.m1!);
    const own = (await get("/api/v1/holder/certificates", m1Token)).json<{ certificates: Array<{ serial: string }> }>();
    assert.deepEqual(own.certificates.map((c) => c.serial), [serials.m1]);
    assert.deepEqual((await get("/api/v1/holder/bell", m1Token)).json<{ unread: Array<{ certificateSerial: string }> }>().unread.map((r) => r.certificateSerial), [serials.m1]);
    // Reading all of the organisation's leaves other viewers' alone.
    assert.deepEqual((await post("/api/v1/holder/bell/read", {}, orgToken)).json(), { marked: 1 });
  });

  test("issue 16 (seed 003, 冻结): a certificate on hold is in the bell however far its expiry, marked on hold; lifted, it leaves", async () => {
    const orgToken = await signIn(ids.org!);
    type Listed = { serial: string; onHold: boolean; status: string };
    const bell = async () => (await get("/api/v1/holder/bell", orgToken)).json<{ expiring: Listed[] }>().expiring;
    assert.ok(!(await bell()).some((c) => c.serial === serials.m2far), "1000 days ahead: not in the bell");
    await w.ctx.revocation.revoke(serials.m2far!, "certificateHold", "operator:test");
    try {
      const held = (await bell()).find((c) => c.serial === serials.m2far);
      assert.deepEqual(held && [held.onHold, held.status], [true, "revoked"]);
      assert.ok((await bell()).filter((c) => c.serial !== serials.m2far).every((c) => c.onHold === false));
    } finally {
      await w.ctx.revocation.releaseHold(serials.m2far!, "operator:test");
    }
    assert.ok(!(await bell()).some((c) => c.serial === serials.m2far), "lifted: works again, out of the bell");
  });

  test("opt-out through the holder's own API is honoured by the next reminder", async () => {
    const token = await signIn(ids.solo!);
    assert.deepEqual((await get("/api/v1/holder/preferences", token)).json(), { sms: true, email: true, updatedAt: null });
    const put = await app.inject({ method: "PUT", url: "/api/v1/holder/preferences", payload: { sms: false, email: true }, headers: { authorization: `Bearer ${token}` } });
    assert.equal(put.statusCode, 200, put.body);
    assert.deepEqual(put.json<{ sms: boolean; email: boolean }>().sms, false);
    const bad = await app.inject({ method: "PUT", url: "/api/v1/holder/preferences", payload: { sms: "no" }, headers: { authorization: `Bearer ${token}` } });
    assert.equal(code(bad), "REQUEST_INVALID");
    const before = w.outbox().filter((l) => l.holderId === ids.solo && l.purpose === "reminder").length;
    w.clock.set(nineAm(E + 5 - 7));
    await w.ctx.reminders.runOnce();
    const sent = w.outbox().filter((l) => l.holderId === ids.solo && l.purpose === "reminder").slice(before);
    assert.deepEqual(sent.map((l) => [l.channel, l.to]), [["email", "solo@example.cn"]]);
    const audit = await w.ctx.store.audit.list(1, 100_000);
    assert.ok(audit.some((a) => a.action === "holder.preferences-changed" && a.actor === `holder:${ids.solo}`));
  });

  test("the OpenAPI document lists the holder routes with their session", async () => {
    const doc = (await get("/api/v1/openapi.json")).json<{ paths: Record<string, Record<string, { security?: unknown[]; tags?: string[] }>>; components: { securitySchemes: Record<string, unknown> } }>();
    for (const p of ["/api/v1/holder/sign-in", "/api/v1/holder/sign-in/verify", "/api/v1/holder/bell", "/api/v1/holder/bell/read", "/api/v1/holder/certificates", "/api/v1/holder/preferences", "/api/v1/admin/reminders", "/api/v1/admin/holders/{id}/preferences", "/metrics"]) {
      assert.ok(doc.paths[p], p);
    }
    assert.deepEqual(doc.paths["/api/v1/holder/bell"]!.get!.security, [{ holderSession: [] }]);
    assert.ok(doc.components.securitySchemes.holderSession);
  });
});
