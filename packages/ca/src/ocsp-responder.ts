import { createHash } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { UkeyError, isUkeyError, revocationReasonCode } from "@ukey/policy";
import { Oid, subjectPublicKeyBits } from "./algorithms.js";
import {
  bitString, children, contents, derNull, enumerated, explicit, generalizedTime, octetString, oid, oidToString, raw, readWhole, seq, tlv, Tag,
  unsignedInteger, type DerNode,
} from "./der.js";
import { extension, ExtOid } from "./extensions.js";
import { OcspRequestSchema } from "./ocsp-request-schema.js";
import { serialBytes, serialHex } from "./serial.js";
import type { CaSigner, IssuerCertificate, OcspCertId, OcspCertStatus, OcspRequestInfo } from "./types.js";

/** Most CertIDs answered in one request; more is refused as malformed. */
export const maxOcspCertIds = 16;
/** Largest OCSP request accepted, in bytes. */
export const maxOcspRequestBytes = 8192;

const hashNames: Record<string, OcspCertId["hashAlgorithm"]> = {
  [Oid.sha1]: "sha1", [Oid.sha256]: "sha256", [Oid.sha384]: "sha384", [Oid.sha512]: "sha512",
};

function malformed(reason: string, cause?: unknown): UkeyError {
  return new UkeyError("OCSP_REQUEST_MALFORMED", { params: { reason }, cause });
}

/**
 * Decodes an RFC 6960 OCSPRequest. Each CertID keeps its exact DER, to be
 * echoed in the response; `nonce` is the nonce extension's extnValue
 * contents (the DER OCTET STRING openssl sends), echoed verbatim.
 * Throws OCSP_REQUEST_MALFORMED for garbage, an empty request list, more
 * than 16 CertIDs, an unknown hash algorithm, a critical extension other
 * than the nonce (RFC 6960 4.4) or an over-long nonce, and
 * REQUEST_TOO_LARGE above 8 KiB.
 */
export function parseOcspRequest(der: Buffer): OcspRequestInfo {
  if (der.length > maxOcspRequestBytes) throw new UkeyError("REQUEST_TOO_LARGE", { params: { limit: maxOcspRequestBytes } });
  return plainRequest(der) ?? parseFull(der);
}

/**
 * The RFC 5019 shape that relying parties send at every login — a request
 * list of bare CertIDs, no version, requestor, extensions or signature —
 * read straight off the DER (a tenth of the cost of the schema parser).
 * Anything else, or anything odd in it, returns undefined and goes to the
 * full parser, which decides.
 */
function plainRequest(der: Buffer): OcspRequestInfo | undefined {
  try {
    const top = children(der, readWhole(der));
    if (top.length !== 1 || top[0]!.tag !== Tag.sequence) return undefined;
    const tbs = children(der, top[0]!);
    if (tbs.length !== 1 || tbs[0]!.tag !== Tag.sequence) return undefined;
    const list = children(der, tbs[0]!);
    if (list.length === 0 || list.length > maxOcspCertIds) return undefined;
    const certIds: OcspCertId[] = [];
    for (const r of list) {
      if (r.tag !== Tag.sequence) return undefined;
      const rc = children(der, r);
      if (rc.length !== 1 || rc[0]!.tag !== Tag.sequence) return undefined;
      const f = children(der, rc[0]!);
      if (f.length !== 4 || f[0]!.tag !== Tag.sequence || f[1]!.tag !== Tag.octetString || f[2]!.tag !== Tag.octetString || f[3]!.tag !== Tag.integer) return undefined;
      const alg = children(der, f[0]!);
      if (alg.length < 1 || alg.length > 2 || alg[0]!.tag !== Tag.oid) return undefined;
      if (alg.length === 2 && !raw(der, alg[1]!).equals(derNull)) return undefined;
      const hashAlgorithm = hashNames[oidToString(contents(der, alg[0]!))];
      const serialDer = contents(der, f[3]!);
      // Negative, empty, non-minimal or over-long serials: the full parser gives the precise refusal.
      if (!hashAlgorithm || serialDer.length === 0 || serialDer.length > 21 || (serialDer[0]! & 0x80) !== 0) return undefined;
      if (serialDer.length > 1 && serialDer[0] === 0 && (serialDer[1]! & 0x80) === 0) return undefined;
      certIds.push({
        hashAlgorithm, issuerNameHash: contents(der, f[1]!), issuerKeyHash: contents(der, f[2]!), serial: serialHex(serialDer), der: raw(der, rc[0]!),
      });
    }
    return { certIds };
  } catch {
    return undefined;
  }
}

function parseFull(der: Buffer): OcspRequestInfo {
  let req: OcspRequestSchema;
  let certIdNodes: DerNode[];
  try {
    const top = readWhole(der);
    const tbs = children(der, top)[0];
    if (!tbs || tbs.tag !== Tag.sequence) throw malformed("no tbsRequest");
    const list = children(der, tbs).find((n) => n.tag === Tag.sequence);
    if (!list) throw malformed("no requestList");
    certIdNodes = children(der, list).map((r) => {
      const c = children(der, r)[0];
      if (!c || c.tag !== Tag.sequence) throw malformed("Request without CertID");
      return c;
    });
    req = AsnConvert.parse(der, OcspRequestSchema);
  } catch (e) {
    if (isUkeyError(e, "OCSP_REQUEST_MALFORMED")) throw e;
    throw malformed("not a DER OCSPRequest", e);
  }
  const list = req.tbsRequest.requestList;
  if (list.length === 0) throw malformed("the request list is empty");
  if (list.length > maxOcspCertIds) throw malformed(`more than ${maxOcspCertIds} certificates in one request`);
  if (list.length !== certIdNodes.length) throw malformed("request list");
  const certIds = list.map((r, i): OcspCertId => {
    const c = r.reqCert;
    const hashAlgorithm = hashNames[c.hashAlgorithm.algorithm];
    if (!hashAlgorithm) throw malformed(`unsupported CertID hash ${c.hashAlgorithm.algorithm}`);
    const serial = Buffer.from(c.serialNumber);
    if (serial.length === 0 || serial.length > 21) throw malformed("serial number");
    return {
      hashAlgorithm,
      issuerNameHash: Buffer.from(c.issuerNameHash.buffer),
      issuerKeyHash: Buffer.from(c.issuerKeyHash.buffer),
      serial: serialHex(serial),
      der: raw(der, certIdNodes[i]!),
    };
  });
  // RFC 6960 4.4: unrecognised extensions are ignored unless critical. Only the nonce is understood.
  for (const x of [...(req.tbsRequest.requestExtensions ?? []), ...list.flatMap((r) => r.singleRequestExtensions ?? [])]) {
    if (x.critical && x.extnID !== ExtOid.ocspNonce) throw malformed(`critical extension ${x.extnID} not understood`);
  }
  const info: OcspRequestInfo = { certIds };
  const nonceExt = req.tbsRequest.requestExtensions?.find((x) => x.extnID === ExtOid.ocspNonce);
  if (nonceExt) {
    const v = Buffer.from(nonceExt.extnValue.buffer);
    if (v.length === 0 || v.length > 128) throw malformed("nonce length");
    info.nonce = v;
  }
  return info;
}

const issuerHashCache = new WeakMap<IssuerCertificate, Map<string, { name: Buffer; key: Buffer }>>();

function issuerHashes(issuer: IssuerCertificate, alg: string): { name: Buffer; key: Buffer } {
  let m = issuerHashCache.get(issuer);
  if (!m) issuerHashCache.set(issuer, (m = new Map()));
  let h = m.get(alg);
  if (!h) {
    h = {
      name: createHash(alg).update(issuer.subjectName).digest(),
      key: createHash(alg).update(subjectPublicKeyBits(issuer.spki)).digest(),
    };
    m.set(alg, h);
  }
  return h;
}

/** True when the CertID names `issuer` (name and key hashes, with the CertID's own hash algorithm). Never throws. */
export function matchesIssuer(certId: OcspCertId, issuer: IssuerCertificate): boolean {
  const h = issuerHashes(issuer, certId.hashAlgorithm);
  return h.name.equals(certId.issuerNameHash) && h.key.equals(certId.issuerKeyHash);
}

const sha1Identifier = seq(oid(Oid.sha1), derNull);

/**
 * The CertID RFC 5019 clients send for one of `issuer`'s certificates:
 * SHA-1 hashes (RFC 5019 2.1.1), the algorithm with NULL parameters as
 * openssl, GnuTLS and Java encode it. Pre-signed responses carry this
 * CertID; a request naming the same certificate with other encodings or
 * hashes is still matched by `matchesIssuer` and the serial. Throws
 * SERIAL_MALFORMED.
 */
export function canonicalCertId(issuer: IssuerCertificate, serial: string): OcspCertId {
  const h = issuerHashes(issuer, "sha1");
  const bytes = serialBytes(serial);
  return {
    hashAlgorithm: "sha1", issuerNameHash: h.name, issuerKeyHash: h.key, serial: serialHex(bytes),
    der: seq(sha1Identifier, octetString(h.name), octetString(h.key), unsignedInteger(bytes)),
  };
}

/** One answer of a response. */
export interface OcspSingleAnswer {
  certId: OcspCertId;
  status: OcspCertStatus;
  thisUpdate: Date;
  nextUpdate?: Date;
}

/** What buildOcspResponse needs. */
export interface OcspResponseInput {
  /** The CA whose key signs: responderID is byKey of its key. */
  issuer: IssuerCertificate;
  signer: CaSigner;
  responses: OcspSingleAnswer[];
  producedAt: Date;
  /** From OcspRequestInfo.nonce; echoed as is. */
  nonce?: Buffer;
  /**
   * Certificates to carry in `certs` (DER), normally the signer's own: a client that looks the
   * responder up by key id only among the response's certificates (GnuTLS) needs it. Default none.
   */
  certs?: Buffer[];
}

function certStatus(s: OcspCertStatus): Buffer {
  switch (s.status) {
    case "good": return Buffer.from([0x80, 0x00]);
    case "unknown": return Buffer.from([0x82, 0x00]);
    case "revoked": {
      const parts = [generalizedTime(s.revokedAt)];
      if (s.reason !== undefined) {
        const code = revocationReasonCode(s.reason);
        if (code === undefined) throw new UkeyError("REVOCATION_REASON_INVALID", { params: { reason: s.reason } });
        // As the CRL does (RFC 5280 5.3.1): "unspecified" is said by leaving the reason out, so that
        // OCSP and CRL answer a relying party alike.
        if (code !== 0) parts.push(explicit(0, enumerated(code)));
      }
      return tlv(0xa1, ...parts);
    }
  }
}

/**
 * A successful OCSPResponse (DER) carrying a BasicOCSPResponse signed by
 * the issuing CA's own key (RFC 6960 2.2 allows the CA itself to sign), with
 * responderID byKey, one SingleResponse per answer, and the nonce when one
 * is given, and `certs` when given. Throws REVOCATION_REASON_INVALID, REQUEST_INVALID
 * (no answers) and whatever the signer throws.
 */
export async function buildOcspResponse(input: OcspResponseInput): Promise<Buffer> {
  if (input.responses.length === 0) throw new UkeyError("REQUEST_INVALID", { params: { reason: "an OCSP response needs at least one answer" } });
  const responderKeyHash = issuerHashes(input.issuer, "sha1").key;
  const singles = input.responses.map((r) => seq(
    r.certId.der,
    certStatus(r.status),
    generalizedTime(r.thisUpdate),
    ...(r.nextUpdate ? [explicit(0, generalizedTime(r.nextUpdate))] : []),
  ));
  const tbs = seq(
    explicit(2, octetString(responderKeyHash)),
    generalizedTime(input.producedAt),
    seq(...singles),
    ...(input.nonce ? [explicit(1, seq(extension(ExtOid.ocspNonce, false, input.nonce)))] : []),
  );
  const certs = input.certs?.length ? [explicit(0, seq(...input.certs))] : [];
  const basic = seq(tbs, input.signer.signatureAlgorithm, bitString(await input.signer.sign(tbs)), ...certs);
  return seq(enumerated(0), explicit(0, seq(oid("1.3.6.1.5.5.7.48.1.1"), octetString(basic))));
}

const errorStatuses = { malformedRequest: 1, internalError: 2, tryLater: 3, sigRequired: 5, unauthorized: 6 } as const;

/** An unsigned OCSPResponse carrying only an error status (RFC 6960 2.3). Never throws. */
export function ocspErrorResponse(status: keyof typeof errorStatuses): Buffer {
  return seq(enumerated(errorStatuses[status]));
}
