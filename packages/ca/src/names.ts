import { AsnConvert } from "@peculiar/asn1-schema";
import { Name } from "@peculiar/asn1-x509";
import { UkeyError } from "@ukey/policy";
import { oid, seq, tlv, Tag } from "./der.js";
import type { SubjectSpec } from "./types.js";

/** Attribute types a SubjectSpec may name, by their short names. */
export const attributeOids: Readonly<Record<string, string>> = {
  C: "2.5.4.6",
  ST: "2.5.4.8",
  L: "2.5.4.7",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  CN: "2.5.4.3",
  serialNumber: "2.5.4.5",
  emailAddress: "1.2.840.113549.1.9.1",
};

const shortNames: Record<string, string> = Object.fromEntries(Object.entries(attributeOids).map(([k, v]) => [v, k]));

/** Upper bounds from RFC 5280 Appendix A (ub-*), so a name never breaks a strict relying party. */
const upperBounds: Record<string, number> = {
  "2.5.4.6": 2, "2.5.4.8": 128, "2.5.4.7": 128, "2.5.4.10": 64, "2.5.4.11": 64,
  "2.5.4.3": 64, "2.5.4.5": 64, "1.2.840.113549.1.9.1": 255,
};

const printable = /^[A-Za-z0-9 '()+,\-./:=?]+$/;

function invalid(reason: string): UkeyError {
  return new UkeyError("REQUEST_INVALID", { params: { reason } });
}

/**
 * The attribute's value, DER-encoded with the string type RFC 5280 wants:
 * PrintableString for countryName and serialNumber, IA5String for
 * emailAddress (PKCS#9 defines it so), UTF8String for everything else.
 */
function attributeValue(type: string, value: string): Buffer {
  if (type === attributeOids.C || type === attributeOids.serialNumber) {
    if (!printable.test(value)) throw invalid(`${shortNames[type]} must be printable ASCII: ${value}`);
    if (type === attributeOids.C && !/^[A-Z]{2}$/.test(value)) throw invalid(`country must be two capital letters: ${value}`);
    return tlv(Tag.printableString, Buffer.from(value, "latin1"));
  }
  if (type === attributeOids.emailAddress) {
    if (!/^[\x20-\x7e]+$/.test(value)) throw invalid(`emailAddress must be ASCII: ${value}`);
    return tlv(Tag.ia5String, Buffer.from(value, "latin1"));
  }
  return tlv(Tag.utf8String, Buffer.from(value, "utf8"));
}

const typeOids = new Map<string, Buffer>();

/**
 * DER Name for the RDNs of a SubjectSpec, one attribute per RDN, in the
 * order given. Encoded with the TLV toolkit because it runs once per
 * issued certificate; the certificate-builder tests compare it byte for
 * byte with @peculiar/asn1-x509's encoding. Throws REQUEST_INVALID for
 * unknown types, empty or over-long values, and values a string type
 * cannot hold.
 */
export function encodeName(rdns: SubjectSpec["rdns"]): Buffer {
  return seq(...rdns.map(([t, v]) => {
    const type = attributeOids[t] ?? (/^\d+(\.\d+)+$/.test(t) ? t : undefined);
    if (!type) throw invalid(`unknown attribute type ${t}`);
    if (typeof v !== "string" || v.trim() === "") throw invalid(`empty ${t}`);
    const ub = upperBounds[type];
    if (ub !== undefined && [...v].length > ub) throw invalid(`${t} longer than ${ub} characters`);
    let typeOid = typeOids.get(type);
    if (!typeOid) typeOids.set(type, typeOid = oid(type));
    return tlv(Tag.set, seq(typeOid, attributeValue(type, v)));
  }));
}

/** A one-line rendering of a DER Name ("C=CN, O=Example Bank, CN=Zhang San"), in encoding order; for display and logs only. */
export function nameToString(der: Buffer | Name): string {
  const name = der instanceof Name ? der : AsnConvert.parse(der, Name);
  return name.map((rdn) => rdn.map((atv) => {
    const k = shortNames[atv.type] ?? atv.type;
    const v = atv.value.anyValue ? `#${Buffer.from(atv.value.anyValue).toString("hex")}` : atv.value.toString();
    return `${k}=${v.replace(/([,+\\])/g, "\\$1")}`;
  }).join("+")).join(", ");
}
