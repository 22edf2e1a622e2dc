import { randomBytes } from "node:crypto";
import { UkeyError } from "@ukey/policy";

/** Longest serial accepted anywhere: RFC 5280 allows 20 octets. */
const maxSerialHexDigits = 40;

/**
 * A fresh certificate serial: 128 bits from the CSPRNG, as the contents of
 * a positive DER INTEGER (a 0x00 is prepended when the top bit is set, so
 * the result is 16 or 17 bytes). Never zero in practice (2^-128).
 */
export function newSerial(): Buffer {
  const r = randomBytes(16);
  return r[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), r]) : r;
}

/**
 * The canonical text form of a serial: minimal even-length lower-case hex
 * of the integer, no separators ("00" for zero). `buf` is a big-endian
 * magnitude or the contents of a positive DER INTEGER. Never throws.
 */
export function serialHex(buf: Buffer): string {
  let i = 0;
  while (i < buf.length - 1 && buf[i] === 0) i++;
  return buf.length === 0 ? "00" : buf.subarray(i).toString("hex");
}

/**
 * The canonical form (see serialHex) of a serial typed by a person or
 * another tool: colons, spaces, a 0x prefix, upper case and leading zeros
 * are accepted. Throws SERIAL_MALFORMED for anything else, zero, or more
 * than 20 octets.
 */
export function normaliseSerial(text: string): string {
  const bad = () => new UkeyError("SERIAL_MALFORMED", { params: { serial: String(text).slice(0, 80) } });
  if (typeof text !== "string") throw bad();
  let s = text.trim().replace(/^0x/i, "").replace(/[:\s]/g, "").toLowerCase();
  if (!/^[0-9a-f]+$/.test(s)) throw bad();
  s = s.replace(/^0+/, "");
  if (s.length === 0 || s.length > maxSerialHexDigits) throw bad();
  return s.length % 2 ? `0${s}` : s;
}

/** The big-endian magnitude of a serial in any form normaliseSerial accepts. Throws SERIAL_MALFORMED. */
export function serialBytes(text: string): Buffer {
  return Buffer.from(normaliseSerial(text), "hex");
}
