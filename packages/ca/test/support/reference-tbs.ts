// An independent reference: the same TBSCertificate built from
// @peculiar/asn1-x509 objects, to compare CertificateBuilder's template
// splicing against byte for byte.
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AccessDescription, AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier, BasicConstraints, CRLDistributionPoints, DistributionPoint, DistributionPointName,
  ExtendedKeyUsage, Extension, Extensions, GeneralName, KeyIdentifier, KeyUsage, KeyUsageFlags, Name,
  RelativeDistinguishedName, SubjectAlternativeName, SubjectKeyIdentifier, SubjectPublicKeyInfo, TBSCertificate,
  Validity, Version,
} from "@peculiar/asn1-x509";
import { createHash } from "node:crypto";
import type { IssuerCertificate, CaUrls, CaSigner } from "../../src/index.js";

/** One reference attribute: OID and the exact string type. */
export type RefAttribute = [oid: string, kind: "utf8String" | "printableString" | "ia5String", value: string];

/** Inputs of the reference TBS. */
export interface RefInput {
  issuer: IssuerCertificate;
  signer: CaSigner;
  urls: CaUrls;
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  subject: RefAttribute[];
  spki: Buffer;
  keyUsage: number;
  extKeyUsage: string[];
  sans: GeneralName[];
}

const ext = (extnID: string, critical: boolean, value: object) =>
  new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });

/** DER TBSCertificate from asn1-x509 objects. */
export function referenceTbs(r: RefInput): Buffer {
  const spki = AsnConvert.parse(r.spki, SubjectPublicKeyInfo);
  const ski = createHash("sha1").update(Buffer.from(spki.subjectPublicKey)).digest();
  const subject = new Name(r.subject.map(([type, kind, value]) =>
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ [kind]: value }) })])));
  const exts = [
    ext("2.5.29.19", true, new BasicConstraints({ cA: false })),
    ext("2.5.29.15", true, new KeyUsage(r.keyUsage)),
    ...(r.extKeyUsage.length ? [ext("2.5.29.37", false, new ExtendedKeyUsage(r.extKeyUsage))] : []),
    ext("2.5.29.14", false, new SubjectKeyIdentifier(ski)),
    ext("2.5.29.35", false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(r.issuer.keyId) })),
    ext("2.5.29.31", false, new CRLDistributionPoints([new DistributionPoint({
      distributionPoint: new DistributionPointName({ fullName: [new GeneralName({ uniformResourceIdentifier: r.urls.crl })] }),
    })])),
    ext("1.3.6.1.5.5.7.1.1", false, new AuthorityInfoAccessSyntax([
      new AccessDescription({ accessMethod: "1.3.6.1.5.5.7.48.1", accessLocation: new GeneralName({ uniformResourceIdentifier: r.urls.ocsp }) }),
      new AccessDescription({ accessMethod: "1.3.6.1.5.5.7.48.2", accessLocation: new GeneralName({ uniformResourceIdentifier: r.urls.caIssuers }) }),
    ])),
    ...(r.sans.length ? [ext("2.5.29.17", r.subject.length === 0, new SubjectAlternativeName(r.sans))] : []),
  ];
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: new Uint8Array(r.serial).buffer,
    signature: AsnConvert.parse(r.signer.signatureAlgorithm, AlgorithmIdentifier),
    issuer: AsnConvert.parse(r.issuer.subjectName, Name),
    validity: new Validity({ notBefore: r.notBefore, notAfter: r.notAfter }),
    subject,
    subjectPublicKeyInfo: spki,
    extensions: new Extensions(exts),
  });
  return Buffer.from(AsnConvert.serialize(tbs));
}

export { KeyUsageFlags, GeneralName };
