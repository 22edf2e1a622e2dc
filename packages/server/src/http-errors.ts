import type { FastifyError, FastifyReply, FastifyRequest, FastifyBaseLogger } from "fastify";
import { UkeyError, type ErrorKind } from "@ukey/policy";

/** The one mapping from error kinds to HTTP statuses. */
export const statusOfKind: Record<ErrorKind, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  "not-found": 404,
  conflict: 409,
  "too-large": 413,
  unavailable: 503,
  internal: 500,
};

/**
 * Turns anything thrown into a UkeyError: our own pass through, Fastify's
 * body, media-type and schema errors get their catalogue codes, everything
 * else is INTERNAL (its cause logged, never shown).
 */
export function toUkeyError(err: unknown): UkeyError {
  if (err instanceof UkeyError) return err;
  const fe = err as Partial<FastifyError>;
  switch (fe.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new UkeyError("REQUEST_TOO_LARGE", { params: { limit: String((fe as { limit?: number }).limit ?? "") }, cause: err });
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: String(fe.message ?? "") }, cause: err });
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new UkeyError("REQUEST_INVALID", { params: { reason: "body is not valid JSON" }, cause: err });
  }
  if (fe.validation) return new UkeyError("REQUEST_INVALID", { params: { reason: String(fe.message) }, cause: err });
  if (err instanceof SyntaxError) return new UkeyError("REQUEST_INVALID", { params: { reason: "body is not valid JSON" }, cause: err });
  return new UkeyError("INTERNAL", { cause: err });
}

/**
 * Fastify error handler: an RFC 9457 problem document with our catalogue
 * fields. `logsItself`, when it returns true for a 5xx, has logged the
 * failure its own way (storage failures: a count per interval, not a
 * stack per request).
 */
export function problemHandler(log: FastifyBaseLogger, logsItself?: (u: UkeyError, req: FastifyRequest) => boolean) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const u = toUkeyError(err);
    const status = statusOfKind[u.kind];
    if (status < 500) log.info({ code: u.code, url: req.url }, "request refused");
    else if (!logsItself?.(u, req)) log.error({ err, url: req.url, code: u.code }, "request failed");
    const p = u.toProblem();
    void reply.status(status).type("application/problem+json").send({
      type: `urn:ukey:error:${p.code}`, title: p.message.en, status, ...p,
    });
  };
}
