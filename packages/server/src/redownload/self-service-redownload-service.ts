import { timingSafeEqual } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { CertificateRecord, HolderRecord, Store } from "@ukey/store";
import { replaceable } from "../download-service.js";
import type { EnrolmentService } from "../enrolment-service.js";
import { hashIdNumber } from "../holder-identity.js";
import type { HolderSignInService, SignInStarted } from "../holder-session/holder-sign-in-service.js";

/** How long the authorization a verified SMS code gives lasts: enough to plug in the key and download. */
export const REDOWNLOAD_AUTHORIZATION_TTL_MS = 30 * 60_000;

/** What a started re-download answers: the same shape for every customer number and ID number typed. */
export interface RedownloadStarted extends SignInStarted {
  /** The phone the code went to, masked as maskPhone does ("138*****678"); for a decoy, a masked number drawn from what was typed. */
  sentTo: string;
}

/** One certificate the holder may download again, with the two codes of the existing download. */
export interface RedownloadAuthorization {
  referenceNumber: string;
  authorizationCode: string;
  expiresAt: string;
  certificate: { serial: string; subjectDn: string; notAfter: string; profileId: string; profileName: { "zh-CN": string; en: string } | null };
}

/**
 * Self-service re-download (seed 000's 证书下载 after a key was initialised
 * for a forgotten PIN or 内存不足): the holder proves the customer number,
 * the ID number on record and an SMS code to the phone on record, and gets
 * for each certificate that may be downloaded again (`replaceable`, of a
 * profile with `selfServiceRedownload`) an enrolment: a reference number and
 * authorization code valid 30 minutes, which the existing download redeems
 * (the agent makes a new key on the key; the CA signs the RA's record) and
 * which supersedes the old certificate in the same transaction.
 *
 * `start` answers alike whatever is typed (unknown customer number, wrong
 * ID number, no phone on record: a decoy through HolderSignInService.issue,
 * with a masked phone derived from what was typed), under the customer
 * number's daily quotas shared with sign-in. A holder who proves the ID
 * number but has nothing to re-download gets an SMS that says so and what
 * to do, instead of a code. Codes are hashed under their own purpose, so a
 * sign-in code never passes here.
 */
export class SelfServiceRedownloadService {
  constructor(private readonly deps: {
    store: Pick<Store, "holders" | "certificates" | "profiles">;
    signIn: Pick<HolderSignInService, "issue" | "check">;
    enrolments: Pick<EnrolmentService, "create">;
    clock: Clock;
    /** The data directory's ID key: ID numbers' hashes, and the decoys' masked phones. */
    idKey: Buffer;
    institution: { name: string };
  }) {}

  /**
   * Sends the SMS code (or the notice, or nothing: a decoy).
   * @throws UkeyError CODE_RESEND_TOO_SOON, CODE_DAILY_LIMIT.
   */
  async start(holderId: string, idNumber: string): Promise<RedownloadStarted> {
    const holder = await this.deps.store.holders.get(holderId);
    const proven = holder !== undefined && this.idMatches(holder, idNumber);
    const phone = proven ? holder.phone : null;
    const eligible = proven && phone ? await this.eligible(holder) : [];
    const name = this.deps.institution.name;
    const code = (c: string) => `【${name}】证书重新下载验证码 ${c}，5 分钟内有效。如非本人操作，请勿告诉他人并联系我们。Your code to download your certificate again is ${c}, valid for 5 minutes; never share it.`;
    const notice = `【${name}】您申请了证书重新下载，但目前没有可以在线重新下载的证书（证书已过期、已注销或被冻结）。请携带身份证件到柜台办理，或联系我们获取参考号和授权码。如非本人操作，请忽略。`
      + " You asked to download your certificate again, but none can be downloaded online (expired, revoked or on hold). Visit a branch with your ID, or ask us for a reference number and authorization code.";
    const { started, sentTo } = await this.deps.signIn.issue({
      typed: holderId, purpose: "redownload", channel: "sms",
      recipient: holder && phone ? { holder, to: phone } : null,
      message: eligible.length > 0
        ? { subject: { "zh-CN": "证书重新下载验证码", en: "Certificate download code" }, text: code }
        : { subject: { "zh-CN": "证书重新下载", en: "Certificate download" }, text: null, notice },
      decoyReason: !holder ? "unknown customer number" : !proven ? "ID number does not match" : "no phone on record",
    });
    return { ...started, sentTo: sentTo || this.decoyPhone(holderId, idNumber) };
  }

  /**
   * Checks the SMS code and turns it into one authorization (two codes) per
   * certificate that may be downloaded again.
   * @throws UkeyError SMS_CODE_INVALID (with triesLeft), CODE_INVALID, CODE_EXPIRED, CODE_ALREADY_USED,
   *   CODE_ATTEMPTS_EXCEEDED, CODE_GUESSES_EXHAUSTED, REDOWNLOAD_NOT_AVAILABLE (nothing left to download: revoked since).
   */
  async verify(challengeId: string, code: string): Promise<{ authorizations: RedownloadAuthorization[] }> {
    const { holder } = await this.deps.signIn.check(challengeId, code, "redownload");
    const eligible = await this.eligible(holder);
    if (eligible.length === 0) throw new UkeyError("REDOWNLOAD_NOT_AVAILABLE");
    const authorizations: RedownloadAuthorization[] = [];
    for (const { cert, profileName } of eligible) {
      const made = await this.deps.enrolments.create({
        holderId: holder.id, profileId: cert.profileId, actor: `holder:${holder.id}`,
        selfService: { replacesSerial: cert.serial, ttlMs: REDOWNLOAD_AUTHORIZATION_TTL_MS },
      });
      authorizations.push({
        referenceNumber: made.referenceNumber, authorizationCode: made.authorizationCode, expiresAt: new Date(made.enrolment.expiresAt).toISOString(),
        certificate: { serial: cert.serial, subjectDn: cert.subjectDn, notAfter: new Date(cert.notAfter).toISOString(), profileId: cert.profileId, profileName },
      });
    }
    return { authorizations };
  }

  /** The holder's certificates that may be downloaded again now, with their profiles' names. */
  private async eligible(holder: HolderRecord): Promise<Array<{ cert: CertificateRecord; profileName: RedownloadAuthorization["certificate"]["profileName"] }>> {
    const at = this.deps.clock.now().getTime();
    const out = [];
    for (const cert of await this.deps.store.certificates.search({ holderId: holder.id, status: "active", limit: 1000 })) {
      if (!replaceable(cert, at) || cert.holderId !== holder.id) continue;
      const profile = (await this.deps.store.profiles.get(cert.profileId))?.profile;
      if (profile?.selfServiceRedownload !== true) continue;
      out.push({ cert, profileName: profile.name });
    }
    return out;
  }

  private idMatches(holder: HolderRecord, idNumber: string): boolean {
    const given = Buffer.from(hashIdNumber(this.deps.idKey, holder.idType, idNumber));
    const expected = Buffer.from(holder.idHash);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /**
   * A decoy's masked phone: an 11-digit mobile number masked as maskPhone does,
   * the same for the same customer number and ID number typed, so that
   * asking twice does not tell a decoy from a real holder.
   */
  private decoyPhone(holderId: string, idNumber: string): string {
    const h = hashIdNumber(this.deps.idKey, "redownload-decoy-phone", `${holderId}\u0000${idNumber}`);
    const digits = [...Buffer.from(h, "hex")].map((b) => String(b % 10)).join("");
    return `1${3 + (Number(digits[0]) % 7)}${digits[1]}*****${digits.slice(2, 5)}`;
  }
}
