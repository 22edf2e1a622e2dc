import { UkeyError, evaluate, explainEvaluation, isPairProfile, validityFor, type Clock, type KeyAlgorithm, type RenewalChannel, type RenewalEvaluation } from "@ukey/policy";
import type { Store } from "@ukey/store";
import { parseCertId } from "./cert-id.js";
import { renewalLockedUntil } from "./renewal/renewal-lock.js";

/** The renewal advice document (RFC 9773's RenewalInfo, with our fields beside). */
export interface RenewalInfo {
  suggestedWindow: { start: string; end: string };
  explanationURL: string;
  state: RenewalEvaluation["state"];
  channel: RenewalChannel;
  opensAt: string | null;
  closesAt: string | null;
  noticeFrom: string;
  stepUpFrom: string | null;
  /**
   * While an order that failed on wrong answers pauses the certificate's
   * online renewal (RENEWAL_LOCKED): when the pause ends; else null. The
   * window's state is the policy's and does not change with it.
   */
  lockedUntil: string | null;
  /**
   * Seed 004's login rule, for the institution's login system: whether a
   * login with this certificate is allowed now (the policy's loginAllowed),
   * and from when it will be refused once expired (the instant after
   * notAfter), or null when the profile lets expired certificates log in or
   * the refusal has already begun.
   */
  login: { allowed: boolean; refusedFrom: string | null };
  explanation: { "zh-CN": string; en: string };
  /**
   * What a renewal now would issue (seed 004 §3.5: the holder checks it
   * before renewing): the validity the profile gives from this moment
   * (`validityFor`), the key algorithms it accepts, whether it issues a
   * signing + encryption pair, and the profile's name. Computed from the
   * certificate's own dates and the profile alone, so it says nothing the
   * certificate does not; null once the certificate is revoked, on hold or
   * superseded.
   */
  renewal: { notBefore: string; notAfter: string; keyAlgorithms: KeyAlgorithm[]; pair: boolean; profile: { "zh-CN": string; en: string } } | null;
  /**
   * `revocationReason` is RFC 5280's, as OCSP and the CRL publish it ("certificateHold": on hold, 冻结, may be lifted); null while not revoked.
   * No subject: the route answers anyone who knows a serial, and the subject names the holder.
   */
  certificate: { serial: string; issuerKeyId: string; notBefore: string; notAfter: string; status: string; revocationReason: string | null; imported: boolean };
}

/**
 * The answer of the login check (seed 004's login rule) for the
 * institution's login system: only what decides a login, nothing about
 * the holder, orders or pauses.
 */
export interface LoginCheck {
  /** Whether a login with this certificate is allowed now (the policy's loginAllowed). */
  allowed: boolean;
  /** From when logins will be refused (the instant after notAfter), or null when they will not be or already are. */
  refusedFrom: string | null;
  /** Whether the login page should show the red renewal warning now (allowed, and within the profile's notice period). */
  warn: boolean;
  /** From when that warning is shown (start of the notice period, China days). */
  warnFrom: string;
  /** Why, in one word: valid, expired, revoked, on-hold (certificateHold, may be lifted) or superseded. */
  reason: "valid" | "expired" | "revoked" | "on-hold" | "superseded";
  certificate: { serial: string; notAfter: string };
}

/** Clients poll again after this long, unless the window opens sooner. */
const defaultRetryAfterSeconds = 6 * 3600;

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

/**
 * Renewal advice for one certificate, ours or imported from a foreign
 * issuer: the policy of its profile evaluated on the channel at the
 * current time. One call to the shared `evaluate`, nothing decided here.
 */
export class RenewalInfoService {
  constructor(private readonly deps: { store: Pick<Store, "certificates" | "profiles" | "orders">; clock: Clock; publicUrl: string }) {}

  /**
   * Seed 004's login rule for one certificate, decided by the policy's
   * loginAllowed as the renewal advice is (docs/renewal-info.md, "Login check").
   * @throws UkeyError CERT_ID_MALFORMED, CERT_NOT_FOUND, PROFILE_NOT_FOUND.
   */
  async loginCheck(certId: string): Promise<LoginCheck> {
    const { info } = await this.get(certId, "web");
    const now = this.deps.clock.now().getTime();
    const c = info.certificate;
    const held = await this.deps.store.certificates.get(c.serial, c.issuerKeyId);
    const reason: LoginCheck["reason"] = c.status === "superseded" ? "superseded"
      : info.state === "revoked" ? (held?.revocationReason === "certificateHold" ? "on-hold" : "revoked")
      : now > Date.parse(c.notAfter) ? "expired" : "valid";
    return {
      allowed: info.login.allowed, refusedFrom: info.login.refusedFrom,
      warn: info.login.allowed && reason === "valid" && now >= Date.parse(info.noticeFrom), warnFrom: info.noticeFrom,
      reason, certificate: { serial: c.serial, notAfter: c.notAfter },
    };
  }

  /**
   * @throws UkeyError CERT_ID_MALFORMED, CERT_NOT_FOUND, PROFILE_NOT_FOUND.
   */
  async get(certId: string, channel: RenewalChannel): Promise<{ info: RenewalInfo; retryAfterSeconds: number }> {
    const id = parseCertId(certId);
    const rec = await this.deps.store.certificates.get(id.serial, id.issuerKeyId);
    if (!rec || rec.der === null) throw new UkeyError("CERT_NOT_FOUND", { params: { serial: id.serial } });
    const profile = (await this.deps.store.profiles.get(rec.profileId))?.profile;
    if (!profile) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: rec.profileId } });
    const now = this.deps.clock.now();
    const e = evaluate(
      { notBefore: new Date(rec.notBefore), notAfter: new Date(rec.notAfter), status: rec.status, revokedAt: rec.revokedAt === null ? null : new Date(rec.revokedAt), revocationReason: rec.revocationReason },
      profile, channel, now,
    );
    const lockedUntil = e.state === "open" || e.state === "open-step-up" || e.state === "not-yet"
      ? renewalLockedUntil(await this.deps.store.orders.lastFailedAt(rec.serial), now.getTime()) : null;
    const untilOpen = e.state === "not-yet" && e.opensAt ? Math.ceil((e.opensAt.getTime() - now.getTime()) / 1000) : Infinity;
    return {
      retryAfterSeconds: Math.max(60, Math.min(defaultRetryAfterSeconds, untilOpen)),
      info: {
        suggestedWindow: { start: e.suggestedWindow.start.toISOString(), end: e.suggestedWindow.end.toISOString() },
        explanationURL: `${this.deps.publicUrl.replace(/\/+$/, "")}/help/renewal#${e.state}`,
        state: e.state,
        channel,
        opensAt: iso(e.opensAt),
        closesAt: iso(e.closesAt),
        noticeFrom: e.noticeFrom.toISOString(),
        stepUpFrom: iso(e.stepUpFrom),
        lockedUntil: iso(lockedUntil),
        login: {
          allowed: e.loginAllowed,
          refusedFrom: e.loginAllowed && !profile.renewal.loginWhenExpired && rec.status !== "superseded" ? new Date(rec.notAfter + 1).toISOString() : null,
        },
        explanation: { "zh-CN": explainEvaluation(e, "zh-CN"), en: explainEvaluation(e, "en") },
        renewal: e.state === "revoked" || e.state === "superseded" ? null : (() => {
          const v = validityFor(profile, { now, oldNotAfter: new Date(rec.notAfter) });
          return { notBefore: v.notBefore.toISOString(), notAfter: v.notAfter.toISOString(), keyAlgorithms: [...profile.keyAlgorithms], pair: isPairProfile(profile), profile: { ...profile.name } };
        })(),
        certificate: {
          serial: rec.serial, issuerKeyId: rec.issuerKeyId,
          notBefore: new Date(rec.notBefore).toISOString(), notAfter: new Date(rec.notAfter).toISOString(),
          status: rec.status, revocationReason: rec.revocationReason ?? null, imported: rec.imported,
        },
      },
    };
  }
}
