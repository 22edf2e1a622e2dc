import { createHash } from "node:crypto";
import { isIP } from "node:net";
import type { KeyUsageName } from "@ukey/policy";
import { UkeyError, extKeyUsageOids } from "@ukey/policy";
import { subjectPublicKeyBits } from "./algorithms.js";
import { derTrue, octetString, oid, seq, smallInteger, tlv } from "./der.js";

// Encoders for the X.509 extensions this CA writes. Each returns a whole
// Extension (extnID, critical, extnValue) ready to be concatenated.

/** An Extension SEQUENCE; `critical` FALSE is the DEFAULT and so never encoded. */
export function extension(extnId: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(extnId), derTrue, octetString(value)) : seq(oid(extnId), octetString(value));
}

/** Extension OIDs. */
export const ExtOid = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  cRLNumber: "2.5.29.20",
  reasonCode: "2.5.29.21",
  cRLDistributionPoints: "2.5.29.31",
  deltaCRLIndicator: "2.5.29.27",
  freshestCRL: "2.5.29.46",
  issuingDistributionPoint: "2.5.29.28",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
  ocspNonce: "1.3.6.1.5.5.7.48.1.2",
  accessOcsp: "1.3.6.1.5.5.7.48.1",
  accessCaIssuers: "1.3.6.1.5.5.7.48.2",
} as const;

/** keyUsage bit positions (RFC 5280 4.2.1.3). */
const keyUsageBits: Record<KeyUsageName | "keyCertSign" | "cRLSign", number> = {
  digitalSignature: 0, nonRepudiation: 1, keyEncipherment: 2, dataEncipherment: 3, keyAgreement: 4, keyCertSign: 5, cRLSign: 6,
};

/** RFC 5280 method 1 key identifier: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  return createHash("sha1").update(subjectPublicKeyBits(spki)).digest();
}

/** basicConstraints, critical; CA:FALSE encodes as an empty SEQUENCE. */
export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  const parts: Buffer[] = [];
  if (ca) parts.push(derTrue);
  if (ca && pathLen !== undefined) parts.push(smallInteger(pathLen));
  return extension(ExtOid.basicConstraints, true, seq(...parts));
}

/** keyUsage, critical, as a DER named-bit BIT STRING (trailing zero bits dropped). */
export function keyUsage(names: ReadonlyArray<keyof typeof keyUsageBits>): Buffer {
  if (names.length === 0) throw new UkeyError("REQUEST_INVALID", { params: { reason: "a profile needs at least one key usage" } });
  let bits = 0;
  for (const n of names) {
    const b = keyUsageBits[n];
    if (b === undefined) throw new UkeyError("REQUEST_INVALID", { params: { reason: `unknown key usage ${n}` } });
    bits |= 0x80 >> b;
  }
  const unused = 31 - Math.clz32(bits & -bits); // trailing zero bits of the one octet
  return extension(ExtOid.keyUsage, true, tlv(0x03, Buffer.from([unused, bits])));
}

/** extKeyUsage, not critical (relying parties that do not know an EKU should still use keyUsage). */
export function extKeyUsage(names: readonly string[]): Buffer {
  const oids = names.map((n) => {
    const o = (extKeyUsageOids as Record<string, string>)[n] ?? (/^\d+(\.\d+)+$/.test(n) ? n : undefined);
    if (!o) throw new UkeyError("REQUEST_INVALID", { params: { reason: `unknown extended key usage ${n}` } });
    return oid(o);
  });
  return extension(ExtOid.extKeyUsage, false, seq(...oids));
}

/** subjectKeyIdentifier (not critical). */
export function subjectKeyIdentifier(keyId: Buffer): Buffer {
  return extension(ExtOid.subjectKeyIdentifier, false, octetString(keyId));
}

/** authorityKeyIdentifier with keyIdentifier only (not critical). */
export function authorityKeyIdentifier(keyId: Buffer): Buffer {
  return extension(ExtOid.authorityKeyIdentifier, false, seq(tlv(0x80, keyId)));
}

function uri(u: string): Buffer {
  if (!/^[\x21-\x7e]+$/.test(u) || !/^[a-z][a-z0-9+.-]*:/i.test(u)) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: `not an ASCII URI: ${u}` } });
  }
  return tlv(0x86, Buffer.from(u, "latin1"));
}

/** cRLDistributionPoints with one full-name URI (not critical). */
export function crlDistributionPoints(url: string): Buffer {
  return extension(ExtOid.cRLDistributionPoints, false, seq(seq(tlv(0xa0, tlv(0xa0, uri(url))))));
}

/**
 * freshestCRL (not critical, RFC 5280 4.2.1.15 and 5.2.6): where the delta CRL of the CRL a certificate
 * names (or of the complete CRL carrying it) is published. Same syntax as cRLDistributionPoints.
 */
export function freshestCrl(url: string): Buffer {
  return extension(ExtOid.freshestCRL, false, seq(seq(tlv(0xa0, tlv(0xa0, uri(url))))));
}

/**
 * issuingDistributionPoint (critical, RFC 5280 5.2.5) naming the one URL a
 * partitioned CRL covers: a relying party uses it only for certificates
 * whose cRLDistributionPoints name the same URL.
 */
export function issuingDistributionPoint(url: string): Buffer {
  return extension(ExtOid.issuingDistributionPoint, true, seq(tlv(0xa0, tlv(0xa0, uri(url)))));
}

/** authorityInfoAccess with an OCSP URL and/or a caIssuers URL (not critical). */
export function authorityInfoAccess(ocsp: string | undefined, caIssuers: string | undefined): Buffer {
  const items: Buffer[] = [];
  if (ocsp) items.push(seq(oid(ExtOid.accessOcsp), uri(ocsp)));
  if (caIssuers) items.push(seq(oid(ExtOid.accessCaIssuers), uri(caIssuers)));
  return extension(ExtOid.authorityInfoAccess, false, seq(...items));
}

function ipBytes(text: string): Buffer {
  const v = isIP(text);
  if (v === 4) return Buffer.from(text.split(".").map(Number));
  if (v === 6) {
    // Expand "::" and an embedded IPv4 tail, then pack the eight groups.
    let t = text;
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
    if (v4) {
      const b = v4[1]!.split(".").map(Number);
      t = t.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
    }
    const [head, tail] = t.split("::") as [string, string | undefined];
    const h = head ? head.split(":") : [];
    const tl = tail ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill("0"), ...tl];
    const out = Buffer.alloc(16);
    groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
    return out;
  }
  throw new UkeyError("REQUEST_INVALID", { params: { reason: `not an IP address: ${text}` } });
}

/** GeneralName for "email:", "dns:", "uri:" or "ip:" text. Throws REQUEST_INVALID. */
export function generalName(san: string): Buffer {
  const i = san.indexOf(":");
  const kind = i < 0 ? "" : san.slice(0, i).toLowerCase();
  const value = san.slice(i + 1);
  const ascii = /^[\x21-\x7e]+$/;
  switch (kind) {
    case "email":
      if (!ascii.test(value) || !/^[^@]+@[^@]+$/.test(value)) break;
      return tlv(0x81, Buffer.from(value, "latin1"));
    case "dns":
      if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(value)) break;
      return tlv(0x82, Buffer.from(value, "latin1"));
    case "uri":
      return uri(value);
    case "ip":
      return tlv(0x87, ipBytes(value));
  }
  throw new UkeyError("REQUEST_INVALID", { params: { reason: `bad subject alternative name ${san}` } });
}

/** subjectAltName; RFC 5280 makes it critical when the subject is empty. */
export function subjectAltName(sans: readonly string[], critical: boolean): Buffer {
  return extension(ExtOid.subjectAltName, critical, seq(...sans.map(generalName)));
}
