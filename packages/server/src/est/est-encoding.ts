import { CertificateChoices, CertificateSet, CMSVersion, ContentInfo, EncapsulatedContentInfo, SignedData, id_data, id_signedData } from "@peculiar/asn1-cms";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate, Extensions, GeneralNames, id_ce_subjectAltName } from "@peculiar/asn1-x509";
import { UkeyError, type KeyAlgorithm } from "@ukey/policy";
import { ObjectIdentifier, Sequence, Set as Asn1Set } from "asn1js";

/**
 * RFC 8951 section 3.1: EST bodies are base64 of DER, "with or without
 * line breaks"; the Content-Transfer-Encoding header is not needed. Spaces,
 * tabs and CR/LF anywhere are dropped; anything else outside the base64
 * alphabet, or padding in the middle, is refused (Node's decoder would
 * silently skip it and hand the CSR parser garbage).
 * @throws UkeyError EST_BASE64_MALFORMED.
 */
export function decodeEstBase64(body: Buffer | string): Buffer {
  const text = (typeof body === "string" ? body : body.toString("latin1")).replace(/[ \t\r\n]+/g, "");
  if (text.length === 0) throw new UkeyError("EST_BASE64_MALFORMED", { params: { reason: "the body is empty" } });
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 === 1) {
    throw new UkeyError("EST_BASE64_MALFORMED", { params: { reason: "the body is not base64 (RFC 8951: base64 of the DER, line breaks allowed)" } });
  }
  return Buffer.from(text, "base64");
}

/**
 * Base64 on one line, ended by a line feed. RFC 8951 lets a receiver take it
 * with or without line breaks, but real clients differ: strongSwan's
 * `pki --est` (5.9.8) decodes four characters at a time and turns any line
 * break inside the text (LF or CRLF, at any width) into garbage, while a
 * final LF or CRLF is harmless (est-strongswan.test.ts tries each layout).
 * Cisco libest reads text with no LF before its last character in OpenSSL's
 * single-line mode (BIO_FLAGS_BASE64_NO_NL), which takes it. One line with a
 * final LF is what both take; `base64 -d` takes it too. Never throws.
 */
export function encodeEstBase64(der: Buffer): string {
  return `${der.toString("base64")}\n`;
}

/**
 * A certs-only CMS SignedData (RFC 5652 with no signers, RFC 7030 section
 * 4.1.3) in a ContentInfo, holding `certificates` in DER SET OF order.
 * @throws Error when a certificate does not re-encode to its own bytes (never for DER we signed).
 */
export function certsOnlyPkcs7(certificates: readonly Buffer[]): Buffer {
  // CertificateSet is a SET OF: DER wants its elements in the order of their encodings (X.690 11.6),
  // and each CertificateChoices here is the certificate's own DER.
  const parsed = [...certificates].sort(Buffer.compare).map((der) => {
    const c = AsnConvert.parse(der, Certificate);
    // A certificate must reach the client byte for byte, or its signature breaks.
    if (!Buffer.from(AsnConvert.serialize(c)).equals(der)) throw new Error("certificate does not re-encode to the same DER");
    return new CertificateChoices({ certificate: c });
  });
  const signed = new SignedData({
    version: CMSVersion.v1,
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }),
    certificates: new CertificateSet(parsed),
  });
  return Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signed) })));
}

const oids = {
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  ecdsaWithSha384: "1.2.840.10045.4.3.3",
  sha256WithRsa: "1.2.840.113549.1.1.11",
  curves: { p256: "1.2.840.10045.3.1.7", p384: "1.3.132.0.34" } as Record<string, string>,
};

/**
 * The CSR attributes (RFC 7030 section 4.5, RFC 9908's form) for a set of
 * key algorithms: id-ecPublicKey with the allowed curves, rsaEncryption
 * when RSA is allowed, and the signature algorithms we expect on the CSR.
 * Subject attributes are never asked for: the RA's record decides them.
 */
export function csrAttributes(algorithms: readonly KeyAlgorithm[]): Buffer {
  // CsrAttrs ::= SEQUENCE OF AttrOrOID; AttrOrOID ::= CHOICE { OBJECT IDENTIFIER, Attribute } (RFC 7030 section 4.5.2).
  // Written with asn1js rather than asn1-schema's decorators, which break when tsx runs outside the repository's tsconfig.
  const id = (value: string) => new ObjectIdentifier({ value });
  const items: (ObjectIdentifier | Sequence)[] = [];
  const curves = algorithms.filter((a) => a === "p256" || a === "p384");
  // The curves are a SET OF: in the order of their DER encodings (X.690 11.6), whatever the profiles' order.
  const curveIds = curves.map((c) => id(oids.curves[c]!))
    .sort((a, b) => Buffer.compare(Buffer.from(a.toBER()), Buffer.from(b.toBER())));
  if (curves.length) items.push(new Sequence({ value: [id(oids.ecPublicKey), new Asn1Set({ value: curveIds })] }));
  const rsa = algorithms.some((a) => a.startsWith("rsa"));
  if (rsa) items.push(id(oids.rsaEncryption));
  if (algorithms.includes("p256")) items.push(id(oids.ecdsaWithSha256));
  if (algorithms.includes("p384")) items.push(id(oids.ecdsaWithSha384));
  if (rsa) items.push(id(oids.sha256WithRsa));
  return Buffer.from(new Sequence({ value: items }).toBER());
}

const pkcs9ExtensionRequest = "1.2.840.113549.1.9.14";

/**
 * The subjectAltName entries a CSR asks for, in the store's form
 * ("email:a@b", "dns:x", "uri:u", "ip:1.2.3.4"), sorted; other name forms
 * as "other:<type>". Empty when it asks for none.
 * @throws UkeyError CSR_MALFORMED when the extension request cannot be read.
 */
export function requestedSans(csrDer: Buffer): string[] {
  try {
    const csr = AsnConvert.parse(csrDer, CertificationRequest);
    const out: string[] = [];
    for (const attr of csr.certificationRequestInfo.attributes) {
      if (attr.type !== pkcs9ExtensionRequest) continue;
      for (const value of attr.values) {
        for (const ext of AsnConvert.parse(value, Extensions)) {
          if (ext.extnID !== id_ce_subjectAltName) continue;
          for (const name of AsnConvert.parse(ext.extnValue.buffer, GeneralNames)) {
            if (name.rfc822Name !== undefined) out.push(`email:${name.rfc822Name}`);
            else if (name.dNSName !== undefined) out.push(`dns:${name.dNSName}`);
            else if (name.uniformResourceIdentifier !== undefined) out.push(`uri:${name.uniformResourceIdentifier}`);
            else if (name.iPAddress !== undefined) out.push(`ip:${name.iPAddress}`);
            else out.push(`other:${Object.keys(name).find((k) => (name as unknown as Record<string, unknown>)[k] !== undefined) ?? "unknown"}`);
          }
        }
      }
    }
    return out.sort();
  } catch (cause) {
    throw new UkeyError("CSR_MALFORMED", { params: { reason: "its extension request cannot be read" }, cause });
  }
}
