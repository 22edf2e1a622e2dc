import type { KeyAlgorithm } from "@ukey/policy";
import type { TokenCertificate } from "../keys/key-store.js";
import { keyAlgorithmOfSpki } from "../keys/certificate-fields.js";
import type { CertificatePreview } from "../prompter.js";
import type { RenewalInfo } from "../server-client.js";
import { spkiOf } from "./certificate-id.js";

/** DER of the SM2 curve's OID (1.2.156.10197.1.301), as an SPKI's parameters carry it. */
const sm2CurveOid = Buffer.from("06082a811ccf5501822d", "hex");

/** The key algorithm of a certificate's public key, or undefined for one this agent does not name. Throws nothing. */
export function certificateAlgorithm(der: Uint8Array): KeyAlgorithm | undefined {
  try {
    return keyAlgorithmOfSpki(spkiOf(der));
  } catch {
    return Buffer.from(der).includes(sm2CurveOid) ? "sm2" : undefined;
  }
}

/**
 * The algorithm a renewal's new key gets: the old key's when the profile
 * still accepts it, else the profile's first (renew-flow.ts algorithmFor
 * decides the same way on the token).
 */
export function nextAlgorithm(current: KeyAlgorithm | undefined, accepted: readonly string[]): string | undefined {
  return current && accepted.includes(current) ? current : accepted[0];
}

/**
 * The preview of a renewal of `target` (seed 004 §3.5), from the
 * certificate on the key and the server's renewal advice: the validity the
 * profile gives a certificate issued now, the algorithm, whether an
 * encryption certificate comes with it. The subject stays the RA's record,
 * which the current certificate carries. Undefined when the advice says
 * nothing about a renewal (a server too old, or a certificate that cannot
 * be renewed: the order's refusal says why). Throws nothing.
 */
export function renewalPreviewOf(target: TokenCertificate, info: RenewalInfo): CertificatePreview | undefined {
  const r = info.renewal;
  if (!r) return undefined;
  const algorithm = certificateAlgorithm(target.der);
  const next = nextAlgorithm(algorithm, r.keyAlgorithms);
  return {
    kind: "renew",
    current: {
      serialHex: target.serialHex, subject: target.subject, notBefore: target.notBefore.toISOString(), notAfter: target.notAfter.toISOString(),
      ...(algorithm ? { algorithm } : {}),
    },
    next: {
      subject: target.subject, notBefore: r.notBefore, notAfter: r.notAfter, pair: r.pair,
      ...(next ? { algorithm: next } : {}), profile: { zh: r.profile["zh-CN"], en: r.profile.en },
    },
  };
}
