import { UkeyError } from "@ukey/policy";

/** A decoded RFC 9773 certificate identifier. */
export interface CertId {
  /** Hex of the AKI keyIdentifier (the issuer's SKI), as the store keeps it. */
  issuerKeyId: string;
  /** Serial in the store's form: minimal even-length lower-case hex. */
  serial: string;
}

const base64url = /^[A-Za-z0-9_-]+$/;

/**
 * Parses `base64url(AKI keyIdentifier) "." base64url(serial)` (RFC 9773
 * section 4.1; no padding). The serial is the DER INTEGER's content octets;
 * a leading zero octet is dropped to match our serial form.
 * @throws UkeyError CERT_ID_MALFORMED.
 */
export function parseCertId(text: string): CertId {
  const bad = (reason: string) => new UkeyError("CERT_ID_MALFORMED", { params: { reason } });
  if (text.length > 200) throw bad("too long");
  const parts = text.split(".");
  if (parts.length !== 2) throw bad("expected two base64url parts separated by one dot");
  const [aki, serial] = parts as [string, string];
  if (!base64url.test(aki) || !base64url.test(serial)) throw bad("not base64url (A-Z a-z 0-9 - _, no padding)");
  if (aki.length % 4 === 1 || serial.length % 4 === 1) throw bad("base64url of impossible length");
  const akiBytes = Buffer.from(aki, "base64url");
  const serialBytes = Buffer.from(serial, "base64url");
  if (akiBytes.length === 0 || akiBytes.length > 64) throw bad("key identifier must be 1 to 64 octets");
  if (serialBytes.length === 0 || serialBytes.length > 21) throw bad("serial must be 1 to 21 octets");
  if (serialBytes[0]! & 0x80) throw bad("serial is negative");
  let i = 0;
  while (i < serialBytes.length - 1 && serialBytes[i] === 0) i++;
  const hex = serialBytes.subarray(i).toString("hex");
  if (/^0+$/.test(hex)) throw bad("serial is zero");
  return { issuerKeyId: akiBytes.toString("hex"), serial: hex };
}

/** The certID of a certificate record: inverse of parseCertId (positive serials get their leading zero octet back). */
export function formatCertId(issuerKeyId: string, serialHex: string): string {
  let serial = Buffer.from(serialHex, "hex");
  if (serial[0]! & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${Buffer.from(issuerKeyId, "hex").toString("base64url")}.${serial.toString("base64url")}`;
}
