import { UkeyError } from "@ukey/policy";

// A deliberately small DER toolkit. Issuance assembles certificates from
// precomputed pieces, and concatenating tag-length-value triples is both
// faster and easier to check byte for byte than building object graphs.
// Anything with structure worth naming is parsed with @peculiar/asn1-*.

/** Universal and context tags used in this package. */
export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  enumerated: 0x0a,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: `tag` (a single identifier octet) around the concatenated `contents`. */
export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  // One copy: the contents go straight after the tag and length (a CRL's entries are tens of megabytes).
  let length = 0;
  for (const c of contents) length += c.length;
  const head = Buffer.concat([Buffer.from([tag]), lengthBytes(length)]);
  return Buffer.concat([head, ...contents], head.length + length);
}

/** SEQUENCE of already encoded elements. */
export const seq = (...items: Buffer[]): Buffer => tlv(Tag.sequence, ...items);

/** SET OF already encoded elements, sorted as DER requires. */
export function setOf(...items: Buffer[]): Buffer {
  return tlv(Tag.set, ...[...items].sort(Buffer.compare));
}

/** [n] EXPLICIT, constructed. */
export const explicit = (n: number, ...items: Buffer[]): Buffer => tlv(0xa0 | n, ...items);

/** OCTET STRING. */
export const octetString = (b: Buffer): Buffer => tlv(Tag.octetString, b);

/** BIT STRING with no unused bits (keys, signatures). */
export const bitString = (b: Buffer): Buffer => tlv(Tag.bitString, Buffer.from([0]), b);

/** DER NULL. */
export const derNull: Buffer = Buffer.from([0x05, 0x00]);

/** BOOLEAN TRUE (FALSE is always a DEFAULT in what we write, so it is never encoded). */
export const derTrue: Buffer = Buffer.from([0x01, 0x01, 0xff]);

/** INTEGER from an unsigned big-endian magnitude: leading zeros removed, a 0x00 added when the top bit is set. */
export function unsignedInteger(magnitude: Buffer): Buffer {
  return tlv(Tag.integer, minimalUnsigned(magnitude));
}

/** The contents octets of a positive INTEGER with this magnitude (zero gives 0x00). */
export function minimalUnsigned(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length === 0) return Buffer.from([0]);
  return m[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m;
}

/** INTEGER from a small non-negative number or bigint. */
export function smallInteger(n: number | bigint): Buffer {
  let v = BigInt(n);
  if (v < 0n) throw new RangeError("negative INTEGER");
  const bytes: number[] = [];
  do { bytes.unshift(Number(v & 0xffn)); v >>= 8n; } while (v > 0n);
  return unsignedInteger(Buffer.from(bytes));
}

/** ENUMERATED from a small non-negative number. */
export function enumerated(n: number): Buffer {
  const i = smallInteger(n);
  i[0] = Tag.enumerated;
  return i;
}

const oidCache = new Map<string, Buffer>();

/** OBJECT IDENTIFIER from dotted form; cached because the same few OIDs recur. */
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const arcs = dotted.split(".").map((s) => {
    if (!/^\d+$/.test(s)) throw new RangeError(`bad OID ${dotted}`);
    return BigInt(s);
  });
  if (arcs.length < 2) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: bigint) => {
    const groups: number[] = [Number(v & 0x7fn)];
    for (v >>= 7n; v > 0n; v >>= 7n) groups.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...groups);
  };
  push(arcs[0]! * 40n + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  const enc = tlv(Tag.oid, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

/** Dotted form of the contents octets of an OBJECT IDENTIFIER. */
export function oidToString(contents: Buffer): string {
  const arcs: bigint[] = [];
  let v = 0n;
  for (const b of contents) {
    v = (v << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) { arcs.push(v); v = 0n; }
  }
  const first = arcs.shift() ?? 0n;
  const head = first < 80n ? [first / 40n, first % 40n] : [2n, first - 80n];
  return [...head, ...arcs].join(".");
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** GeneralizedTime YYYYMMDDHHMMSSZ (seconds precision, as RFC 5280 and RFC 6960 profiles want). */
export function generalizedTime(d: Date): Buffer {
  assertDate(d);
  const s = `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  return tlv(Tag.generalizedTime, Buffer.from(s, "latin1"));
}

/** RFC 5280 Time: UTCTime for 1950-2049, GeneralizedTime otherwise. */
export function x509Time(d: Date): Buffer {
  assertDate(d);
  const y = d.getUTCFullYear();
  if (y < 1950 || y >= 2050) return generalizedTime(d);
  const s = `${pad(y % 100)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  return tlv(Tag.utcTime, Buffer.from(s, "latin1"));
}

function assertDate(d: Date): void {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) {
    throw new UkeyError("REQUEST_INVALID", { params: { reason: "invalid date" } });
  }
}

/** A decoded TLV header: where its contents start and where it ends, within the buffer it was read from. */
export interface DerNode {
  tag: number;
  /** Offset of the tag octet. */
  start: number;
  /** Offset of the first contents octet. */
  contentStart: number;
  /** Offset just past the contents. */
  end: number;
}

function malformed(reason: string): UkeyError {
  return new UkeyError("DER_MALFORMED", { params: { reason } });
}

/**
 * Reads the TLV at `offset`. Only single-octet tags and definite, minimally
 * encoded lengths are accepted (that is DER). Throws DER_MALFORMED.
 */
export function readNode(buf: Buffer, offset = 0, limit = buf.length): DerNode {
  if (offset + 2 > limit) throw malformed("truncated");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw malformed("multi-octet tag");
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw malformed("indefinite length");
    if (n > 4 || p + n > limit) throw malformed("length too long");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    if (len < 0x80 || buf[p] === 0) throw malformed("non-minimal length");
    p += n;
  }
  const end = p + len;
  if (end > limit) throw malformed("truncated");
  return { tag, start: offset, contentStart: p, end };
}

/** The children of a constructed node. Throws DER_MALFORMED. */
export function children(buf: Buffer, node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let p = node.contentStart; p < node.end;) {
    const c = readNode(buf, p, node.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

/** Checks that `buf` is exactly one DER TLV and returns it. Throws DER_MALFORMED. */
export function readWhole(buf: Buffer): DerNode {
  const n = readNode(buf, 0);
  if (n.end !== buf.length) throw malformed("trailing data");
  return n;
}

/** The bytes of a node, including tag and length. */
export const raw = (buf: Buffer, n: DerNode): Buffer => buf.subarray(n.start, n.end);

/** The contents octets of a node. */
export const contents = (buf: Buffer, n: DerNode): Buffer => buf.subarray(n.contentStart, n.end);
