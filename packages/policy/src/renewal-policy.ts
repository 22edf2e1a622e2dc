import { renewalChannels, type CertificateProfile, type RenewalChannel } from "./certificate-profile.js";
import { UkeyError, type ErrorParams } from "./errors.js";
import { endOfPolicyDay, formatPolicyDate, millis, policyDay, startOfPolicyDay, type Instant } from "./policy-calendar.js";

/**
 * Where a certificate stands for renewal on one channel, by precedence
 * (the first that applies wins): revoked > superseded > closed > not-yet >
 * open-step-up > open.
 */
export type RenewalState = "not-yet" | "open" | "open-step-up" | "closed" | "revoked" | "superseded";

/** Certificate statuses as the store keeps them; only the dates decide between active and expired. */
export type CertificateStatusForPolicy = "pending" | "active" | "revoked" | "superseded" | "expired" | "abandoned";

/** What `evaluate` needs of a certificate. Dates may be Date or epoch milliseconds. */
export interface CertificateForPolicy {
  notBefore: Instant;
  notAfter: Instant;
  status: CertificateStatusForPolicy;
  revokedAt?: Instant | null;
  /** RFC 5280 reason of a revocation; "certificateHold" is a suspension the institution may lift (seed 003, 冻结). */
  revocationReason?: string | null;
}

/**
 * Why a certificate is in its state, as a code and the parameters of its
 * sentence; `describeRenewalReason` renders it in zh-CN or en. Dates in
 * params are YYYY-MM-DD in CST; `channel` is a RenewalChannel;
 * `channels` a comma-separated list of them.
 */
export type RenewalReasonCode =
  | "cert-revoked"          // { revokedOn }
  | "cert-on-hold"          // { heldOn }  (revoked with reason certificateHold: suspended until the institution lifts it)
  | "cert-superseded"       // {}
  | "cert-not-issued"       // {}
  | "channel-not-offered"   // { channel, channels }  (channels: those that do offer renewal; may be "")
  | "window-closed"         // { channel, closedOn, expiredOn }
  | "window-not-yet-open"   // { channel, opensOn, closesOn, days }  (days until it opens)
  | "window-open"           // { channel, closesOn }
  | "other-channel-open"    // { channels }  (open now on these channels)
  | "other-channel-later"   // { channels, opensOn }  (none open now; these open later, the first on opensOn)
  | "counter-required"      // {}  (no online way left: the counter)
  | "valid-until"           // { expiresOn, days }  (before the notice period)
  | "expires-soon"          // { expiresOn, days }  (in the notice period)
  | "expired"               // { expiredOn, days }  (days since expiry)
  | "step-up-required"      // { afterDaysExpired, expiredOn }
  | "step-up-later"         // { stepUpOn, afterDaysExpired }
  | "login-refused-expired"; // {}

/** One reason of an evaluation. */
export interface RenewalReason {
  code: RenewalReasonCode;
  params: ErrorParams;
}

/** The answer of `evaluate`; see there for every boundary. */
export interface RenewalEvaluation {
  state: RenewalState;
  /** The channel evaluated. */
  channel: RenewalChannel;
  /** The certificate's notAfter, as a Date. */
  notAfter: Date;
  /** 00:00 CST of the opening day; null when the channel offers no window. */
  opensAt: Date | null;
  /** 23:59:59.999 CST of the last day of the window (inclusive); null when the channel offers no window. */
  closesAt: Date | null;
  /** 00:00 CST of the first day holders are warned. */
  noticeFrom: Date;
  /** 00:00 CST of the first day step-up is required; null when the profile has no step-up. */
  stepUpFrom: Date | null;
  /**
   * When a client SHOULD renew (RFC 9773 suggestedWindow), never null:
   * - not-yet: from opensAt to the end of the middle day between the
   *   opening day and the day before expiry (or, for a window that opens
   *   on or after the expiry day, the middle day of the whole window);
   * - open, open-step-up: from now to the later of that end and the end of
   *   today, never past closesAt nor past the day before step-up starts;
   * - closed, revoked, superseded: { now, now }, "replace it now" (RFC 9773
   *   asks for a window in the past or present for a certificate to
   *   replace at once); online renewal is not possible, and `state` and
   *   `reasons` say where to go.
   */
  suggestedWindow: { start: Date; end: Date };
  /** now ≥ noticeFrom and the certificate is neither revoked, superseded nor unissued (stays true after expiry). */
  inNotice: boolean;
  /** now > notAfter (notAfter itself is still valid, RFC 5280). */
  expired: boolean;
  /** CST day of notAfter minus CST day of now: 0 on the expiry day, negative after it. */
  daysToExpiry: number;
  /**
   * Whether the certificate may still sign in: not revoked (nor revoked as
   * superseded), issued, and not expired unless the profile's
   * loginWhenExpired allows it; a superseded certificate left to expire
   * signs in only until its own expiry (it needs no renewal).
   */
  loginAllowed: boolean;
  /** Other channels of the profile whose window is open now. */
  otherChannelsOpen: RenewalChannel[];
  /** Why, most important first. */
  reasons: RenewalReason[];
}

/**
 * The renewal decision for one certificate under one profile on one
 * channel at `now`: the one function the server's advice, the agent, the
 * portal and the reminders share. Pure; throws nothing.
 *
 * Boundaries. A "day" is a calendar day in China Standard Time (UTC+8,
 * POLICY_UTC_OFFSET_MS, no DST). Let E be the CST day of notAfter.
 * - The window opens at 00:00:00.000 CST of day E − opensDaysBefore and
 *   closes after 23:59:59.999 CST of day E + closesDaysAfter: both the
 *   opening day and the last day are inside.
 * - Notice starts at 00:00 CST of day E − noticeDaysBefore.
 * - Step-up starts at 00:00 CST of day E + afterDaysExpired + 1: the first
 *   day on which the certificate has been expired for more than
 *   afterDaysExpired days ("过期超过 1 年"); "within N days after expiry"
 *   windows end on day E + N, so the two rules meet without a gap.
 * - Expired means now > notAfter, to the millisecond.
 *
 * State, first match wins: revoked (status "revoked", or a revokedAt at or
 * before now on a record not marked superseded) > superseded (status
 * "superseded") > closed (status "pending"/"abandoned", the channel offers
 * no window, or now is after closesAt) > not-yet (before opensAt) >
 * open-step-up (at or after stepUpFrom) > open. Status "expired" and
 * "active" are not trusted: the dates decide.
 */
export function evaluate(certificate: CertificateForPolicy, profile: Pick<CertificateProfile, "renewal">, channel: RenewalChannel, now: Date): RenewalEvaluation {
  const t = now.getTime();
  const notAfter = millis(certificate.notAfter);
  const E = policyDay(notAfter);
  const today = policyDay(t);
  const rules = profile.renewal;
  const win = rules.windows[channel];
  const opensAt = win ? startOfPolicyDay(E - win.opensDaysBefore) : null;
  const closesAt = win ? endOfPolicyDay(E + win.closesDaysAfter) : null;
  const noticeFrom = startOfPolicyDay(E - rules.noticeDaysBefore);
  const stepUpFrom = rules.stepUp ? startOfPolicyDay(E + rules.stepUp.afterDaysExpired + 1) : null;
  const expired = t > notAfter;
  const daysToExpiry = E - today;
  const revokedAt = certificate.revokedAt === null || certificate.revokedAt === undefined ? null : millis(certificate.revokedAt);
  const status = certificate.status;
  const revoked = status === "revoked" || (status !== "superseded" && revokedAt !== null && revokedAt <= t);
  const unissued = status === "pending" || status === "abandoned";
  const live = !revoked && status !== "superseded" && !unissued;

  const otherChannelsOpen = live
    ? renewalChannels.filter((c) => c !== channel && isOpen(profile, c, E, t))
    : [];
  const offered = renewalChannels.filter((c) => rules.windows[c] !== null);
  const expiresOn = formatPolicyDate(notAfter);
  const reasons: RenewalReason[] = [];
  // When this channel cannot renew, say where the holder can: another channel now, another later, or the counter.
  const otherWay = () => {
    if (otherChannelsOpen.length) {
      reasons.push({ code: "other-channel-open", params: { channels: otherChannelsOpen.join(", ") } });
      return;
    }
    const later = offered.filter((c) => c !== channel && t < startOfPolicyDay(E - (rules.windows[c]?.opensDaysBefore ?? 0)).getTime());
    const firstDay = Math.min(...later.map((c) => E - (rules.windows[c]?.opensDaysBefore ?? 0)));
    if (later.length) reasons.push({ code: "other-channel-later", params: { channels: later.join(", "), opensOn: formatPolicyDate(startOfPolicyDay(firstDay)) } });
    else reasons.push({ code: "counter-required", params: {} });
  };

  let state: RenewalState;
  if (revoked) {
    state = "revoked";
    const on = revokedAt === null ? "" : formatPolicyDate(revokedAt);
    if (certificate.revocationReason === "certificateHold") reasons.push({ code: "cert-on-hold", params: { heldOn: on } });
    else reasons.push({ code: "cert-revoked", params: { revokedOn: on } });
  } else if (status === "superseded") {
    state = "superseded";
    reasons.push({ code: "cert-superseded", params: {} });
  } else if (unissued) {
    state = "closed";
    reasons.push({ code: "cert-not-issued", params: {} });
  } else if (!win || !opensAt || !closesAt) {
    state = "closed";
    reasons.push({ code: "channel-not-offered", params: { channel, channels: offered.join(", ") } });
    otherWay();
  } else if (t > closesAt.getTime()) {
    state = "closed";
    reasons.push({ code: "window-closed", params: { channel, closedOn: formatPolicyDate(closesAt), expiredOn: expiresOn } });
    otherWay();
  } else if (t < opensAt.getTime()) {
    state = "not-yet";
    reasons.push({ code: "window-not-yet-open", params: { channel, opensOn: formatPolicyDate(opensAt), closesOn: formatPolicyDate(closesAt), days: E - win.opensDaysBefore - today } });
    if (otherChannelsOpen.length) reasons.push({ code: "other-channel-open", params: { channels: otherChannelsOpen.join(", ") } });
  } else if (stepUpFrom && t >= stepUpFrom.getTime()) {
    state = "open-step-up";
    reasons.push({ code: "step-up-required", params: { afterDaysExpired: rules.stepUp?.afterDaysExpired ?? 0, expiredOn: expiresOn } });
    reasons.push({ code: "window-open", params: { channel, closesOn: formatPolicyDate(closesAt) } });
  } else {
    state = "open";
    reasons.push({ code: "window-open", params: { channel, closesOn: formatPolicyDate(closesAt) } });
  }
  if (live) {
    if (expired) reasons.push({ code: "expired", params: { expiredOn: expiresOn, days: -daysToExpiry } });
    else if (t >= noticeFrom.getTime()) reasons.push({ code: "expires-soon", params: { expiresOn, days: daysToExpiry } });
    else reasons.push({ code: "valid-until", params: { expiresOn, days: daysToExpiry } });
    if (state === "open" && expired && stepUpFrom && rules.stepUp) {
      reasons.push({ code: "step-up-later", params: { stepUpOn: formatPolicyDate(stepUpFrom), afterDaysExpired: rules.stepUp.afterDaysExpired } });
    }
    if (expired && !rules.loginWhenExpired) reasons.push({ code: "login-refused-expired", params: {} });
  }

  let suggestedWindow: { start: Date; end: Date };
  if ((state === "not-yet" || state === "open" || state === "open-step-up") && win && opensAt && closesAt) {
    const openDay = E - win.opensDaysBefore;
    let lastGoodDay = Math.min(E - 1, E + win.closesDaysAfter);
    if (lastGoodDay < openDay) lastGoodDay = E + win.closesDaysAfter;
    let end = endOfPolicyDay(openDay + Math.floor((lastGoodDay - openDay) / 2)).getTime();
    const start = state === "not-yet" ? opensAt.getTime() : t;
    if (state !== "not-yet") end = Math.max(end, endOfPolicyDay(today).getTime());
    end = Math.min(end, closesAt.getTime());
    if (stepUpFrom && start < stepUpFrom.getTime()) end = Math.min(end, stepUpFrom.getTime() - 1);
    suggestedWindow = { start: new Date(start), end: new Date(Math.max(start, end)) };
  } else {
    suggestedWindow = { start: new Date(t), end: new Date(t) };
  }

  const revokedByNow = revokedAt !== null && revokedAt <= t;
  const loginAllowed = !revoked && !revokedByNow && !unissued && (status === "superseded" ? !expired : !expired || rules.loginWhenExpired);

  return {
    state, channel, notAfter: new Date(notAfter), opensAt, closesAt, noticeFrom, stepUpFrom, suggestedWindow,
    inNotice: live && t >= noticeFrom.getTime(), expired, daysToExpiry, loginAllowed, otherChannelsOpen, reasons,
  };
}

function isOpen(profile: Pick<CertificateProfile, "renewal">, c: RenewalChannel, E: number, t: number): boolean {
  const w = profile.renewal.windows[c];
  return w !== null && t >= startOfPolicyDay(E - w.opensDaysBefore).getTime() && t <= endOfPolicyDay(E + w.closesDaysAfter).getTime();
}

/** A holder-facing language. */
export type PolicyLanguage = "zh-CN" | "en";

/** Channel names as holders read them. */
export const channelNames: Readonly<Record<RenewalChannel, { "zh-CN": string; en: string }>> = {
  web: { "zh-CN": "网页", en: "the web portal" },
  mobile: { "zh-CN": "手机", en: "the mobile app" },
  cli: { "zh-CN": "命令行（ukey）", en: "the command line (ukey)" },
  est: { "zh-CN": "EST 自动更新", en: "EST (automatic renewal)" },
};

/** Sentence templates of each reason; `{name}` is filled from params (channels by their names). */
export const renewalReasonTexts: Readonly<Record<RenewalReasonCode, { "zh-CN": string; en: string }>> = {
  "cert-revoked": { "zh-CN": "该证书已于 {revokedOn} 注销，不能在线更新，请携带身份证件到柜台办理新证书。", en: "This certificate was revoked on {revokedOn} and cannot be renewed online; take your ID to the counter for a new certificate." },
  "cert-on-hold": { "zh-CN": "该证书已于 {heldOn} 被机构冻结（暂停使用），冻结期间不能在线更新或下载；请向机构询问原因，解除冻结后即可继续。", en: "This certificate was put on hold (suspended) by the institution on {heldOn}; while the hold lasts it cannot be renewed or downloaded online. Ask the institution why; once it lifts the hold you can go on." },
  "cert-superseded": { "zh-CN": "该证书已被更新后的新证书取代，无需再次更新，请使用新证书。", en: "This certificate has been replaced by a renewed one; there is nothing to renew, use the new certificate." },
  "cert-not-issued": { "zh-CN": "该证书尚未签发完成，不能更新；请继续完成进行中的申请。", en: "This certificate was never completely issued and cannot be renewed; finish the open request instead." },
  "channel-not-offered": { "zh-CN": "{channel}不提供在线更新。", en: "Online renewal is not offered on {channel}." },
  "window-closed": { "zh-CN": "{channel}在线更新已于 {closedOn} 截止（证书于 {expiredOn} 到期）。", en: "Online renewal on {channel} closed on {closedOn} (the certificate expired on {expiredOn})." },
  "window-not-yet-open": { "zh-CN": "{channel}在线更新将于 {opensOn} 开放（{days} 天后），可办理至 {closesOn}（含当天）。", en: "Online renewal on {channel} opens on {opensOn} (in {days} days) and stays open through {closesOn}." },
  "window-open": { "zh-CN": "现在可以通过{channel}在线更新，可办理至 {closesOn}（含当天）。", en: "You can renew online on {channel} now, through {closesOn}." },
  "other-channel-open": { "zh-CN": "现在可以改用{channels}在线更新。", en: "You can renew online on {channels} now." },
  "other-channel-later": { "zh-CN": "可改用{channels}在线更新，{opensOn} 起开放。", en: "You can renew online on {channels} from {opensOn}." },
  "counter-required": { "zh-CN": "已无法在线更新，请携带身份证件（UKey 证书请同时带上 UKey）到机构柜台办理。", en: "It can no longer be renewed online: go to the institution's counter with your ID (and the UKey, for a UKey certificate)." },
  "valid-until": { "zh-CN": "证书有效期至 {expiresOn}（还有 {days} 天）。", en: "The certificate is valid until {expiresOn} ({days} days from now)." },
  "expires-soon": { "zh-CN": "证书即将于 {expiresOn} 到期（还有 {days} 天），请及时更新。", en: "The certificate expires soon, on {expiresOn} (in {days} days); please renew it." },
  "expired": { "zh-CN": "证书已于 {expiredOn} 到期（已过期 {days} 天）。", en: "The certificate expired on {expiredOn} ({days} days ago)." },
  "step-up-required": { "zh-CN": "证书已过期超过 {afterDaysExpired} 天，在线更新前需要额外的身份验证。", en: "The certificate has been expired for more than {afterDaysExpired} days, so online renewal needs an extra identity check." },
  "step-up-later": { "zh-CN": "自 {stepUpOn} 起在线更新需要额外的身份验证。", en: "From {stepUpOn} online renewal will need an extra identity check." },
  "login-refused-expired": { "zh-CN": "已过期的证书不能用于登录，请直接从证书更新入口办理。", en: "An expired certificate cannot be used to sign in; go straight to renewal." },
};

function channelList(list: string, lang: PolicyLanguage): string {
  const names = list.split(",").map((s) => s.trim()).filter((s): s is RenewalChannel => (renewalChannels as readonly string[]).includes(s)).map((c) => channelNames[c][lang]);
  if (names.length === 0) return lang === "zh-CN" ? "无，仅柜台" : "none, only the counter";
  return names.join(lang === "zh-CN" ? "、" : ", ");
}

/** One reason as a sentence in `lang`. Throws nothing; unknown placeholders stay visible. */
export function describeRenewalReason(reason: RenewalReason, lang: PolicyLanguage): string {
  return renewalReasonTexts[reason.code][lang].replace(/\{(\w+)\}/g, (m, k: string) => {
    const v = reason.params[k];
    if (v === undefined) return m;
    if (k === "channel") return channelList(String(v), lang);
    if (k === "channels") return channelList(String(v), lang);
    return String(v);
  });
}

/**
 * One or two plain sentences for the holder, with dates as YYYY-MM-DD in
 * CST. not-yet and open: the expiry date, then the window; open-step-up:
 * the extra check, then the window; closed: why, then another channel that
 * is open now if any; revoked and superseded: what to do. Throws nothing.
 */
export function explainEvaluation(e: RenewalEvaluation, lang: PolicyLanguage): string {
  const find = (...codes: RenewalReasonCode[]) => e.reasons.find((r) => codes.includes(r.code));
  const pick: Array<RenewalReason | undefined> =
    e.state === "not-yet" ? [find("valid-until", "expires-soon", "expired"), find("window-not-yet-open")]
    : e.state === "open" ? [find("valid-until", "expires-soon", "expired"), find("window-open")]
    : e.state === "open-step-up" ? [find("step-up-required"), find("window-open")]
    : e.state === "closed" ? [e.reasons[0], find("other-channel-open", "other-channel-later", "counter-required")]
    : [e.reasons[0]];
  return pick.filter((r): r is RenewalReason => r !== undefined)
    .map((r) => describeRenewalReason(r, lang))
    .join(lang === "zh-CN" ? "" : " ");
}

/**
 * The error a renewal attempt gets in the state `e` describes, or null
 * when it may go on: on hold → CERT_ON_HOLD; revoked → CERT_REVOKED; superseded → CERT_SUPERSEDED;
 * never issued → CERT_NOT_FOUND; channel without a window →
 * RENEWAL_CHANNEL_NOT_OFFERED (params channel and offered, holder words in
 * `lang`); not-yet → RENEWAL_NOT_YET_OPEN (opensAt as YYYY-MM-DD CST);
 * closed → RENEWAL_WINDOW_CLOSED (closedAt likewise); open-step-up without
 * `stepUpVerified` → STEP_UP_REQUIRED. Builds, never throws.
 */
export function renewalRefusal(e: RenewalEvaluation, at: { serial: string; stepUpVerified?: boolean; lang?: PolicyLanguage }): UkeyError | null {
  const lang = at.lang ?? "zh-CN";
  const first = e.reasons[0];
  switch (e.state) {
    case "revoked": return new UkeyError(first?.code === "cert-on-hold" ? "CERT_ON_HOLD" : "CERT_REVOKED", { params: { serial: at.serial } });
    case "superseded": return new UkeyError("CERT_SUPERSEDED", { params: { serial: at.serial } });
    case "not-yet": return new UkeyError("RENEWAL_NOT_YET_OPEN", { params: { opensAt: e.opensAt ? formatPolicyDate(e.opensAt) : "" } });
    case "open-step-up": return at.stepUpVerified ? null : new UkeyError("STEP_UP_REQUIRED", { params: { serial: at.serial } });
    case "open": return null;
    case "closed":
      if (first?.code === "cert-not-issued") return new UkeyError("CERT_NOT_FOUND", { params: { serial: at.serial } });
      if (first?.code === "channel-not-offered" || !e.closesAt) {
        return new UkeyError("RENEWAL_CHANNEL_NOT_OFFERED", {
          params: { channel: channelNames[e.channel][lang], offered: channelList(String(first?.params.channels ?? ""), lang) },
        });
      }
      return new UkeyError("RENEWAL_WINDOW_CLOSED", { params: { closedAt: formatPolicyDate(e.closesAt) } });
  }
}
