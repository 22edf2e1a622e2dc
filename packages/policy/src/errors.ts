import { catalogue, type ErrorCode } from "./error-catalogue.js";
import { POLICY_UTC_OFFSET_MS } from "./policy-calendar.js";

/**
 * The closed set of error kinds. Domain code picks a kind through the
 * catalogue entry; only the server maps kinds to HTTP statuses.
 */
export type ErrorKind =
  | "invalid"          // the input is wrong; the same request will fail again
  | "not-found"        // the thing named does not exist
  | "conflict"         // the state does not allow it now (already revoked, locked)
  | "unauthenticated"  // who is asking is unknown or the secret is wrong
  | "forbidden"        // known, but not allowed
  | "too-large"        // the input exceeds a limit
  | "rate-limited"     // too many requests from this client or for this account; retry after the time given
  | "unavailable"      // a dependency is down; retrying later may work
  | "internal";        // a defect: never shown in detail to the user

/** Values substituted into a catalogue message's `{name}` placeholders. */
export type ErrorParams = Record<string, string | number>;

/**
 * The one error type of ukey-renew. Carries a catalogue code; the message,
 * kind and remedy come from the catalogue, so every error a user sees has a
 * zh-CN and an en text and a remedy.
 */
export class UkeyError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly params: ErrorParams;
  /** Technical detail for logs and operators (en); never replaces the catalogue text. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, options: { params?: ErrorParams; detail?: string; cause?: unknown } = {}) {
    const entry = catalogue[code];
    super(`${code}: ${render(entry.en, options.params, "en")}${options.detail ? ` (${options.detail})` : ""}`, { cause: options.cause });
    this.name = "UkeyError";
    this.code = code;
    this.kind = entry.kind;
    this.params = options.params ?? {};
    this.detail = options.detail;
  }

  /** The user-facing form: code, both messages and both remedies. */
  toProblem(): ErrorProblem {
    return describeError(this.code, this.params, this.kind === "internal" ? undefined : this.detail);
  }
}

/** What an API answer, a CLI `--json` line or a page shows for an error. */
export interface ErrorProblem {
  code: ErrorCode;
  kind: ErrorKind;
  message: { "zh-CN": string; en: string };
  remedy: { "zh-CN": string; en: string };
  /**
   * The values substituted into the message (dates, serials, masked phone
   * numbers), for programs that act on them (the agent, the portal). Only
   * the names the catalogue's texts use, so nothing reaches a client that
   * the rendered message does not already say.
   */
  params?: ErrorParams;
  detail?: string;
}

/** Renders a catalogue entry with its parameters. */
export function describeError(code: ErrorCode, params: ErrorParams = {}, detail?: string): ErrorProblem {
  const e = catalogue[code];
  const p: ErrorProblem = {
    code,
    kind: e.kind,
    message: { "zh-CN": render(e.zh, params, "zh-CN"), en: render(e.en, params, "en") },
    remedy: { "zh-CN": render(e.remedyZh, params, "zh-CN"), en: render(e.remedyEn, params, "en") },
  };
  const used = Object.fromEntries(Object.entries(params).filter(([k]) =>
    [e.en, e.zh, e.remedyEn, e.remedyZh].some((t) => t.includes(`{${k}}`))));
  if (Object.keys(used).length > 0) p.params = used;
  if (detail !== undefined) p.detail = detail;
  return p;
}

const isoInstant = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?Z$/;

/**
 * How a parameter reads in a message. An instant (an ISO 8601 time in UTC,
 * as params carry them for programs) reads as the wall-clock time in China,
 * where holders and the policy's days are: "2026-12-04 06:57（北京时间）",
 * never a raw UTC string. Other values read as they are.
 */
export function renderParam(value: string | number, lang: "zh-CN" | "en"): string {
  const text = String(value);
  if (!isoInstant.test(text)) return text;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return text;
  const local = new Date(ms + POLICY_UTC_OFFSET_MS).toISOString();
  const wall = `${local.slice(0, 10)} ${local.slice(11, 16)}`;
  return lang === "zh-CN" ? `${wall}（北京时间）` : `${wall} China time (UTC+8)`;
}

function render(template: string, params: ErrorParams | undefined, lang: "zh-CN" | "en"): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => (params && k in params ? renderParam(params[k]!, lang) : m));
}

/** True when `e` is a UkeyError with one of the given codes. */
export function isUkeyError(e: unknown, ...codes: ErrorCode[]): e is UkeyError {
  return e instanceof UkeyError && (codes.length === 0 || codes.includes(e.code));
}
