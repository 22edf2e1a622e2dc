import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicConstraints, Certificate, SubjectKeyIdentifier, id_ce_basicConstraints, id_ce_subjectKeyIdentifier } from "@peculiar/asn1-x509";
import { UkeyError, isUkeyError } from "@ukey/policy";
import { children, raw, readWhole, Tag } from "./der.js";
import { keyIdentifier } from "./extensions.js";
import { nameToString } from "./names.js";
import { pemToDer } from "./pem.js";
import type { IssuerCertificate } from "./types.js";

function malformed(reason: string, cause?: unknown): UkeyError {
  return new UkeyError("DER_MALFORMED", { params: { reason }, cause });
}

/**
 * Parses a CA certificate (DER, or PEM text / bytes) once into what
 * issuance, CRLs and OCSP need. The subject Name and SPKI are the exact
 * bytes of the certificate, never a re-encoding, so issuer names match
 * byte for byte. keyId is the subjectKeyIdentifier, or the RFC 5280
 * method-1 hash when there is none. Throws PEM_MALFORMED, DER_MALFORMED
 * (also when the certificate is not a CA: basicConstraints cA must be set).
 */
export function loadIssuerCertificate(input: Buffer | string): IssuerCertificate {
  const der = typeof input === "string" || input.subarray(0, 11).toString("latin1") === "-----BEGIN "
    ? pemToDer(input.toString(), "CERTIFICATE")
    : input;
  let cert: Certificate;
  let subjectName: Buffer;
  let spki: Buffer;
  try {
    const top = readWhole(der);
    const tbsNode = children(der, top)[0];
    if (!tbsNode || tbsNode.tag !== Tag.sequence) throw malformed("not a certificate");
    const fields = children(der, tbsNode);
    const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
    const subjectNode = fields[offset + 4];
    const spkiNode = fields[offset + 5];
    if (!subjectNode || !spkiNode) throw malformed("truncated TBSCertificate");
    subjectName = raw(der, subjectNode);
    spki = raw(der, spkiNode);
    cert = AsnConvert.parse(der, Certificate);
  } catch (e) {
    if (isUkeyError(e)) throw e;
    throw malformed("not an X.509 certificate", e);
  }
  const tbs = cert.tbsCertificate;
  let keyId: Buffer | undefined;
  let isCa = false;
  for (const ext of tbs.extensions ?? []) {
    if (ext.extnID === id_ce_subjectKeyIdentifier) {
      keyId = Buffer.from(AsnConvert.parse(ext.extnValue, SubjectKeyIdentifier).buffer);
    } else if (ext.extnID === id_ce_basicConstraints) {
      isCa = AsnConvert.parse(ext.extnValue, BasicConstraints).cA;
    }
  }
  if (!isCa) throw malformed("the certificate is not a CA certificate (basicConstraints cA is not set)");
  return {
    der,
    subjectName,
    subjectDn: nameToString(tbs.subject),
    keyId: keyId ?? keyIdentifier(spki),
    spki,
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
  };
}
