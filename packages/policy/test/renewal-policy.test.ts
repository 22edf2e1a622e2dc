import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  evaluate, explainEvaluation, describeRenewalReason, renewalRefusal, presetNames, profilePresets, renewalChannels, resolveProfile,
  type CertificateForPolicy, type CertificateProfile, type RenewalChannel, type RenewalState,
} from "../src/index.js";

// All times are written in CST (+08:00) or UTC explicitly; nothing reads the clock.
const at = (s: string) => new Date(s);
const H = 3_600_000;
const D = 24 * H;

/** 00:00 CST of the CST calendar day `offset` days after 2027-03-10, computed by calendar, not by the code under test. */
const cstMidnight = (offset: number, base = [2027, 2, 10] as const) => new Date(Date.UTC(base[0], base[1], base[2] + offset) - 8 * H);

// 2027-03-10 10:00 CST: the CST day and the UTC day agree.
const notAfter = at("2027-03-10T10:00:00+08:00");
const cert = (over: Partial<CertificateForPolicy> = {}): CertificateForPolicy =>
  ({ notBefore: at("2022-03-10T10:00:00+08:00"), notAfter, status: "active", ...over });

const profiles = Object.fromEntries(presetNames.map((n) => [n, resolveProfile({ id: n, preset: n })])) as Record<string, CertificateProfile>;

function openState(p: CertificateProfile, t: Date): RenewalState {
  const s = p.renewal.stepUp;
  return s && t.getTime() >= cstMidnight(s.afterDaysExpired + 1).getTime() ? "open-step-up" : "open";
}

describe("every preset and channel at the window's boundaries", () => {
  for (const name of presetNames) {
    const p = profiles[name]!;
    for (const channel of renewalChannels) {
      const w = p.renewal.windows[channel];
      if (!w) {
        test(`${name} ${channel}: no window, closed with no dates`, () => {
          const e = evaluate(cert(), p, channel, at("2027-03-01T12:00:00+08:00"));
          assert.equal(e.state, "closed");
          assert.equal(e.opensAt, null);
          assert.equal(e.closesAt, null);
          assert.equal(e.reasons[0]?.code, "channel-not-offered");
          assert.equal(e.suggestedWindow.start.getTime(), e.suggestedWindow.end.getTime());
        });
        continue;
      }
      const open = cstMidnight(-w.opensDaysBefore);
      const lastMs = new Date(cstMidnight(w.closesDaysAfter + 1).getTime() - 1);
      const cases: Array<[string, Date, RenewalState]> = [
        ["the day before the window opens", new Date(open.getTime() - 12 * H), "not-yet"],
        ["one millisecond before the opening day", new Date(open.getTime() - 1), "not-yet"],
        ["00:00 CST of the opening day", open, "open"],
        ["23:59:59.999 CST of the last day", lastMs, openState(p, lastMs)],
        ["00:00 CST of the day after the last", new Date(lastMs.getTime() + 1), "closed"],
        ["noon of the day after the last", new Date(lastMs.getTime() + 1 + 12 * H), "closed"],
      ];
      for (const [what, t, state] of cases) {
        test(`${name} ${channel}: ${what} is ${state}`, () => {
          const e = evaluate(cert(), p, channel, t);
          assert.equal(e.state, state);
          assert.equal(e.opensAt?.getTime(), open.getTime());
          assert.equal(e.closesAt?.getTime(), lastMs.getTime());
          assert.ok(e.suggestedWindow.start.getTime() <= e.suggestedWindow.end.getTime());
          if (state === "not-yet") assert.equal(e.suggestedWindow.start.getTime(), open.getTime());
          if (state === "open" || state === "open-step-up") {
            assert.equal(e.suggestedWindow.start.getTime(), t.getTime());
            assert.ok(e.suggestedWindow.end.getTime() <= lastMs.getTime());
          }
        });
      }
    }
    test(`${name}: notice starts at 00:00 CST ${p.renewal.noticeDaysBefore} days before the expiry day`, () => {
      const from = cstMidnight(-p.renewal.noticeDaysBefore);
      const before = evaluate(cert(), p, "web", new Date(from.getTime() - 1));
      const on = evaluate(cert(), p, "web", from);
      assert.equal(on.noticeFrom.getTime(), from.getTime());
      assert.equal(before.inNotice, false);
      assert.equal(on.inNotice, true);
      assert.equal(on.reasons.some((r) => r.code === "expires-soon"), true);
      assert.equal(on.daysToExpiry, p.renewal.noticeDaysBefore);
    });
    test(`${name}: revoked and superseded certificates are never open`, () => {
      const t = at("2027-03-01T12:00:00+08:00");
      const r = evaluate(cert({ status: "revoked", revokedAt: at("2026-01-02T09:00:00+08:00") }), p, "web", t);
      assert.equal(r.state, "revoked");
      assert.equal(r.loginAllowed, false);
      assert.equal(r.inNotice, false);
      assert.deepEqual(r.reasons[0], { code: "cert-revoked", params: { revokedOn: "2026-01-02" } });
      const s = evaluate(cert({ status: "superseded" }), p, "web", t);
      assert.equal(s.state, "superseded");
      assert.equal(s.loginAllowed, true, "a superseded certificate left to expire still signs in until expiry");
      const sr = evaluate(cert({ status: "superseded", revokedAt: at("2027-02-01T09:00:00+08:00") }), p, "web", t);
      assert.equal(sr.state, "superseded", "revoked as superseded by our own renewal reads as superseded");
      assert.equal(sr.loginAllowed, false);
    });
  }
});

describe("exact dates of the published policies", () => {
  const cases: Array<{ name: string; preset: string; channel: RenewalChannel; opensAt: string | null; closesAt: string | null; stepUpFrom?: string | null }> = [
    { name: "gov-supervision web: 90 days before to 300 after", preset: "gov-supervision", channel: "web", opensAt: "2026-12-10T00:00:00+08:00", closesAt: "2028-01-04T23:59:59.999+08:00" },
    { name: "bank-ushield web: 90 before to 1800 after", preset: "bank-ushield", channel: "web", opensAt: "2026-12-10T00:00:00+08:00", closesAt: "2032-02-12T23:59:59.999+08:00" },
    { name: "bank-ushield mobile: 90 before to 30 after", preset: "bank-ushield", channel: "mobile", opensAt: "2026-12-10T00:00:00+08:00", closesAt: "2027-04-09T23:59:59.999+08:00" },
    { name: "bank-netbank-shield web: 30 before to 90 after", preset: "bank-netbank-shield", channel: "web", opensAt: "2027-02-08T00:00:00+08:00", closesAt: "2027-06-08T23:59:59.999+08:00" },
    { name: "bank-personal-ukey web: step-up from the day after one year expired", preset: "bank-personal-ukey", channel: "web", opensAt: "2026-12-15T00:00:00+08:00", closesAt: "2037-03-07T23:59:59.999+08:00", stepUpFrom: "2028-03-10T00:00:00+08:00" },
    { name: "bank-personal-ukey mobile: not offered", preset: "bank-personal-ukey", channel: "mobile", opensAt: null, closesAt: null },
    { name: "securities-gateway est: closes on the expiry day", preset: "securities-gateway", channel: "est", opensAt: "2027-01-09T00:00:00+08:00", closesAt: "2027-03-10T23:59:59.999+08:00" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const e = evaluate(cert(), profiles[c.preset]!, c.channel, at("2026-06-01T00:00:00+08:00"));
      assert.equal(e.opensAt?.toISOString() ?? null, c.opensAt && at(c.opensAt).toISOString());
      assert.equal(e.closesAt?.toISOString() ?? null, c.closesAt && at(c.closesAt).toISOString());
      if (c.stepUpFrom !== undefined) assert.equal(e.stepUpFrom?.toISOString() ?? null, c.stepUpFrom && at(c.stepUpFrom).toISOString());
    });
  }
});

describe("step-up", () => {
  const p = resolveProfile({ id: "p", preset: "bank-personal-ukey" });
  const from = at("2028-03-10T00:00:00+08:00"); // expiry day 2027-03-10 + 365 + 1
  const cases: Array<[string, Date, RenewalState]> = [
    ["open one millisecond before step-up starts", new Date(from.getTime() - 1), "open"],
    ["open-step-up at 00:00 CST of the first day expired more than 365 days", from, "open-step-up"],
  ];
  for (const [name, t, state] of cases) {
    test(name, () => {
      const e = evaluate(cert(), p, "web", t);
      assert.equal(e.state, state);
      assert.equal(e.stepUpFrom?.getTime(), from.getTime());
    });
  }
  test("an open window before step-up says when step-up starts and ends its suggestion the day before", () => {
    const e = evaluate(cert(), p, "web", at("2028-03-09T12:00:00+08:00"));
    assert.ok(e.reasons.some((r) => r.code === "step-up-later" && r.params.stepUpOn === "2028-03-10"));
    assert.equal(e.suggestedWindow.end.getTime(), from.getTime() - 1);
  });
  test("no step-up in a profile without it", () => {
    const e = evaluate(cert(), profiles["bank-ushield"]!, "web", at("2031-01-01T00:00:00+08:00"));
    assert.equal(e.stepUpFrom, null);
    assert.equal(e.state, "open");
  });
});

describe("a notAfter near midnight UTC: the CST day decides", () => {
  const p = resolveProfile({ id: "g", preset: "gov-supervision" });
  const cases: Array<{ name: string; notAfter: string; opensAt: string; closesAt: string; daysToExpiryAt: [string, number] }> = [
    { name: "23:30 UTC is already the next CST day", notAfter: "2027-03-10T23:30:00Z", opensAt: "2026-12-11T00:00:00+08:00", closesAt: "2028-01-05T23:59:59.999+08:00", daysToExpiryAt: ["2027-03-10T20:00:00Z", 0] },
    { name: "16:00 UTC is 00:00 CST of the next day", notAfter: "2027-03-10T16:00:00Z", opensAt: "2026-12-11T00:00:00+08:00", closesAt: "2028-01-05T23:59:59.999+08:00", daysToExpiryAt: ["2027-03-10T15:59:59.999Z", 1] },
    { name: "15:59:59.999 UTC is still the same CST day", notAfter: "2027-03-10T15:59:59.999Z", opensAt: "2026-12-10T00:00:00+08:00", closesAt: "2028-01-04T23:59:59.999+08:00", daysToExpiryAt: ["2027-03-10T16:00:00Z", -1] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const e = evaluate(cert({ notAfter: at(c.notAfter) }), p, "web", at(c.daysToExpiryAt[0]));
      assert.equal(e.opensAt?.toISOString(), at(c.opensAt).toISOString());
      assert.equal(e.closesAt?.toISOString(), at(c.closesAt).toISOString());
      assert.equal(e.daysToExpiry, c.daysToExpiryAt[1]);
    });
  }
  test("dates in millis (as the store keeps them) give the same answer", () => {
    const t = at("2027-01-01T00:00:00+08:00");
    const a = evaluate(cert(), p, "web", t);
    const b = evaluate({ notBefore: at("2022-03-10T10:00:00+08:00").getTime(), notAfter: notAfter.getTime(), status: "active", revokedAt: null }, p, "web", t);
    assert.deepEqual(a, b);
  });
});

describe("expiry, login and status", () => {
  const gov = resolveProfile({ id: "g", preset: "gov-supervision" });
  const ushield = resolveProfile({ id: "u", preset: "bank-ushield" });
  const cases: Array<{ name: string; profile: CertificateProfile; c: CertificateForPolicy; now: string; expired: boolean; loginAllowed: boolean; state: RenewalState }> = [
    { name: "valid to the millisecond of notAfter", profile: gov, c: cert(), now: "2027-03-10T10:00:00+08:00", expired: false, loginAllowed: true, state: "open" },
    { name: "expired one millisecond after notAfter, login refused (seed 004)", profile: gov, c: cert(), now: "2027-03-10T10:00:00.001+08:00", expired: true, loginAllowed: false, state: "open" },
    { name: "expired but login allowed where the profile says so (seed 002)", profile: ushield, c: cert(), now: "2027-03-20T10:00:00+08:00", expired: true, loginAllowed: true, state: "open" },
    { name: "status expired is not trusted over the dates", profile: gov, c: cert({ status: "expired" }), now: "2027-01-01T00:00:00+08:00", expired: false, loginAllowed: true, state: "open" },
    { name: "a pending certificate is closed", profile: gov, c: cert({ status: "pending" }), now: "2027-01-01T00:00:00+08:00", expired: false, loginAllowed: false, state: "closed" },
    { name: "an abandoned certificate is closed", profile: gov, c: cert({ status: "abandoned" }), now: "2027-01-01T00:00:00+08:00", expired: false, loginAllowed: false, state: "closed" },
    { name: "a revokedAt in the past revokes even if the status lags", profile: gov, c: cert({ revokedAt: at("2026-12-31T00:00:00+08:00") }), now: "2027-01-01T00:00:00+08:00", expired: false, loginAllowed: false, state: "revoked" },
    { name: "revoked wins over superseded status being absent and the window open", profile: gov, c: cert({ status: "revoked" }), now: "2027-01-01T00:00:00+08:00", expired: false, loginAllowed: false, state: "revoked" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const e = evaluate(c.c, c.profile, "web", at(c.now));
      assert.equal(e.state, c.state);
      assert.equal(e.expired, c.expired);
      assert.equal(e.loginAllowed, c.loginAllowed);
    });
  }
});

describe("suggested window", () => {
  const gov = resolveProfile({ id: "g", preset: "gov-supervision" });
  test("before the window: from the opening to the end of the middle day before expiry", () => {
    const e = evaluate(cert(), gov, "web", at("2026-06-01T00:00:00+08:00"));
    // opening day E-90, last good day E-1, middle E-46 = 2027-01-23
    assert.equal(e.suggestedWindow.start.toISOString(), at("2026-12-10T00:00:00+08:00").toISOString());
    assert.equal(e.suggestedWindow.end.toISOString(), at("2027-01-23T23:59:59.999+08:00").toISOString());
  });
  test("open before the middle: from now to that middle day", () => {
    const now = at("2026-12-20T09:00:00+08:00");
    const e = evaluate(cert(), gov, "web", now);
    assert.equal(e.suggestedWindow.start.getTime(), now.getTime());
    assert.equal(e.suggestedWindow.end.toISOString(), at("2027-01-23T23:59:59.999+08:00").toISOString());
  });
  test("open past the middle: today", () => {
    const now = at("2027-03-01T09:00:00+08:00");
    const e = evaluate(cert(), gov, "web", now);
    assert.equal(e.suggestedWindow.end.toISOString(), at("2027-03-01T23:59:59.999+08:00").toISOString());
  });
  test("closed: now, now", () => {
    const now = at("2029-01-01T09:00:00+08:00");
    const e = evaluate(cert(), gov, "web", now);
    assert.deepEqual(e.suggestedWindow, { start: now, end: now });
  });
  test("a window that opens only after expiry suggests the middle of the whole window", () => {
    const p = resolveProfile({ id: "late", renewal: { windows: { web: { opensDaysBefore: -10, closesDaysAfter: 30 } } } });
    const e = evaluate(cert(), p, "web", at("2027-01-01T00:00:00+08:00"));
    assert.equal(e.suggestedWindow.start.toISOString(), at("2027-03-20T00:00:00+08:00").toISOString());
    // opening day E+10, no day before expiry in the window: the middle of E+10..E+30 is E+20
    assert.equal(e.suggestedWindow.end.toISOString(), at("2027-03-30T23:59:59.999+08:00").toISOString());
  });
});

describe("reasons and explanations", () => {
  const ushield = resolveProfile({ id: "u", preset: "bank-ushield" });
  const personal = resolveProfile({ id: "p", preset: "bank-personal-ukey" });
  const gateway = resolveProfile({ id: "s", preset: "securities-gateway" });
  const cases: Array<{ name: string; profile: CertificateProfile; channel: RenewalChannel; now: string; c?: Partial<CertificateForPolicy>; zh: string; en: string }> = [
    { name: "not yet open, before notice", profile: ushield, channel: "web", now: "2026-12-01T08:00:00+08:00",
      zh: "证书有效期至 2027-03-10（还有 99 天）。网页在线更新将于 2026-12-10 开放（9 天后），可办理至 2032-02-12（含当天）。",
      en: "The certificate is valid until 2027-03-10 (99 days from now). Online renewal on the web portal opens on 2026-12-10 (in 9 days) and stays open through 2032-02-12." },
    { name: "open in the notice period", profile: ushield, channel: "mobile", now: "2026-12-15T08:00:00+08:00",
      zh: "证书即将于 2027-03-10 到期（还有 85 天），请及时更新。现在可以通过手机在线更新，可办理至 2027-04-09（含当天）。",
      en: "The certificate expires soon, on 2027-03-10 (in 85 days); please renew it. You can renew online on the mobile app now, through 2027-04-09." },
    { name: "mobile closed, web still open", profile: ushield, channel: "mobile", now: "2027-05-01T08:00:00+08:00",
      zh: "手机在线更新已于 2027-04-09 截止（证书于 2027-03-10 到期）。现在可以改用网页、命令行（ukey）在线更新。",
      en: "Online renewal on the mobile app closed on 2027-04-09 (the certificate expired on 2027-03-10). You can renew online on the web portal, the command line (ukey) now." },
    { name: "closed everywhere: the counter", profile: gateway, channel: "web", now: "2027-05-01T08:00:00+08:00",
      zh: "网页在线更新已于 2027-04-09 截止（证书于 2027-03-10 到期）。已无法在线更新，请携带身份证件（UKey 证书请同时带上 UKey）到机构柜台办理。",
      en: "Online renewal on the web portal closed on 2027-04-09 (the certificate expired on 2027-03-10). It can no longer be renewed online: go to the institution's counter with your ID (and the UKey, for a UKey certificate)." },
    { name: "channel not offered, another opens later", profile: personal, channel: "mobile", now: "2026-10-01T08:00:00+08:00",
      zh: "手机不提供在线更新。可改用网页、命令行（ukey）在线更新，2026-12-15 起开放。",
      en: "Online renewal is not offered on the mobile app. You can renew online on the web portal, the command line (ukey) from 2026-12-15." },
    { name: "step-up", profile: personal, channel: "web", now: "2028-06-01T08:00:00+08:00",
      zh: "证书已过期超过 365 天，在线更新前需要额外的身份验证。现在可以通过网页在线更新，可办理至 2037-03-07（含当天）。",
      en: "The certificate has been expired for more than 365 days, so online renewal needs an extra identity check. You can renew online on the web portal now, through 2037-03-07." },
    { name: "revoked", profile: personal, channel: "web", now: "2027-01-01T08:00:00+08:00", c: { status: "revoked", revokedAt: at("2026-11-30T20:00:00Z") },
      zh: "该证书已于 2026-12-01 注销，不能在线更新，请携带身份证件到柜台办理新证书。",
      en: "This certificate was revoked on 2026-12-01 and cannot be renewed online; take your ID to the counter for a new certificate." },
    { name: "superseded", profile: personal, channel: "web", now: "2027-01-01T08:00:00+08:00", c: { status: "superseded" },
      zh: "该证书已被更新后的新证书取代，无需再次更新，请使用新证书。",
      en: "This certificate has been replaced by a renewed one; there is nothing to renew, use the new certificate." },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const e = evaluate(cert(c.c), c.profile, c.channel, at(c.now));
      assert.equal(explainEvaluation(e, "zh-CN"), c.zh);
      assert.equal(explainEvaluation(e, "en"), c.en);
    });
  }
  test("every reason of every preset renders with no placeholder left", () => {
    for (const n of presetNames) {
      for (const ch of renewalChannels) {
        for (let day = -400; day <= 4000; day += 37) {
          const e = evaluate(cert(), profiles[n]!, ch, new Date(notAfter.getTime() + day * D));
          for (const r of e.reasons) {
            for (const lang of ["zh-CN", "en"] as const) assert.doesNotMatch(describeRenewalReason(r, lang), /\{\w+\}/, `${n} ${ch} ${day} ${r.code}`);
          }
          assert.ok(explainEvaluation(e, "en").length > 10);
        }
      }
    }
  });
  test("an expired certificate under a login-refusing profile says so", () => {
    const e = evaluate(cert(), profiles["gov-supervision"]!, "web", at("2027-04-01T00:00:00+08:00"));
    assert.ok(e.reasons.some((r) => r.code === "login-refused-expired"));
  });
});

test("presets are frozen", () => {
  assert.throws(() => { (profilePresets["gov-supervision"].renewal as { noticeDaysBefore: number }).noticeDaysBefore = 1; }, TypeError);
});

describe("renewalRefusal: the error a renewal attempt gets", () => {
  const personal = resolveProfile({ id: "p", preset: "bank-personal-ukey" });
  const gov = resolveProfile({ id: "g", preset: "gov-supervision" });
  const cases: Array<{ name: string; profile: CertificateProfile; channel: RenewalChannel; now: string; c?: Partial<CertificateForPolicy>; stepUpVerified?: boolean; code: string | null; params?: Record<string, string> }> = [
    { name: "open: none", profile: gov, channel: "web", now: "2027-01-01T00:00:00+08:00", code: null },
    { name: "not yet: RENEWAL_NOT_YET_OPEN with the opening day", profile: gov, channel: "web", now: "2026-12-09T23:59:59.999+08:00", code: "RENEWAL_NOT_YET_OPEN", params: { opensAt: "2026-12-10" } },
    { name: "closed: RENEWAL_WINDOW_CLOSED with the last day", profile: gov, channel: "web", now: "2028-01-05T00:00:00+08:00", code: "RENEWAL_WINDOW_CLOSED", params: { closedAt: "2028-01-04" } },
    { name: "no window on the channel: RENEWAL_CHANNEL_NOT_OFFERED", profile: gov, channel: "mobile", now: "2027-01-01T00:00:00+08:00", code: "RENEWAL_CHANNEL_NOT_OFFERED", params: { channel: "手机", offered: "网页、命令行（ukey）" } },
    { name: "step-up not yet done: STEP_UP_REQUIRED", profile: personal, channel: "web", now: "2028-06-01T00:00:00+08:00", code: "STEP_UP_REQUIRED" },
    { name: "step-up done: none", profile: personal, channel: "web", now: "2028-06-01T00:00:00+08:00", stepUpVerified: true, code: null },
    { name: "revoked: CERT_REVOKED", profile: gov, channel: "web", now: "2027-01-01T00:00:00+08:00", c: { status: "revoked" }, code: "CERT_REVOKED" },
    { name: "superseded: CERT_SUPERSEDED", profile: gov, channel: "web", now: "2027-01-01T00:00:00+08:00", c: { status: "superseded" }, code: "CERT_SUPERSEDED" },
    { name: "never issued: CERT_NOT_FOUND", profile: gov, channel: "web", now: "2027-01-01T00:00:00+08:00", c: { status: "abandoned" }, code: "CERT_NOT_FOUND" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const err = renewalRefusal(evaluate(cert(c.c), c.profile, c.channel, at(c.now)), { serial: "3af2", stepUpVerified: c.stepUpVerified });
      assert.equal(err?.code ?? null, c.code);
      for (const [k, v] of Object.entries(c.params ?? {})) assert.equal(err?.params[k], v);
      if (err) assert.doesNotMatch(err.toProblem().message["zh-CN"] + err.toProblem().remedy["zh-CN"], /\{\w+\}/);
    });
  }
});
