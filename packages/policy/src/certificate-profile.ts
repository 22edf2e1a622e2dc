/** Key algorithms ukey-renew issues for and signs with. */
export type KeyAlgorithm = "p256" | "p384" | "rsa2048" | "rsa3072" | "rsa4096";
export const keyAlgorithms: readonly KeyAlgorithm[] = ["p256", "p384", "rsa2048", "rsa3072", "rsa4096"];

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

/**
 * What a certificate profile says about the certificates issued under it.
 * Issue "Renewal policy" extends this with windows, channels and step-up;
 * the CA reads only the fields here.
 */
export interface CertificateProfile {
  /** Stable identifier, e.g. "personal". */
  id: string;
  /** Human name, zh-CN and en. */
  name: { "zh-CN": string; en: string };
  /** Key algorithms accepted in a CSR. */
  keyAlgorithms: KeyAlgorithm[];
  /** Validity in days (e.g. 1825 for five years, 1820 as seed 004). */
  validityDays: number;
  /** From the day of issuance, or carried over from the old notAfter. */
  validityAnchor: "issuance" | "carry-over";
  keyUsage: KeyUsageName[];
  /** Names from extKeyUsageOids or dotted OIDs. */
  extKeyUsage: string[];
  /** What the certificate holds: a hardware key (UKey) or a PKCS#12 file. */
  certificateKind: "hardware" | "file";
}

/** The profile `init` installs so that a fresh server can issue at once. */
export const defaultProfile: CertificateProfile = {
  id: "personal",
  name: { "zh-CN": "个人证书", en: "Personal certificate" },
  keyAlgorithms: ["p256", "p384", "rsa2048", "rsa3072"],
  validityDays: 1825,
  validityAnchor: "issuance",
  keyUsage: ["digitalSignature", "nonRepudiation"],
  extKeyUsage: ["clientAuth", "emailProtection"],
  certificateKind: "hardware",
};

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
