import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import { serialInteger } from "./certificate-builder.js";
import { bitString, explicit, seq, tlv, Tag, x509Time } from "./der.js";
import {
  authorityInfoAccess, authorityKeyIdentifier, basicConstraints, crlDistributionPoints, keyIdentifier, keyUsage,
  subjectKeyIdentifier,
} from "./extensions.js";
import { loadIssuerCertificate } from "./issuer-certificate.js";
import { encodeName } from "./names.js";
import { newSerial } from "./serial.js";
import type { CaKeyStore, CaSigner, CaUrls, IssuerCertificate, SubjectSpec } from "./types.js";

/** What createCaHierarchy needs. */
export interface CaHierarchyOptions {
  keyStore: CaKeyStore;
  /** Key algorithm of both CA keys. Default "p256". */
  algorithm?: KeyAlgorithm;
  rootSubject: SubjectSpec;
  issuingSubject: SubjectSpec;
  /** Start of both validities. */
  now: Date;
  /** Default 7305 (20 years). */
  rootValidityDays?: number;
  /** Default 3652 (10 years); never beyond the root's end. */
  issuingValidityDays?: number;
  /**
   * Written into the issuing CA certificate: `crl` (the root's CRL) as its
   * CRL distribution point and `caIssuers` (the root certificate) in AIA.
   * `ocsp` is not written: the root key stays offline, so nothing answers
   * OCSP for the issuing CA; relying parties use the root's CRL.
   */
  issuingUrls: CaUrls;
}

/** Key names the hierarchy uses in its key store. */
export const caKeyNames = { root: "root", issuing: "issuing" } as const;

const dayMs = 86_400_000;

/** Builds and signs one CA certificate. */
async function signCaCertificate(p: {
  signer: CaSigner;
  issuerName: Buffer;
  subjectName: Buffer;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  extensions: Buffer[];
}): Promise<Buffer> {
  const tbs = seq(
    explicit(0, tlv(Tag.integer, Buffer.from([2]))),
    serialInteger(newSerial()),
    p.signer.signatureAlgorithm,
    p.issuerName,
    seq(x509Time(p.notBefore), x509Time(p.notAfter)),
    p.subjectName,
    p.spki,
    explicit(3, seq(...p.extensions)),
  );
  return seq(tbs, p.signer.signatureAlgorithm, bitString(await p.signer.sign(tbs)));
}

/**
 * Creates the root and issuing CA keys in `keyStore` (names "root" and
 * "issuing") and their certificates. Root: self-signed, basicConstraints
 * CA (critical), keyUsage keyCertSign+cRLSign (critical), SKI. Issuing CA:
 * signed by the root, pathLen 0, keyUsage digitalSignature+keyCertSign+
 * cRLSign (critical; digitalSignature because it signs OCSP responses
 * itself), SKI, AKI, CRL DP and AIA caIssuers from issuingUrls.
 * Throws CA_ALREADY_INITIALISED (nothing is overwritten), HSM_*,
 * REQUEST_INVALID for names or URLs that cannot be encoded.
 */
export async function createCaHierarchy(opts: CaHierarchyOptions): Promise<{ root: IssuerCertificate; issuing: IssuerCertificate }> {
  const algorithm = opts.algorithm ?? "p256";
  const rootDays = opts.rootValidityDays ?? 7305;
  const issuingDays = opts.issuingValidityDays ?? 3652;
  if (!(rootDays > 0 && issuingDays > 0)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "validity days must be positive" } });
  if (opts.rootSubject.rdns.length === 0 || opts.issuingSubject.rdns.length === 0) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: "CA certificates need a subject" } });
  }
  const rootName = encodeName(opts.rootSubject.rdns);
  const issuingName = encodeName(opts.issuingSubject.rdns);
  // Checked before any key exists so a bad URL leaves nothing behind.
  const issuingAia = authorityInfoAccess(undefined, opts.issuingUrls.caIssuers);
  const issuingCrlDp = crlDistributionPoints(opts.issuingUrls.crl);
  const notBefore = opts.now;
  const rootEnd = new Date(notBefore.getTime() + rootDays * dayMs);
  const issuingEnd = new Date(Math.min(rootEnd.getTime(), notBefore.getTime() + issuingDays * dayMs));

  const rootSigner = await opts.keyStore.create(caKeyNames.root, algorithm);
  const rootKeyId = keyIdentifier(rootSigner.spki);
  const rootDer = await signCaCertificate({
    signer: rootSigner,
    issuerName: rootName,
    subjectName: rootName,
    spki: rootSigner.spki,
    notBefore,
    notAfter: rootEnd,
    extensions: [basicConstraints(true), keyUsage(["keyCertSign", "cRLSign"]), subjectKeyIdentifier(rootKeyId)],
  });

  const issuingSigner = await opts.keyStore.create(caKeyNames.issuing, algorithm);
  const issuingDer = await signCaCertificate({
    signer: rootSigner,
    issuerName: rootName,
    subjectName: issuingName,
    spki: issuingSigner.spki,
    notBefore,
    notAfter: issuingEnd,
    extensions: [
      basicConstraints(true, 0),
      keyUsage(["digitalSignature", "keyCertSign", "cRLSign"]),
      subjectKeyIdentifier(keyIdentifier(issuingSigner.spki)),
      authorityKeyIdentifier(rootKeyId),
      issuingCrlDp,
      issuingAia,
    ],
  });
  return { root: loadIssuerCertificate(rootDer), issuing: loadIssuerCertificate(issuingDer) };
}
