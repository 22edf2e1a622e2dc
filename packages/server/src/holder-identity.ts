import { createHmac } from "node:crypto";

/**
 * The keyed hash under which an ID number is stored and compared: the
 * number itself is never stored. Normalises case and spaces so that the
 * same number typed differently matches.
 */
export function hashIdNumber(key: Buffer, idType: string, idNumber: string): string {
  return createHmac("sha256", key).update(`${idType}:${normaliseIdNumber(idNumber)}`).digest("hex");
}

/** Upper-cases and drops spaces and dashes (resident IDs end in X or x). */
export function normaliseIdNumber(idNumber: string): string {
  return idNumber.replace(/[\s-]/g, "").toUpperCase();
}

/**
 * The masked form shown to operators and holders: first four and last four
 * kept for long numbers ("1101**********1234"), first and last one for short.
 */
export function maskIdNumber(idNumber: string): string {
  const n = normaliseIdNumber(idNumber);
  if (n.length <= 2) return "*".repeat(n.length);
  const keep = n.length >= 10 ? 4 : 1;
  return n.slice(0, keep) + "*".repeat(n.length - 2 * keep) + n.slice(-keep);
}
