import { UkeyError } from "@ukey/policy";
import { readWhole } from "./der.js";

/** One block of a PEM bundle. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

const blockPattern = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

function pemError(reason: string): UkeyError {
  return new UkeyError("PEM_MALFORMED", { params: { reason } });
}

function decodeBody(body: string, label: string): Buffer {
  const b64 = body.replace(/[\s]+/g, "");
  // Buffer.from(…, "base64") silently skips junk; a certificate that is
  // half decoded must be refused, not truncated.
  if (b64.length === 0) throw pemError(`empty ${label} block`);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) throw pemError(`${label} block is not base64`);
  const der = Buffer.from(b64, "base64");
  readWhole(der);
  return der;
}

/**
 * Every PEM block in `text`, in order. Text between blocks (openssl's
 * "subject=" lines, comments) is ignored; CRLF and indentation are fine.
 * Throws PEM_MALFORMED when there is no block or a block is broken, and
 * DER_MALFORMED when a block's contents are not one DER element.
 */
export function splitPemBundle(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(blockPattern)) {
    const [, begin, body, end] = m;
    if (begin !== end) throw pemError(`BEGIN ${begin} closed by END ${end}`);
    out.push({ label: begin!, der: decodeBody(body!, begin!) });
  }
  if (out.length === 0) throw pemError("no -----BEGIN ...----- block found");
  const rest = text.replace(blockPattern, "");
  if (/-----(BEGIN|END) /.test(rest)) throw pemError("unmatched BEGIN or END line");
  return out;
}

/**
 * The DER of the first PEM block with `label` (or one of several labels,
 * e.g. ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]). Throws
 * PEM_MALFORMED when there is no such block or it is broken, DER_MALFORMED
 * when its contents are not one DER element.
 */
export function pemToDer(text: string, label: string | readonly string[]): Buffer {
  const labels = typeof label === "string" ? [label] : label;
  const blocks = splitPemBundle(text);
  const hit = blocks.find((b) => labels.includes(b.label));
  if (!hit) throw pemError(`expected ${labels.join(" or ")}, found ${blocks.map((b) => b.label).join(", ")}`);
  return hit.der;
}

/**
 * PEM text for `der`: 64-character lines, LF line ends, trailing newline.
 * Throws DER_MALFORMED when `der` is not exactly one DER element.
 */
export function derToPem(der: Buffer, label: string): string {
  readWhole(der);
  const b64 = der.toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
