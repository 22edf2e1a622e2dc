import { UkeyError, revocationReasonCode } from "@ukey/policy";
import { bitString, enumerated, explicit, seq, smallInteger, tlv, Tag, unsignedInteger, x509Time } from "./der.js";
import { authorityKeyIdentifier, extension, ExtOid, freshestCrl, issuingDistributionPoint } from "./extensions.js";
import { serialBytes } from "./serial.js";
import type { CaSigner, IssuerCertificate, RevokedEntry } from "./types.js";

/** What buildCrl needs. */
export interface CrlInput {
  issuer: IssuerCertificate;
  signer: CaSigner;
  /** cRLNumber: must grow with every CRL the issuer publishes. */
  number: number | bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** The entries, in any order; read once, as they come (a database cursor streams them). */
  revoked: Iterable<RevokedEntry> | AsyncIterable<RevokedEntry>;
  /** For a shard of a partitioned CRL: the URL it is published at, as its issuingDistributionPoint. */
  distributionPoint?: string;
  /**
   * A delta CRL (RFC 5280 5.2.4): the cRLNumber of the complete CRL it is relative to, carried in its
   * critical deltaCRLIndicator. Its entries may then say removeFromCRL (a hold lifted).
   */
  deltaOf?: number | bigint;
  /** A complete CRL's freshestCRL (RFC 5280 5.2.6): where its delta CRLs are published. */
  freshestCrl?: string;
}

/**
 * The shard (0..count-1) of a serial (hex, as serialHex gives it): by its
 * first octet, so that a shard is one range of serials and its revoked
 * entries one range of an index. Never throws.
 */
export function crlShardOf(serial: string, count: number): number {
  if (count <= 1) return 0;
  return Math.floor((parseInt(serial.slice(0, 2), 16) * count) / 256);
}

/** The serials of shard k as a half-open range of hex strings (`to` undefined: no upper end). Never throws. */
export function crlShardRange(shard: number, count: number): { from: string; to?: string } {
  const edge = (k: number) => Math.ceil((k * 256) / count);
  const hex = (b: number) => b.toString(16).padStart(2, "0");
  return { from: shard === 0 ? "" : hex(edge(shard)), ...(shard + 1 >= count ? {} : { to: hex(edge(shard + 1)) }) };
}

/** PEM label of a CRL. */
export const crlPemLabel = "X509 CRL";

/** crlEntryExtensions holding one reasonCode, by code: the same bytes for every entry with that reason. */
const reasonExtensions: Array<Buffer | undefined> = [];

/** Encoded entries joined into one buffer at a time while a CRL is built. */
const ENTRIES_PER_BLOCK = 4096;

/** The revokedCertificates entry for one revocation. */
function revokedEntry(r: RevokedEntry, delta: boolean): Buffer {
  const code = revocationReasonCode(r.reason);
  // removeFromCRL belongs to delta CRLs only (RFC 5280 5.3.1).
  if (code === undefined || (code === 8 && !delta)) throw new UkeyError("REVOCATION_REASON_INVALID", { params: { reason: r.reason } });
  // RFC 5280 5.3.1: the reason code SHOULD be absent rather than "unspecified".
  if (code === 0) return seq(unsignedInteger(serialBytes(r.serial)), x509Time(r.revokedAt));
  let ext = reasonExtensions[code];
  if (!ext) reasonExtensions[code] = ext = seq(extension(ExtOid.reasonCode, false, enumerated(code)));
  return seq(unsignedInteger(serialBytes(r.serial)), x509Time(r.revokedAt), ext);
}

/**
 * A signed RFC 5280 v2 CRL (DER) with cRLNumber and authorityKeyIdentifier
 * (and issuingDistributionPoint for a shard, deltaCRLIndicator for a delta, freshestCRL for a complete CRL
 * that has deltas), and a reasonCode on each entry whose reason is not "unspecified". Throws
 * REQUEST_INVALID (dates, number, a delta not after its base), SERIAL_MALFORMED, REVOCATION_REASON_INVALID
 * (removeFromCRL outside a delta) and whatever the signer throws.
 */
export async function buildCrl(input: CrlInput): Promise<Buffer> {
  if (!(input.thisUpdate < input.nextUpdate)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "thisUpdate must be before nextUpdate" } });
  const n = BigInt(input.number);
  if (n < 0n || n >= 1n << 159n) throw new UkeyError("REQUEST_INVALID", { params: { reason: "cRLNumber must be 0 to 2^159-1" } });
  const base = input.deltaOf === undefined ? undefined : BigInt(input.deltaOf);
  // RFC 5280 5.2.4: a delta and its complete CRL share one number sequence, the delta's the larger.
  if (base !== undefined && !(base >= 0n && base < n)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "a delta CRL's number must exceed its base's" } });
  if (base !== undefined && input.freshestCrl) throw new UkeyError("REQUEST_INVALID", { params: { reason: "freshestCRL belongs to a complete CRL, not a delta" } });
  // Only the encoded entries are kept (about 40 bytes each): the SEQUENCE needs its length before its contents.
  // They are packed into blocks as they come: a million buffers of their own cost several times their bytes.
  const blocks: Buffer[] = [];
  let pending: Buffer[] = [];
  for await (const r of input.revoked) {
    pending.push(revokedEntry(r, base !== undefined));
    if (pending.length === ENTRIES_PER_BLOCK) {
      blocks.push(Buffer.concat(pending));
      pending = [];
    }
  }
  if (pending.length) blocks.push(Buffer.concat(pending));
  const tbs = seq(
    tlv(Tag.integer, Buffer.from([1])),
    input.signer.signatureAlgorithm,
    input.issuer.subjectName,
    x509Time(input.thisUpdate),
    x509Time(input.nextUpdate),
    // Blocks of ENTRIES_PER_BLOCK: a few hundred arguments at a million entries, never one per entry.
    ...(blocks.length ? [tlv(Tag.sequence, ...blocks)] : []),
    explicit(0, seq(
      authorityKeyIdentifier(input.issuer.keyId), extension(ExtOid.cRLNumber, false, smallInteger(n)),
      ...(base !== undefined ? [extension(ExtOid.deltaCRLIndicator, true, smallInteger(base))] : []),
      ...(input.distributionPoint ? [issuingDistributionPoint(input.distributionPoint)] : []),
      ...(input.freshestCrl ? [freshestCrl(input.freshestCrl)] : []),
    )),
  );
  return seq(tbs, input.signer.signatureAlgorithm, bitString(await input.signer.sign(tbs)));
}
