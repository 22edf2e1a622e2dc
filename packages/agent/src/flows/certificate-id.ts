import { createPublicKey } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier } from "@peculiar/asn1-x509";
import { UkeyError } from "@ukey/policy";

/**
 * The RFC 9773 certID of a certificate, as the server computes it
 * (packages/server/src/cert-id.ts): base64url of the AKI keyIdentifier,
 * a dot, base64url of the serial's DER content octets.
 * @throws UkeyError DER_MALFORMED when the certificate cannot be parsed or has no AKI keyIdentifier.
 */
export function certIdOf(der: Uint8Array): string {
  let c: Certificate;
  try {
    c = AsnConvert.parse(der, Certificate);
  } catch (cause) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "certificate" }, cause });
  }
  const ext = c.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_authorityKeyIdentifier);
  const keyId = ext ? AsnConvert.parse(ext.extnValue.buffer, AuthorityKeyIdentifier).keyIdentifier : undefined;
  if (!keyId) throw new UkeyError("DER_MALFORMED", { params: { reason: "the certificate has no authority key identifier" } });
  return `${Buffer.from(keyId.buffer).toString("base64url")}.${Buffer.from(c.tbsCertificate.serialNumber).toString("base64url")}`;
}

/** DER SubjectPublicKeyInfo of a certificate, for comparison with a key on the token. */
export function spkiOf(der: Uint8Array): Buffer {
  return createPublicKey({ key: pemOf(der), format: "pem" }).export({ type: "spki", format: "der" });
}

/** A certificate's PEM. */
export function pemOf(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** The DER of the first certificate of a PEM. @throws UkeyError PEM_MALFORMED. */
export function derOfPem(pem: string): Uint8Array {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new UkeyError("PEM_MALFORMED", { params: { reason: "no certificate" } });
  return new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64"));
}
