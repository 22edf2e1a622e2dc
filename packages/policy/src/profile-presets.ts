import type { CertificateProfile } from "./certificate-profile.js";

/**
 * The five published renewal policies of seeds 000-004, as profiles without
 * an id. Operators start from one: `{ "id": "personal", "preset":
 * "bank-personal-ukey", ...overrides }` (see resolveProfile). Every value,
 * the guide sentence it comes from and what we chose where a guide is
 * silent or contradicts itself is in docs/policies.md.
 */
export type PresetName = "bank-personal-ukey" | "bank-netbank-shield" | "bank-ushield" | "securities-gateway" | "gov-supervision";

/** A preset: a whole profile except its id. */
export type ProfilePreset = Omit<CertificateProfile, "id">;

// Every preset: the cli channel is the agent's command line, the same
// holder, key and verification as the web portal, so it gets the web
// window. EST is offered only where an unattended client renews a
// certificate it authenticates with, so it closes on the expiry day.
const presetTable: Record<PresetName, ProfilePreset> = {
  // Seed 000: personal online banking, 3rd/4th-generation UKey.
  "bank-personal-ukey": {
    name: { "zh-CN": "个人网银 UKey 证书", en: "Personal online banking UKey certificate" },
    keyAlgorithms: ["rsa2048", "p256"],
    validity: { years: 5 },
    validityAnchor: "issuance",
    keyUsage: ["digitalSignature", "nonRepudiation"],
    extKeyUsage: ["clientAuth"],
    certificateKind: "hardware",
    verification: { idNumber: true, oneTimeCode: "sms" },
    renewal: {
      windows: {
        web: { opensDaysBefore: 85, closesDaysAfter: 3650 },
        mobile: null,
        cli: { opensDaysBefore: 85, closesDaysAfter: 3650 },
        est: null,
      },
      noticeDaysBefore: 85,
      stepUp: { afterDaysExpired: 365 },
      loginWhenExpired: false,
      onCompletion: "revoke-superseded",
    },
    // Seed 000: after initialising a key (forgotten PIN, 内存不足) the holder downloads the certificate again online.
    selfServiceRedownload: true,
  },
  // Seed 001: a bank's 网银盾 (NetBank shield) FAQ.
  "bank-netbank-shield": {
    name: { "zh-CN": "个人网银盾证书", en: "Personal NetBank shield certificate" },
    keyAlgorithms: ["rsa2048"],
    validity: { years: 5 },
    validityAnchor: "issuance",
    keyUsage: ["digitalSignature", "nonRepudiation"],
    extKeyUsage: ["clientAuth"],
    certificateKind: "hardware",
    verification: { idNumber: false, oneTimeCode: null },
    renewal: {
      windows: {
        web: { opensDaysBefore: 30, closesDaysAfter: 90 },
        mobile: null,
        cli: { opensDaysBefore: 30, closesDaysAfter: 90 },
        est: null,
      },
      noticeDaysBefore: 30,
      stepUp: null,
      loginWhenExpired: false,
      onCompletion: "revoke-superseded",
    },
  },
  // Seed 002: a large bank's U盾 (U-shield) Q&A.
  "bank-ushield": {
    name: { "zh-CN": "U盾证书", en: "U-shield certificate" },
    keyAlgorithms: ["rsa2048", "p256"],
    validity: { years: 5 },
    validityAnchor: "issuance",
    keyUsage: ["digitalSignature", "nonRepudiation"],
    extKeyUsage: ["clientAuth"],
    certificateKind: "hardware",
    verification: { idNumber: false, oneTimeCode: null },
    renewal: {
      windows: {
        web: { opensDaysBefore: 90, closesDaysAfter: 1800 },
        mobile: { opensDaysBefore: 90, closesDaysAfter: 30 },
        cli: { opensDaysBefore: 90, closesDaysAfter: 1800 },
        est: null,
      },
      noticeDaysBefore: 90,
      stepUp: null,
      loginWhenExpired: true,
      onCompletion: "revoke-superseded",
    },
  },
  // Seed 003: a securities communications company's gateway certificates.
  "securities-gateway": {
    name: { "zh-CN": "通信网关数字证书", en: "Communication gateway certificate" },
    keyAlgorithms: ["rsa2048", "p256"],
    validity: { years: 5 },
    validityAnchor: "carry-over",
    keyUsage: ["digitalSignature", "keyEncipherment"],
    extKeyUsage: ["clientAuth"],
    certificateKind: "file",
    verification: { idNumber: false, oneTimeCode: null },
    renewal: {
      windows: {
        web: { opensDaysBefore: 60, closesDaysAfter: 30 },
        mobile: null,
        cli: { opensDaysBefore: 60, closesDaysAfter: 30 },
        est: { opensDaysBefore: 60, closesDaysAfter: 0 },
      },
      noticeDaysBefore: 60,
      stepUp: null,
      loginWhenExpired: false,
      onCompletion: "leave-to-expire",
    },
  },
  // Seed 004: a provincial government supervision system. Its guide has the holder open the
  // "签名证书" on the key, so the key holds a signing and an encryption certificate: an SM2 pair
  // (GM/T 0015), the encryption key made and escrowed by the KMC.
  "gov-supervision": {
    name: { "zh-CN": "事业单位监管业务证书", en: "Public institution supervision certificate" },
    keyAlgorithms: ["sm2"],
    validity: { days: 1820 },
    validityAnchor: "issuance",
    keyUsage: ["digitalSignature", "nonRepudiation"],
    extKeyUsage: ["clientAuth"],
    certificates: {
      signing: { keyUsage: ["digitalSignature", "nonRepudiation"] },
      encryption: { keyUsage: ["keyAgreement", "dataEncipherment"] },
    },
    certificateKind: "hardware",
    verification: { idNumber: false, oneTimeCode: null },
    renewal: {
      windows: {
        web: { opensDaysBefore: 90, closesDaysAfter: 300 },
        mobile: null,
        cli: { opensDaysBefore: 90, closesDaysAfter: 300 },
        est: null,
      },
      noticeDaysBefore: 90,
      stepUp: null,
      loginWhenExpired: false,
      onCompletion: "revoke-superseded",
    },
  },
};

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The presets by name, deeply frozen (copy before changing; resolveProfile does). */
export const profilePresets: Readonly<Record<PresetName, ProfilePreset>> = deepFreeze(presetTable);

/** Preset names in seed order (000-004). */
export const presetNames = Object.keys(presetTable) as PresetName[];

/** Which seed guide each preset reproduces (file name under ../shared/seeds). */
export const presetSources: Readonly<Record<PresetName, string>> = {
  "bank-personal-ukey": "000_b41a870a5977efee.txt",
  "bank-netbank-shield": "001_8bf0292acb93f387.txt",
  "bank-ushield": "002_250cf2ee3c850191.txt",
  "securities-gateway": "003_bbf4621a6b42f144.txt",
  "gov-supervision": "004_8f51e1b2b2ef4d54.txt",
};

/** True when `name` is a preset name. */
export function isPresetName(name: unknown): name is PresetName {
  return typeof name === "string" && Object.hasOwn(presetTable, name);
}
