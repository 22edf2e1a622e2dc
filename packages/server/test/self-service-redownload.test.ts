import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { policyDay } from "@ukey/policy";
import type { HolderRecord } from "@ukey/store";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { buildApp } from "../src/app.js";
import { hashIdNumber, maskIdNumber } from "../src/holder-identity.js";
import { rateLimitRuleFor } from "../src/rate-limits.js";
import { startGateway, type Gateway } from "./delivery-support.js";
import { certificate, holder, nineAm, reminderWorld, type ReminderWorld } from "./reminders/support.js";
import { keyArgs, opensslCsr } from "./support/fixtures.js";

// Issue 16, seed 000: a holder whose key was initialised (forgotten PIN,
// 内存不足) downloads the certificate again with the ID number and an SMS
// code, through the real app, the real SMS webhook sender and a gateway on
// 127.0.0.1, on SQLite and on PostgreSQL. The attacks of docs/security.md:
// someone who knows a customer number or a serial, a hostile page, a code
// guesser, a code of another holder, a replayed authorization.
// The CA is made by the real `init` today: the clock starts after it.
const TODAY = policyDay(new Date());
const ID = "11010119900307123X";

const engines = [
  { name: "SQLite", database: async () => ({ env: {}, drop: async () => {} }) },
  { name: "PostgreSQL", database: async () => { const db = await createTestDatabase(); return { env: { UKEY_DATABASE_URL: db.url }, drop: () => db.drop() }; } },
];

interface Auth { referenceNumber: string; authorizationCode: string; expiresAt: string; certificate: { serial: string; subjectDn: string; notAfter: string; profileId: string } }

for (const engine of engines) {
  describe(`self-service re-download on ${engine.name}`, () => {
    let w: ReminderWorld;
    let app: FastifyInstance;
    let gateway: Gateway;
    let drop: () => Promise<void>;

    before(async () => {
      const db = await engine.database();
      drop = db.drop;
      gateway = await startGateway([200]);
      w = await reminderWorld({
        at: nineAm(TODAY + 10), env: db.env,
        config: (c) => {
          const profiles = c.profiles as Array<Record<string, unknown>>;
          profiles[0]!.selfServiceRedownload = true;
          profiles.push({ id: "counter-only", preset: "gov-supervision", keyAlgorithms: ["p256"], certificates: null });
          c.delivery = { sms: { type: "webhook", url: gateway.url, secretFile: "secrets/sms-hmac.key", attempts: 1 } };
          c.signIn = { holderCodesPerDay: 8, holderWrongCodesPerDay: 7 };
          // Every request here comes from one address: the per-address limits are not under test.
          c.rateLimits = { rules: { holderSignInCode: { max: 100_000 }, holderSignInVerify: { max: 100_000 } } };
        },
        beforeOpen: (dataDir) => { mkdirSync(`${dataDir}/secrets`, { recursive: true }); writeFileSync(`${dataDir}/secrets/sms-hmac.key`, "gateway secret for the tests\n"); },
      });
      app = await buildApp(w.ctx);
    });
    after(async () => {
      await app?.close();
      await w?.close();
      await gateway?.close();
      await drop?.();
    });

    const post = (url: string, payload: object) => app.inject({ method: "POST", url, payload });
    const code = (r: LightMyRequestResponse) => r.json<{ code?: string }>().code ?? String(r.statusCode);

    /** A person with the test ID number, a phone, and a certificate issued by the real CA in `profileId`. */
    async function person(o: { phone?: string | null; profileId?: string } = {}): Promise<{ h: HolderRecord; serial: string }> {
      const h = await holder(w.ctx.store, { idHash: hashIdNumber(w.ctx.idKey, "resident-id", ID), idMasked: maskIdNumber(ID), phone: o.phone === undefined ? "15900000031" : o.phone });
      const csr = readFileSync(opensslCsr(w.t, `old-${h.id}`, keyArgs.p256, "/").csr);
      const c = await w.ctx.issuance.issue({ holderId: h.id, profileId: o.profileId ?? "personal", csr, actor: "operator:test" });
      return { h, serial: c.serial };
    }

    /** What the gateway was asked to send to this phone (the webhook's JSON bodies). */
    const sentTo = (phone: string) => gateway.requests.map((r) => JSON.parse(r.body) as { to: string; text: string; purpose: string }).filter((m) => m.to === phone);

    /** Starts a re-download and waits for the message to reach the gateway (it goes out after the answer). */
    async function start(holderId: string, idNumber: string, phone: string | null, expectMessage: boolean): Promise<{ res: LightMyRequestResponse; text: string | null }> {
      w.clock.advance(61_000);
      const before = phone ? sentTo(phone).length : 0;
      const res = await post("/api/v1/redownload", { holderId, idNumber });
      assert.equal(res.statusCode, 200, res.body);
      if (!expectMessage || !phone) {
        // Messages go out after the answer: give one the time it would take to reach the gateway.
        await new Promise((r) => setTimeout(r, 30));
        return { res, text: null };
      }
      for (let i = 0; i < 500 && sentTo(phone).length === before; i++) await new Promise((r) => setTimeout(r, 10));
      const sent = sentTo(phone);
      assert.equal(sent.length, before + 1, "one message to the phone on record");
      return { res, text: sent.at(-1)!.text };
    }
    const codeIn = (text: string) => /\b(\d{6})\b/.exec(text)![1]!;

    test("ID number and SMS code give two codes; the existing download issues the RA's certificate on a new key and supersedes the old one", async () => {
      const { h, serial } = await person({ phone: "15900000031" });
      const old = (await w.ctx.store.certificates.get(serial))!;
      const { res, text } = await start(h.id, ID.toLowerCase(), "15900000031", true);
      const started = res.json<{ challengeId: string; sentTo: string; expiresAt: string; resendAt: string }>();
      assert.deepEqual(Object.keys(started).sort(), ["challengeId", "expiresAt", "resendAt", "sentTo"]);
      assert.equal(started.sentTo, "159*****031", "the phone on record, masked");
      assert.match(text!, /证书重新下载验证码 \d{6}/);

      const wrong = await post("/api/v1/redownload/verify", { challengeId: started.challengeId, code: codeIn(text!) === "000000" ? "000001" : "000000" });
      assert.equal(wrong.statusCode, 401);
      assert.equal(code(wrong), "SMS_CODE_INVALID");
      assert.match(wrong.json<{ message: { "zh-CN": string } }>().message["zh-CN"], /还可以再试 4 次/);

      const ok = await post("/api/v1/redownload/verify", { challengeId: started.challengeId, code: codeIn(text!) });
      assert.equal(ok.statusCode, 200, ok.body);
      assert.equal(ok.headers["cache-control"], "no-store");
      const [auth, ...more] = ok.json<{ authorizations: Auth[] }>().authorizations;
      assert.equal(more.length, 0);
      assert.equal(auth!.certificate.serial, serial);
      assert.ok(Date.parse(auth!.expiresAt) - w.clock.now().getTime() <= 30 * 60_000, "the authorization lasts 30 minutes");
      // The SMS code is spent: replaying it gives nothing.
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId: started.challengeId, code: codeIn(text!) })), "CODE_ALREADY_USED");

      // The agent's existing download path: a new key on the key, the two codes.
      const csr = readFileSync(opensslCsr(w.t, `new-${h.id}`, keyArgs.p256, "/").csr, "utf8");
      const dl = await post("/api/v1/downloads", { referenceNumber: auth!.referenceNumber, authorizationCode: auth!.authorizationCode, csr, tokenSerial: "PF20FA000777" });
      assert.equal(dl.statusCode, 201, dl.body);
      const got = dl.json<{ serial: string; subject: string; notAfter: string }>();
      assert.notEqual(got.serial, serial);
      assert.equal(got.subject, old.subjectDn, "the RA's record: the same subject");
      assert.equal(Date.parse(got.notAfter), old.notAfter, "a replacement keeps the expiry");
      const after = (await w.ctx.store.certificates.get(serial))!;
      assert.deepEqual([after.status, after.revocationReason], ["superseded", "superseded"]);

      // A replayed authorization: the same key gets its certificate again (a lost answer), another key nothing.
      const again = await post("/api/v1/downloads", { referenceNumber: auth!.referenceNumber, authorizationCode: auth!.authorizationCode, csr });
      assert.equal(again.json<{ serial: string }>().serial, got.serial);
      const otherCsr = readFileSync(opensslCsr(w.t, `thief-${h.id}`, keyArgs.p256, "/").csr, "utf8");
      assert.equal(code(await post("/api/v1/downloads", { referenceNumber: auth!.referenceNumber, authorizationCode: auth!.authorizationCode, csr: otherCsr })), "CODE_ALREADY_USED");
      // The superseded certificate is never offered again; the new one is (the key may be initialised again).
      const second = await start(h.id, ID, "15900000031", true);
      const next = await post("/api/v1/redownload/verify", { challengeId: second.res.json<{ challengeId: string }>().challengeId, code: codeIn(second.text!) });
      assert.deepEqual(next.json<{ authorizations: Auth[] }>().authorizations.map((a) => a.certificate.serial), [got.serial]);

      // Audited, and no code in the audit log or the outbox's stored text.
      const audit = await w.ctx.store.audit.list(0, 100_000);
      const enrolments = (await w.ctx.store.enrolments.list({ holderId: h.id })).map((e) => e.id);
      const mine = audit.filter((e) => e.actor === `holder:${h.id}` || e.subjectId === serial || enrolments.includes(e.subjectId));
      for (const action of ["holder.redownload.code-sent", "holder.redownload.code-verified", "enrolment.created", "enrolment.redeemed", "certificate.superseded"]) {
        assert.ok(mine.some((e) => e.action === action), action);
      }
      const dump = JSON.stringify(audit) + JSON.stringify(await w.ctx.store.outbox.list({ limit: 1000 }));
      assert.ok(!dump.includes(codeIn(text!)), "the SMS code is nowhere stored");
      assert.ok(!dump.includes(auth!.authorizationCode) && !dump.includes(auth!.authorizationCode.replace(/-/g, "")), "the authorization code is nowhere stored");
    });

    test("an unknown customer number, a serial, a wrong ID number and no phone on record answer like a real holder, and send nothing", async () => {
      const { h, serial } = await person({ phone: "15900000032" });
      const mute = await person({ phone: null });
      const answers = [
        await start("NOBODY-42", ID, null, false),
        await start(serial, ID, null, false),
        await start(h.id, "110101199001011234", "15900000032", false),
        await start(mute.h.id, ID, null, false),
      ];
      const real = await start(h.id, ID, "15900000032", true);
      for (const a of [...answers, real]) {
        const b = a.res.json<Record<string, string>>();
        assert.deepEqual(Object.keys(b).sort(), ["challengeId", "expiresAt", "resendAt", "sentTo"]);
        assert.match(b.sentTo!, /^1[3-9]\d\*{5}\d{3}$/);
      }
      // A decoy's masked phone is the same when asked again: it cannot be told from a real one by asking twice.
      const again = await start("NOBODY-42", ID, null, false);
      assert.equal(again.res.json<{ sentTo: string }>().sentTo, answers[0]!.res.json<{ sentTo: string }>().sentTo);
      assert.equal(sentTo("15900000032").length, 1, "only the real request reached the phone");
      // A decoy's challenge takes no code.
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId: answers[2]!.res.json<{ challengeId: string }>().challengeId, code: "123456" })), "SMS_CODE_INVALID");
    });

    test("a guesser: five wrong codes void the code, and the customer number's wrong codes of the day run out", async () => {
      const { h } = await person({ phone: "15900000033" });
      const { res, text } = await start(h.id, ID, "15900000033", true);
      const challengeId = res.json<{ challengeId: string }>().challengeId;
      const wrong = codeIn(text!) === "999999" ? "999998" : "999999";
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await post("/api/v1/redownload/verify", { challengeId, code: wrong });
        seen.push(`${code(r)}${r.json<{ params?: { triesLeft?: number } }>().params?.triesLeft ?? ""}`);
      }
      assert.deepEqual(seen, ["SMS_CODE_INVALID4", "SMS_CODE_INVALID3", "SMS_CODE_INVALID2", "SMS_CODE_INVALID1", "CODE_ATTEMPTS_EXCEEDED", "CODE_ATTEMPTS_EXCEEDED"]);
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId, code: codeIn(text!) })), "CODE_ATTEMPTS_EXCEEDED", "the right code after the limit opens nothing");
      // A new code: 2 more wrong ones reach the day's 7, then even the right code waits.
      const next = await start(h.id, ID, "15900000033", true);
      const id2 = next.res.json<{ challengeId: string }>().challengeId;
      await post("/api/v1/redownload/verify", { challengeId: id2, code: codeIn(next.text!) === "999999" ? "999998" : "999999" });
      await post("/api/v1/redownload/verify", { challengeId: id2, code: codeIn(next.text!) === "999999" ? "999998" : "999999" });
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId: id2, code: codeIn(next.text!) })), "CODE_GUESSES_EXHAUSTED");
      assert.equal((await w.ctx.store.enrolments.list({ holderId: h.id })).length, 0, "no authorization made");
    });

    test("a code for another holder, and a sign-in code, open nothing here; a re-download code signs nobody in", async () => {
      const a = await person({ phone: "15900000034" });
      const b = await person({ phone: "15900000035" });
      const ca = await start(a.h.id, ID, "15900000034", true);
      const cb = await start(b.h.id, ID, "15900000035", true);
      const idA = ca.res.json<{ challengeId: string }>().challengeId;
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId: idA, code: codeIn(cb.text!) })), codeIn(cb.text!) === codeIn(ca.text!) ? "200" : "SMS_CODE_INVALID");
      // The re-download code at the sign-in: refused, and the other way round.
      const idB = cb.res.json<{ challengeId: string }>().challengeId;
      assert.equal(code(await post("/api/v1/holder/sign-in/verify", { challengeId: idB, code: codeIn(cb.text!) })), "CODE_INVALID");
      w.clock.advance(61_000);
      const signIn = await post("/api/v1/holder/sign-in", { holderId: a.h.id });
      for (let i = 0; i < 500 && !sentTo("15900000034").some((m) => /登录验证码/.test(m.text)); i++) await new Promise((r) => setTimeout(r, 10));
      const signInCode = codeIn(sentTo("15900000034").find((m) => /登录验证码/.test(m.text))!.text);
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId: signIn.json<{ challengeId: string }>().challengeId, code: signInCode })), "SMS_CODE_INVALID");
      assert.equal((await w.ctx.store.enrolments.list({ holderId: a.h.id })).length, 0);
    });

    test("a hostile page's text/plain request is refused before anything is sent", async () => {
      const { h } = await person({ phone: "15900000036" });
      w.clock.advance(61_000);
      const res = await app.inject({ method: "POST", url: "/api/v1/redownload", headers: { "content-type": "text/plain" }, payload: JSON.stringify({ holderId: h.id, idNumber: ID }) });
      assert.equal(res.statusCode, 415);
      assert.equal(code(res), "UNSUPPORTED_MEDIA_TYPE");
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sentTo("15900000036").length, 0);
      assert.equal(rateLimitRuleFor("POST", "/api/v1/redownload"), "holderSignInCode");
      assert.equal(rateLimitRuleFor("POST", "/api/v1/redownload/verify"), "holderSignInVerify");
    });

    test("only a valid certificate of a profile that offers it: expired, revoked or counter-only get a notice; revoked after the codes, the download is refused", async () => {
      const counter = await person({ phone: "15900000037", profileId: "counter-only" });
      const n1 = await start(counter.h.id, ID, "15900000037", true);
      assert.match(n1.text!, /没有可以在线重新下载的证书/);
      assert.equal(code(await post("/api/v1/redownload/verify", { challengeId: n1.res.json<{ challengeId: string }>().challengeId, code: "123456" })), "SMS_CODE_INVALID");
      assert.ok((await w.ctx.store.audit.list(0, 100_000)).some((e) => e.action === "holder.redownload.notice-sent" && e.subjectId === counter.h.id));
      const expired = await holder(w.ctx.store, { idHash: hashIdNumber(w.ctx.idKey, "resident-id", ID), phone: "15900000038" });
      await certificate(w.ctx.store, expired.id, policyDay(w.clock.now()) - 3);
      const n2 = await start(expired.id, ID, "15900000038", true);
      assert.doesNotMatch(n2.text!, /\b\d{6}\b/);

      const { h, serial } = await person({ phone: "15900000039" });
      const s = await start(h.id, ID, "15900000039", true);
      const ok = await post("/api/v1/redownload/verify", { challengeId: s.res.json<{ challengeId: string }>().challengeId, code: codeIn(s.text!) });
      const auth = ok.json<{ authorizations: Auth[] }>().authorizations[0]!;
      await w.ctx.revocation.revoke(serial, "keyCompromise", "operator:test");
      const csr = readFileSync(opensslCsr(w.t, `late-${h.id}`, keyArgs.p256, "/").csr, "utf8");
      const refused = await post("/api/v1/downloads", { referenceNumber: auth.referenceNumber, authorizationCode: auth.authorizationCode, csr });
      assert.equal(code(refused), "REDOWNLOAD_NOT_AVAILABLE");
      assert.equal((await w.ctx.store.certificates.search({ holderId: h.id, status: "active", limit: 10 })).length, 0, "nothing issued");
    });
  });
}
