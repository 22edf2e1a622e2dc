import sjson from "secure-json-parse";
import { UkeyError } from "@ukey/policy";

// Text the stores cannot keep as it was hashed: an unpaired surrogate (both
// engines write U+FFFD in its place) or NUL (PostgreSQL refuses it in text).
const storable = (s: string): boolean => s.isWellFormed() && !s.includes("\0");

/**
 * Where `value` (a parsed JSON value, or a request's params or query) holds
 * a string or key that cannot be stored as it is, as a path like
 * `$.items[2].name`; undefined when all of it can. Walks with its own
 * stack, so that a deeply nested body cannot exhaust the call stack.
 */
export function unstorableTextAt(value: unknown): string | undefined {
  const stack: Array<{ v: unknown; at: string }> = [{ v: value, at: "$" }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { v, at } = item;
    if (typeof v === "string") {
      if (!storable(v)) return at;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push({ v: v[i], at: `${at}[${i}]` });
    } else if (v !== null && typeof v === "object") {
      for (const [k, child] of Object.entries(v)) {
        if (!storable(k)) return `${at} (a key)`;
        stack.push({ v: child, at: `${at}.${k}` });
      }
    }
  }
  return undefined;
}

// fatal: bytes that are not UTF-8 (including encoded surrogates) are an error, never U+FFFD.
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The application/json body parser: UTF-8 decoded strictly (a leading BOM
 * is dropped), parsed with Fastify's own secure-json-parse so that
 * `__proto__` and `constructor.prototype` keys are refused as Fastify
 * refuses them, and every string and key checked (unstorableTextAt).
 * @throws UkeyError REQUEST_INVALID (empty, not JSON, a prototype key), UNSUPPORTED_MEDIA_TYPE (a charset
 *   other than UTF-8), REQUEST_TEXT_MALFORMED (not UTF-8, an unpaired surrogate or NUL).
 */
export function parseJsonBody(body: Buffer, contentType: string | undefined): unknown {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? "")?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: String(contentType).slice(0, 100) }, detail: "JSON is UTF-8 (RFC 8259)" });
  }
  if (body.length === 0) throw new UkeyError("REQUEST_INVALID", { params: { reason: "the body is empty but its type is application/json" } });
  let text: string;
  try {
    text = utf8.decode(body);
  } catch (cause) {
    throw new UkeyError("REQUEST_TEXT_MALFORMED", { detail: "the body is not UTF-8", cause });
  }
  let value: unknown;
  try {
    value = sjson.parse(text, undefined, { protoAction: "error", constructorAction: "error" });
  } catch (cause) {
    const poisoned = /forbidden prototype property/.test((cause as Error).message);
    throw new UkeyError("REQUEST_INVALID", { params: { reason: poisoned ? "the body holds a __proto__ or constructor.prototype key" : "body is not valid JSON" }, cause });
  }
  const at = unstorableTextAt(value);
  if (at !== undefined) throw new UkeyError("REQUEST_TEXT_MALFORMED", { detail: `the JSON body at ${at}` });
  return value;
}
