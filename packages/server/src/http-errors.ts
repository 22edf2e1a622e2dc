import { STATUS_CODES } from "node:http";
import type { FastifyError, FastifyReply, FastifyRequest, FastifyBaseLogger } from "fastify";
import { UkeyError, type ErrorCode, type ErrorKind, type ErrorProblem } from "@ukey/policy";
import { redactUrl } from "./request-log.js";

/** The one mapping from error kinds to HTTP statuses. */
export const statusOfKind: Record<ErrorKind, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  "not-found": 404,
  conflict: 409,
  "too-large": 413,
  "rate-limited": 429,
  unavailable: 503,
  internal: 500,
};

/** find-my-way's default, which this server keeps: no path parameter here is longer. */
const maxParamLength = 100;

/** Refusals HTTP has a more precise status for than their kind's. */
const statusOfCode: Partial<Record<ErrorCode, number>> = {
  // RFC 9110 section 15.5.16: a content type the route does not take is 415, not a generic 400.
  UNSUPPORTED_MEDIA_TYPE: 415,
  URL_TOO_LONG: 414,
  REQUEST_HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  EXPECTATION_UNSUPPORTED: 417,
  PRECONDITION_FAILED: 412,
  RANGE_NOT_SATISFIABLE: 416,
};

/** The HTTP status of `u`: its code's own (statusOfCode), else its kind's. */
export function httpStatusOf(u: UkeyError): number {
  return statusOfCode[u.code] ?? statusOfKind[u.kind];
}

/** An RFC 9457 problem document with the catalogue's fields. */
export type ProblemDocument = ErrorProblem & { type: string; title: string; status: number };

/** The problem document of `u` answered with `status` (default httpStatusOf). */
export function problemDocument(u: UkeyError, status = httpStatusOf(u)): ProblemDocument {
  const p = u.toProblem();
  return { type: `urn:ukey:error:${p.code}`, title: p.message.en, status, ...p };
}

/**
 * Codes whose parameters describe the server's insides: a database driver's
 * message (host names, ports, user names), the database hosts tried, a file path, an HSM's module path
 * or token. An HTTP answer names the request in their place (the log line of
 * that request keeps them, with its id), so a caller learns the code and what
 * to do, never the deployment's layout.
 */
const insideParams: Partial<Record<ErrorCode, readonly string[]>> = {
  DATABASE_UNAVAILABLE: ["reason"],
  DATABASE_READ_ONLY: ["hosts"],
  DATA_DIR_CORRUPT: ["dir", "reason"],
  STORAGE_FULL: ["reason"],
  HSM_OPERATION_FAILED: ["reason"],
  HSM_MODULE_LOAD_FAILED: ["module"],
  HSM_TOKEN_NOT_FOUND: ["token"],
};

/**
 * `u` as an HTTP answer may carry it: the parameters insideParams names
 * replaced by `ref` (the request's id in the log) and no detail. Other codes
 * pass unchanged.
 */
export function publicError(u: UkeyError, ref: string): UkeyError {
  const names = insideParams[u.code];
  if (!names) return u;
  const params = { ...u.params };
  for (const n of names) if (n in params) params[n] = `log ${ref}`;
  return new UkeyError(u.code, { params });
}

/**
 * A request refused by Fastify or a plugin for what the client sent, by its
 * status, when its code has no entry in toUkeyError: a newer Fastify or
 * plugin may add codes, and what the client sent must never read as a
 * server defect.
 */
function byClientStatus(status: number, reason: string, cause: unknown, req?: FastifyRequest): UkeyError {
  switch (status) {
    case 404: return new UkeyError("ROUTE_NOT_FOUND", { cause });
    case 412: return new UkeyError("PRECONDITION_FAILED", { cause });
    case 413: return new UkeyError("REQUEST_TOO_LARGE", { params: { limit: limitOf(req) }, cause });
    case 414: return new UkeyError("URL_TOO_LONG", { params: { limit: "" }, cause });
    case 415: return new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: reason }, cause });
    case 416: return new UkeyError("RANGE_NOT_SATISFIABLE", { cause });
    case 431: return new UkeyError("REQUEST_HEADERS_TOO_LARGE", { cause });
    default: return new UkeyError("REQUEST_INVALID", { params: { reason }, cause });
  }
}

/** The body limit that refused a request: the route's own, else the server's (never an empty placeholder). */
function limitOf(req: FastifyRequest | undefined): string {
  const limit = req?.routeOptions?.bodyLimit ?? req?.server?.initialConfig?.bodyLimit;
  return limit === undefined ? "?" : String(limit);
}

/**
 * Turns anything thrown into a UkeyError: our own pass through; every error
 * Fastify 5 (and @fastify/static) raises for what a client sent gets its
 * catalogue code; everything else is INTERNAL (its cause logged, never
 * shown). Fastify's codes a request can raise:
 *
 * | code | status | catalogue |
 * |---|---|---|
 * | FST_ERR_BAD_URL (a %-escape that is not UTF-8; frameworkErrors) | 400 | URL_INVALID |
 * | FST_ERR_MAX_PARAM_LENGTH (a path parameter over 100 characters; frameworkErrors) | 414 | URL_TOO_LONG |
 * | FST_ERR_CTP_BODY_TOO_LARGE | 413 | REQUEST_TOO_LARGE |
 * | FST_ERR_CTP_INVALID_MEDIA_TYPE, FST_ERR_ROUTE_MISSING_CONTENT_TYPE | 400 | UNSUPPORTED_MEDIA_TYPE |
 * | FST_ERR_CTP_INVALID_CONTENT_LENGTH, a body cut off (ECONNRESET) | 400 | REQUEST_INCOMPLETE |
 * | FST_ERR_CTP_EMPTY_JSON_BODY, FST_ERR_CTP_INVALID_JSON_BODY, FST_ERR_VALIDATION | 400 | REQUEST_INVALID |
 * | FST_ERR_NOT_FOUND | 404 | ROUTE_NOT_FOUND |
 * | FST_STATIC_FORBIDDEN_PATH (`..`, `.`, `//`, a name too long) | 400 | URL_INVALID |
 * | @fastify/static's 412 and 416 | 412, 416 | PRECONDITION_FAILED, RANGE_NOT_SATISFIABLE |
 *
 * FST_ERR_ASYNC_CONSTRAINT and FST_ERR_HANDLER_TIMEOUT need async route
 * constraints and handler timeouts, which this server does not use; the
 * other FST_ERR_* codes are programming errors. Both stay INTERNAL.
 */
export function toUkeyError(err: unknown, req?: FastifyRequest): UkeyError {
  if (err instanceof UkeyError) return err;
  const fe = err as Partial<FastifyError> & { expose?: unknown; status?: unknown };
  const contentType = String(req?.headers["content-type"] ?? "none").slice(0, 100);
  switch (fe.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new UkeyError("REQUEST_TOO_LARGE", { params: { limit: limitOf(req) }, cause: err });
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_ROUTE_MISSING_CONTENT_TYPE":
      return new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: contentType }, cause: err });
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new UkeyError("REQUEST_INCOMPLETE", { params: { reason: "the body's length differs from its Content-Length" }, cause: err });
    case "ECONNRESET":
      return new UkeyError("REQUEST_INCOMPLETE", { params: { reason: "the connection closed before the body was complete" }, cause: err });
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new UkeyError("REQUEST_INVALID", { params: { reason: "body is not valid JSON" }, cause: err });
    case "FST_ERR_BAD_URL":
      return new UkeyError("URL_INVALID", { params: { reason: "it holds a %-escape that is not UTF-8" }, cause: err });
    case "FST_ERR_MAX_PARAM_LENGTH":
      return new UkeyError("URL_TOO_LONG", { params: { limit: String(maxParamLength) }, cause: err });
    case "FST_ERR_NOT_FOUND":
      return new UkeyError("ROUTE_NOT_FOUND", { cause: err });
    case "FST_STATIC_FORBIDDEN_PATH":
      return new UkeyError("URL_INVALID", { params: { reason: "its path is not in plain form (a '.' or '..' segment, '//', or a name too long)" }, cause: err });
  }
  if (fe.validation) return new UkeyError("REQUEST_INVALID", { params: { reason: String(fe.message) }, cause: err });
  if (err instanceof SyntaxError) return new UkeyError("REQUEST_INVALID", { params: { reason: "body is not valid JSON" }, cause: err });
  const status = typeof fe.statusCode === "number" ? fe.statusCode : typeof fe.status === "number" ? fe.status : 0;
  const fromClient = (typeof fe.code === "string" && fe.code.startsWith("FST_")) || fe.expose === true;
  if (fromClient && status >= 400 && status < 500) return byClientStatus(status, String(fe.code ?? fe.message ?? status), err, req);
  return new UkeyError("INTERNAL", { cause: err });
}

/**
 * Fastify error handler: an RFC 9457 problem document with our catalogue
 * fields. Refusals are logged at info; failures at error with their cause,
 * unless `logsItself` returns true for one: then it has logged it its own
 * way (storage failures: a count per interval, not a stack per request).
 * The URL in the log has its secrets redacted (request-log.ts).
 */
export function problemHandler(log: FastifyBaseLogger, logsItself?: (u: UkeyError, req: FastifyRequest) => boolean) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const u = toUkeyError(err, req);
    const status = httpStatusOf(u);
    const url = redactUrl(req.url);
    if (status < 500) log.info({ code: u.code, url }, "request refused");
    else if (!logsItself?.(u, req)) log.error({ err, url, code: u.code, reqId: req.id }, "request failed");
    const retryAfter = retryAfterSeconds(u);
    if (retryAfter !== undefined) void reply.header("retry-after", String(retryAfter));
    void reply.status(status).type("application/problem+json").send(problemDocument(publicError(u, String(req.id)), status));
  };
}

/**
 * The raw HTTP/1.1 answer carrying `u`'s problem document, for a socket
 * Fastify never got a request from (client errors, CONNECT). It closes the
 * connection.
 */
export function rawProblemResponse(u: UkeyError, headers: Readonly<Record<string, string>>): string {
  const status = httpStatusOf(u);
  const body = JSON.stringify(problemDocument(u, status));
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}`,
    "content-type: application/problem+json; charset=utf-8",
    `content-length: ${Buffer.byteLength(body)}`,
    "connection: close",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join("\r\n")}\r\n\r\n${body}`;
}

/**
 * The Retry-After of an error, in whole seconds: its `retryAfterSeconds`
 * parameter, else its `seconds` one (the wait its message names), when
 * either is a positive number; undefined otherwise.
 */
export function retryAfterSeconds(u: UkeyError): number | undefined {
  const v = u.params.retryAfterSeconds ?? u.params.seconds;
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.ceil(v) : undefined;
}
