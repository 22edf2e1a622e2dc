import "reflect-metadata";
import { X509Certificate, BasicConstraintsExtension, KeyUsagesExtension, KeyUsageFlags } from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate, CertificateList, id_ce_cRLNumber } from "@peculiar/asn1-x509";
import { pemToDer, signedBy } from "@ukey/ca";
import { UkeyError, isUkeyError } from "@ukey/policy";

/** A certificate brought from the offline root's ceremony, parsed once. */
export interface CeremonyCertificate {
  der: Buffer;
  x509: X509Certificate;
  /** DER of the issuer and subject Names, as in the certificate. */
  issuerName: Buffer;
  subjectName: Buffer;
  spki: Buffer;
  /** Lower-case hex without leading zeros. */
  serial: string;
}

/** A root CRL brought from the ceremony, checked. */
export interface CheckedRootCrl {
  der: Buffer;
  number: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
}

/** Clock difference tolerated between the offline machine and the server. */
const skewMs = 5 * 60_000;

const stripZeros = (hex: string): string => hex.toLowerCase().replace(/^(00)+(?=..)/, "");

/** The value of a DER INTEGER (a CRL number: non-negative, at most 20 octets). @throws Error when it is not one. */
function integerValue(der: Buffer): bigint {
  if (der[0] !== 0x02 || der.length < 3 || der[1]! >= 0x80 || der[1] !== der.length - 2) throw new Error("not a short DER INTEGER");
  return BigInt(`0x${der.subarray(2).toString("hex")}`);
}

function derOf(input: Buffer, label: string): Buffer {
  return input.subarray(0, 11).toString("latin1") === "-----BEGIN " ? pemToDer(input.toString("latin1"), label) : input;
}

/**
 * Parses a certificate (PEM or DER); `unfit` makes the refusal for one that is not a certificate.
 * @throws what `unfit` returns.
 */
export function parseCeremonyCertificate(input: Buffer, unfit: (reason: string) => UkeyError): CeremonyCertificate {
  try {
    const der = derOf(input, "CERTIFICATE");
    const asn = AsnConvert.parse(der, Certificate);
    const x509 = new X509Certificate(der);
    return {
      der, x509,
      issuerName: Buffer.from(AsnConvert.serialize(asn.tbsCertificate.issuer)),
      subjectName: Buffer.from(AsnConvert.serialize(asn.tbsCertificate.subject)),
      spki: Buffer.from(AsnConvert.serialize(asn.tbsCertificate.subjectPublicKeyInfo)),
      serial: stripZeros(x509.serialNumber),
    };
  } catch (e) {
    throw unfit(`not an X.509 certificate in PEM or DER (${isUkeyError(e) ? e.message : (e as Error).message})`);
  }
}

function caFacts(c: CeremonyCertificate): { ca: boolean; bcCritical: boolean; pathLength: number | undefined; usages: number | undefined } {
  const bc = c.x509.getExtension(BasicConstraintsExtension);
  const ku = c.x509.getExtension(KeyUsagesExtension);
  return { ca: bc?.ca === true, bcCritical: bc?.critical === true, pathLength: bc?.pathLength, usages: ku?.usages };
}

function validNow(c: CeremonyCertificate, now: Date): boolean {
  return c.x509.notBefore.getTime() <= now.getTime() + skewMs && now.getTime() < c.x509.notAfter.getTime();
}

/**
 * The root certificate of an offline root: self-signed (names and signature),
 * basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign, valid now.
 * @throws UkeyError ROOT_CERT_UNFIT.
 */
export function checkRootCertificate(input: Buffer, now: Date): CeremonyCertificate {
  const unfit = (reason: string) => new UkeyError("ROOT_CERT_UNFIT", { params: { reason } });
  const root = parseCeremonyCertificate(input, unfit);
  if (!root.issuerName.equals(root.subjectName) || !signedBy(root.der, root.spki)) {
    throw unfit(`it is not self-signed (issuer ${root.x509.issuer}, subject ${root.x509.subject})`);
  }
  const f = caFacts(root);
  if (!f.ca) throw unfit("basicConstraints CA:TRUE is missing");
  if (f.usages === undefined || !(f.usages & KeyUsageFlags.keyCertSign) || !(f.usages & KeyUsageFlags.cRLSign)) {
    throw unfit("keyUsage must include keyCertSign and cRLSign");
  }
  if (!validNow(root, now)) throw unfit(`it is not valid now (${root.x509.notBefore.toISOString()} to ${root.x509.notAfter.toISOString()})`);
  return root;
}

/**
 * The issuing CA's certificate as the ceremony signed it: issued and
 * signed by `root`; CA:TRUE with pathlen 0 (it signs only end-entity
 * certificates); keyUsage digitalSignature (it signs its own OCSP
 * responses), keyCertSign and cRLSign; valid now and until `mustLastUntil`
 * at least. Whether its key is the server's is checked apart (a signature
 * by the key store).
 * @throws UkeyError ISSUING_CERT_UNFIT, ISSUING_CERT_NOT_FROM_ROOT.
 */
export function checkIssuingCertificate(input: Buffer, root: CeremonyCertificate, now: Date, mustLastUntil: Date): CeremonyCertificate {
  const unfit = (reason: string) => new UkeyError("ISSUING_CERT_UNFIT", { params: { reason } });
  const issuing = parseCeremonyCertificate(input, unfit);
  if (!issuing.issuerName.equals(root.subjectName)) {
    throw new UkeyError("ISSUING_CERT_NOT_FROM_ROOT", { params: { reason: `its issuer is ${issuing.x509.issuer}, the root is ${root.x509.subject}` } });
  }
  if (!signedBy(issuing.der, root.spki)) {
    throw new UkeyError("ISSUING_CERT_NOT_FROM_ROOT", { params: { reason: "its signature does not verify with the root's key" } });
  }
  const f = caFacts(issuing);
  if (!f.ca) throw unfit("basicConstraints CA:TRUE is missing");
  if (f.pathLength !== 0) throw unfit(`basicConstraints must carry pathlen:0 (it issues only end-entity certificates); it has ${f.pathLength ?? "none"}`);
  const need = KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign;
  if (f.usages === undefined || (f.usages & need) !== need) throw unfit("keyUsage must include digitalSignature, keyCertSign and cRLSign");
  if (!validNow(issuing, now)) throw unfit(`it is not valid now (${issuing.x509.notBefore.toISOString()} to ${issuing.x509.notAfter.toISOString()})`);
  if (issuing.x509.notAfter.getTime() < mustLastUntil.getTime()) {
    throw unfit(`it ends ${issuing.x509.notAfter.toISOString()}, before a certificate issued today under the longest profile would (${mustLastUntil.toISOString()})`);
  }
  return issuing;
}

/**
 * A root CRL from the ceremony: issued and signed by `root`, in effect now
 * (thisUpdate not in the future, nextUpdate ahead), with a CRL number, not
 * listing the issuing CA certificate `issuingSerial`, and numbered above
 * `currentNumber` when one is in use.
 * @throws UkeyError PEM_MALFORMED, DER_MALFORMED, ROOT_CRL_WRONG_ISSUER, ROOT_CRL_STALE, ROOT_CRL_REVOKES_ISSUING, ROOT_CRL_OLDER.
 */
export function checkRootCrl(input: Buffer, root: { subjectName: Buffer; spki: Buffer }, issuingSerial: string, now: Date, currentNumber?: bigint): CheckedRootCrl {
  const der = derOf(input, "X509 CRL");
  let list: CertificateList;
  try {
    list = AsnConvert.parse(der, CertificateList);
  } catch (cause) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "the root CRL is not an X.509 CRL" }, cause });
  }
  const tbs = list.tbsCertList;
  if (!Buffer.from(AsnConvert.serialize(tbs.issuer)).equals(root.subjectName)) {
    throw new UkeyError("ROOT_CRL_WRONG_ISSUER", { params: { reason: "its issuer name is not the root's" } });
  }
  if (!signedBy(der, root.spki)) throw new UkeyError("ROOT_CRL_WRONG_ISSUER", { params: { reason: "its signature does not verify with the root's key" } });
  const thisUpdate = tbs.thisUpdate.getTime();
  const nextUpdate = tbs.nextUpdate?.getTime();
  if (!nextUpdate || thisUpdate.getTime() > now.getTime() + skewMs || nextUpdate.getTime() <= now.getTime()) {
    throw new UkeyError("ROOT_CRL_STALE", { params: { thisUpdate: thisUpdate.toISOString(), nextUpdate: nextUpdate?.toISOString() ?? "none" } });
  }
  const numberExt = (tbs.crlExtensions ?? []).find((x) => x.extnID === id_ce_cRLNumber);
  if (!numberExt) throw new UkeyError("DER_MALFORMED", { params: { reason: "the root CRL carries no CRL number (RFC 5280 5.2.3)" } });
  let number: bigint;
  try {
    number = integerValue(Buffer.from(numberExt.extnValue.buffer));
  } catch (cause) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "the root CRL's CRL number is not an INTEGER" }, cause });
  }
  for (const r of tbs.revokedCertificates ?? []) {
    if (stripZeros(Buffer.from(r.userCertificate).toString("hex")) === issuingSerial) {
      throw new UkeyError("ROOT_CRL_REVOKES_ISSUING", { params: { serial: issuingSerial } });
    }
  }
  if (currentNumber !== undefined && number <= currentNumber) {
    throw new UkeyError("ROOT_CRL_OLDER", { params: { number: number.toString(), current: currentNumber.toString() } });
  }
  return { der, number, thisUpdate, nextUpdate };
}

/** The CRL number, thisUpdate and nextUpdate of a root CRL already installed (checked when it was). @throws UkeyError DER_MALFORMED. */
export function readInstalledRootCrl(der: Buffer): CheckedRootCrl {
  try {
    const tbs = AsnConvert.parse(der, CertificateList).tbsCertList;
    const ext = (tbs.crlExtensions ?? []).find((x) => x.extnID === id_ce_cRLNumber);
    return {
      der,
      number: ext ? integerValue(Buffer.from(ext.extnValue.buffer)) : 0n,
      thisUpdate: tbs.thisUpdate.getTime(),
      nextUpdate: tbs.nextUpdate?.getTime() ?? new Date(0),
    };
  } catch (cause) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "the installed root CRL ca/root.crl is not an X.509 CRL" }, cause });
  }
}
