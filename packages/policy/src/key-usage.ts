import type { CertificateProfile, KeyUsageName } from "./certificate-profile.js";
import { extKeyUsageOids } from "./certificate-profile.js";

/**
 * Key usages a key of each family may carry in an end-entity certificate.
 * ECDSA keys (id-ecPublicKey on P-256 and P-384) sign and agree keys but never
 * encipher (RFC 8813 3 and RFC 5480 3: keyEncipherment and dataEncipherment
 * MUST NOT be set); RSA keys sign and encipher but do not agree keys (RFC 4055,
 * zlint e_rsa_allowed_ku_ee). SM2 keys (GM/T 0015) may also encipher: they are
 * not filtered here.
 */
const allowedByFamily: Record<"ec" | "rsa", ReadonlySet<KeyUsageName>> = {
  ec: new Set(["digitalSignature", "nonRepudiation", "keyAgreement"]),
  rsa: new Set(["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment"]),
};

/**
 * Key usages consistent with each extended key usage (RFC 5280 4.2.1.12, as
 * zlint's e_key_usage_and_extended_key_usage_inconsistent reads it).
 */
const consistentWithEku: Record<string, ReadonlySet<KeyUsageName>> = {
  [extKeyUsageOids.serverAuth]: new Set(["digitalSignature", "keyEncipherment", "keyAgreement"]),
  [extKeyUsageOids.clientAuth]: new Set(["digitalSignature", "keyAgreement"]),
  [extKeyUsageOids.codeSigning]: new Set(["digitalSignature"]),
  [extKeyUsageOids.emailProtection]: new Set(["digitalSignature", "nonRepudiation", "keyEncipherment", "keyAgreement"]),
};

function familyOf(algorithm: string): "ec" | "rsa" | undefined {
  if (algorithm.startsWith("rsa")) return "rsa";
  if (algorithm === "p256" || algorithm === "p384") return "ec";
  return undefined;
}

/**
 * The keyUsage bits a certificate of `profile` gets for a key of `algorithm`:
 * the profile's bits that the key's algorithm allows, then those consistent
 * with its extended key usage. With one EKU every bit must agree with it;
 * with several, the bits must agree with at least one of them as a whole
 * (zlint's reading of RFC 5280 4.2.1.12), so the EKU that keeps most of the
 * profile's bits is taken; an EKU this table does not know constrains
 * nothing. The securities gateway's digitalSignature + keyEncipherment with
 * clientAuth thus gives digitalSignature to RSA and EC keys alike. When
 * nothing is left, digitalSignature alone. Order follows the profile's.
 * Pure; never throws.
 */
export function effectiveKeyUsage(profile: Pick<CertificateProfile, "keyUsage" | "extKeyUsage">, algorithm: string): KeyUsageName[] {
  const family = familyOf(algorithm);
  const byAlgorithm = profile.keyUsage.filter((ku) => family === undefined || allowedByFamily[family].has(ku));
  const sets = profile.extKeyUsage.map((e) => consistentWithEku[(extKeyUsageOids as Record<string, string>)[e] ?? e]);
  let out = byAlgorithm;
  if (sets.length && !sets.includes(undefined)) {
    const kept = (set: ReadonlySet<KeyUsageName>) => byAlgorithm.filter((ku) => set.has(ku));
    out = sets.map((set) => kept(set!)).reduce((best, k) => (k.length > best.length ? k : best));
  }
  return out.length ? out : ["digitalSignature"];
}
