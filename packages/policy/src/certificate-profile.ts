import { DAY_MS, addPolicyYears } from "./policy-calendar.js";

/** Key algorithms ukey-renew issues for and signs with. */
export type KeyAlgorithm = "p256" | "p384" | "rsa2048" | "rsa3072" | "rsa4096" | "sm2";
export const keyAlgorithms: readonly KeyAlgorithm[] = ["p256", "p384", "rsa2048", "rsa3072", "rsa4096", "sm2"];

/** RFC 5280 keyUsage bits a profile may set. */
export type KeyUsageName =
  | "digitalSignature" | "nonRepudiation" | "keyEncipherment" | "dataEncipherment" | "keyAgreement";

/** Extended key usages by name; anything else is given as a dotted OID. */
export const extKeyUsageOids = {
  clientAuth: "1.3.6.1.5.5.7.3.2",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

/** How long a new certificate is valid: whole days (seed 004: 1820) or calendar years (seeds 000/002: 5). */
export type Validity = { days: number } | { years: number };

/** The ways a holder or a client reaches renewal; each may have its own window. */
export type RenewalChannel = "web" | "mobile" | "cli" | "est";
/** All channels, in display order. */
export const renewalChannels: readonly RenewalChannel[] = ["web", "mobile", "cli", "est"];

/**
 * An online renewal window, counted in CST calendar days around the CST day
 * of the certificate's notAfter (see renewal-policy.ts for the exact
 * boundaries). Negative values are allowed (a window that opens only after
 * expiry, or closes before it); `opensDaysBefore + closesDaysAfter` must be
 * at least 0 so that the window has at least one day.
 */
export interface RenewalWindow {
  /** The window opens at 00:00 CST of the day this many days before the expiry day. */
  opensDaysBefore: number;
  /** The window closes at the end (23:59:59.999 CST) of the day this many days after the expiry day. */
  closesDaysAfter: number;
}

/** What a profile says about renewing its certificates. */
export interface RenewalRules {
  /** The window per channel; null: that channel does not offer renewal (the counter does). */
  windows: Record<RenewalChannel, RenewalWindow | null>;
  /** Holders are warned from 00:00 CST of the day this many days before the expiry day (seed 000: 85, seed 004: 90). */
  noticeDaysBefore: number;
  /**
   * Extra verification when the certificate has been expired for more than
   * this many days (seed 000: one year); null: never.
   */
  stepUp: { afterDaysExpired: number } | null;
  /** Whether an expired certificate may still sign in (seed 004: no). */
  loginWhenExpired: boolean;
  /** What happens to the old certificate once its renewal completes. */
  onCompletion: "revoke-superseded" | "leave-to-expire";
  /**
   * Reminder thresholds in days relative to the expiry day (90: 90 days
   * before, 0: the expiry day, -30: 30 days after): a holder is reminded
   * once as the certificate reaches each. Absent: DEFAULT_REMINDER_DAYS;
   * empty: no reminders. See `reminderThresholds`.
   */
  reminders?: readonly number[];
}

/** The reminder thresholds of a profile that names none and has the default 90-day notice: 90, 30, 7 and 1 days before, the expiry day, 30 days after (the first follows the notice period: reminderThresholds). */
export const DEFAULT_REMINDER_DAYS: readonly number[] = Object.freeze([90, 30, 7, 1, 0, -30]);

/**
 * A profile's reminder thresholds, earliest first (largest number first),
 * without repeats. A profile that names none is reminded first when its
 * notice period starts (85 days before for seed 000's preset, 30 for seed
 * 001's), then at the defaults inside it (30, 7, 1 days before, the expiry
 * day, 30 days after). Throws nothing.
 */
export function reminderThresholds(profile: Pick<CertificateProfile, "renewal">): number[] {
  const own = profile.renewal.reminders;
  if (own) return [...new Set(own)].sort((a, b) => b - a);
  const notice = profile.renewal.noticeDaysBefore;
  return [...new Set([notice, ...DEFAULT_REMINDER_DAYS.filter((d) => d < notice)])].sort((a, b) => b - a);
}

/**
 * What a certificate profile says about the certificates issued under it
 * and about their renewal. The CA reads the issuance fields; renewal
 * decisions read `renewal` through `evaluate` (renewal-policy.ts).
 * Build one from operator input with `parseCertificateProfile` or
 * `resolveProfile` (profile-parser.ts), never by hand from untrusted data.
 */
export interface CertificateProfile {
  /** Stable identifier, e.g. "personal". */
  id: string;
  /** Human name, zh-CN and en. */
  name: { "zh-CN": string; en: string };
  /** Key algorithms accepted in a CSR; never empty. */
  keyAlgorithms: KeyAlgorithm[];
  /** How long a new certificate is valid, from the anchor. */
  validity: Validity;
  /**
   * "issuance": from the day of issuance (seed 002: "服务器起始日为当天");
   * "carry-over": added to the old certificate's notAfter when that is still
   * ahead, so renewing early loses nothing. See `validityFor`.
   */
  validityAnchor: "issuance" | "carry-over";
  keyUsage: KeyUsageName[];
  /** Names from extKeyUsageOids or dotted OIDs. */
  extKeyUsage: string[];
  /** What the certificate holds: a hardware key (UKey) or a PKCS#12 file. */
  certificateKind: "hardware" | "file";
  /**
   * What a holder proves before a renewal, beyond proof of possession of the
   * current key (always required: the agent signs a server challenge with
   * it). `idNumber`: the ID type and number must match the record (seed 000's
   * 证件校验). `oneTimeCode`: a code sent to the phone or e-mail on record
   * (seed 000's 手机动态密码), or null. Step-up for long-expired certificates
   * comes from `renewal.stepUp`.
   */
  verification: VerificationRules;
  /** Renewal windows per channel, notice, step-up, login and what happens to the old certificate. */
  renewal: RenewalRules;
  /**
   * A signing + encryption certificate pair (GM/T 0015 dual certificates)
   * instead of one certificate; absent or null: one certificate with
   * `keyUsage`. With a pair the signing certificate certifies the holder's
   * key from the CSR with `certificates.signing.keyUsage` (and the profile's
   * extKeyUsage), and the encryption certificate certifies a key pair that
   * the key management centre makes and escrows, with
   * `certificates.encryption.keyUsage` and no extKeyUsage; the top-level
   * `keyUsage` is not used. Only SM2 profiles may have pairs (see
   * profile-parser.ts).
   */
  certificates?: CertificatePairRules | null;
  /**
   * Whether a holder whose key was initialised (forgotten PIN, a full key:
   * seed 000's 证书下载) may download a currently valid certificate of this
   * profile again by themselves, proving the ID number on record and an SMS
   * code to the phone on record, without an operator's two codes (see
   * docs/enrolment.md). Absent or false: only operators' two codes; seed 000's
   * preset turns it on.
   */
  selfServiceRedownload?: boolean;
}

/** The key usages of each certificate of a pair (CertificateProfile.certificates). */
export interface CertificatePairRules {
  /** digitalSignature and/or nonRepudiation. */
  signing: { keyUsage: KeyUsageName[] };
  /** keyEncipherment, dataEncipherment and/or keyAgreement (SM2: keyAgreement + dataEncipherment, GM/T 0015). */
  encryption: { keyUsage: KeyUsageName[] };
}

/** Key usages a pair's signing certificate may carry. */
export const signingKeyUsages: readonly KeyUsageName[] = ["digitalSignature", "nonRepudiation"];
/** Key usages a pair's encryption certificate may carry. */
export const encryptionKeyUsages: readonly KeyUsageName[] = ["keyEncipherment", "dataEncipherment", "keyAgreement"];

/** True when `profile` issues a signing + encryption pair. Throws nothing. */
export function isPairProfile(profile: Pick<CertificateProfile, "certificates">): boolean {
  return !!profile.certificates;
}

const pairViews = new WeakMap<CertificateProfile, { signing: CertificateProfile; encryption: CertificateProfile }>();

/**
 * The profile as each certificate of its pair sees it (the same object on
 * every call, so that a CA caching its builders per profile builds each
 * once): `signing` has the signing key usages, `encryption` the encryption
 * key usages and no extended key usage. A profile without a pair is its own
 * signing view and has no encryption view (undefined). Throws nothing.
 */
export function pairViewsOf(profile: CertificateProfile): { signing: CertificateProfile; encryption: CertificateProfile | undefined } {
  const pair = profile.certificates;
  if (!pair) return { signing: profile, encryption: undefined };
  let v = pairViews.get(profile);
  if (!v) {
    v = {
      signing: Object.freeze({ ...profile, keyUsage: [...pair.signing.keyUsage] }),
      encryption: Object.freeze({ ...profile, keyUsage: [...pair.encryption.keyUsage], extKeyUsage: [] }),
    };
    pairViews.set(profile, v);
  }
  return v;
}

/** See CertificateProfile.verification. */
export interface VerificationRules {
  idNumber: boolean;
  oneTimeCode: "sms" | "email" | null;
}

/**
 * The profile `init` installs so that a fresh server can issue at once:
 * 1825 days from issuance; renewal on web, mobile and cli from 90 days
 * before expiry to 365 days after, with step-up once expired more than 90
 * days; EST (an automated client authenticating with the certificate being
 * renewed) only until the expiry day; the old certificate revoked as
 * superseded. Production profiles should start from a preset instead.
 */
export const defaultProfile: CertificateProfile = {
  id: "personal",
  name: { "zh-CN": "个人证书", en: "Personal certificate" },
  keyAlgorithms: ["p256", "p384", "rsa2048", "rsa3072"],
  validity: { days: 1825 },
  validityAnchor: "issuance",
  keyUsage: ["digitalSignature", "nonRepudiation"],
  extKeyUsage: ["clientAuth", "emailProtection"],
  certificateKind: "hardware",
  verification: { idNumber: true, oneTimeCode: "sms" },
  renewal: {
    windows: {
      web: { opensDaysBefore: 90, closesDaysAfter: 365 },
      mobile: { opensDaysBefore: 90, closesDaysAfter: 365 },
      cli: { opensDaysBefore: 90, closesDaysAfter: 365 },
      est: { opensDaysBefore: 90, closesDaysAfter: 0 },
    },
    noticeDaysBefore: 90,
    stepUp: { afterDaysExpired: 90 },
    loginWhenExpired: false,
    onCompletion: "revoke-superseded",
  },
};

/**
 * The validity of a certificate issued now under `profile`.
 *
 * notBefore is always `now`: a renewed certificate is usable at once.
 * notAfter is the anchor plus `profile.validity`, where the anchor is
 * - "issuance": `now`;
 * - "carry-over": `oldNotAfter` when it is given and later than `now` (the
 *   time left on the old certificate is kept), else `now` (an expired
 *   certificate carries nothing over).
 * `{ days: n }` adds n × 24 hours; `{ years: n }` adds n calendar years in
 * CST keeping the wall-clock time, 29 February becoming 28 February.
 * Capping at the issuing CA's own notAfter is the issuer's business, not
 * the profile's. Throws nothing.
 */
export function validityFor(profile: Pick<CertificateProfile, "validity" | "validityAnchor">, at: { now: Date; oldNotAfter?: Date | null }): { notBefore: Date; notAfter: Date } {
  const now = at.now.getTime();
  const old = at.oldNotAfter?.getTime();
  const anchor = profile.validityAnchor === "carry-over" && old !== undefined && old > now ? old : now;
  const v = profile.validity;
  const notAfter = "days" in v ? new Date(anchor + v.days * DAY_MS) : addPolicyYears(anchor, v.years);
  return { notBefore: new Date(now), notAfter };
}

/** RFC 5280 CRLReason names, in code order. */
export const revocationReasons = [
  "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
  "cessationOfOperation", "certificateHold", undefined, "removeFromCRL", "privilegeWithdrawn", "aACompromise",
] as const;
export type RevocationReason = Exclude<(typeof revocationReasons)[number], undefined>;

/** The code of a reason name, or undefined when the name is not a reason. */
export function revocationReasonCode(name: string): number | undefined {
  const i = revocationReasons.indexOf(name as RevocationReason);
  return i < 0 || name === "undefined" ? undefined : i;
}
