import type { FastifyRequest } from "fastify";

/** What stands in the log for a secret taken out of a URL. */
export const REDACTED = "[redacted]";

/**
 * URL paths whose next segment is a bearer secret. The step-up link
 * (RenewalOrderService.startStepUp) is `/step-up/{order}.{token}`: its
 * portal page and its API. The order part stays, so that the log still
 * tells which order a refusal was about; a segment without a dot is
 * secret whole. Other URLs carry no secret: OCSP's GET form holds a
 * request, renewal-info a certificate's ID, order routes an order number
 * that grants nothing alone. Secrets sent in headers or bodies are never
 * logged.
 */
const secretSegments: readonly RegExp[] = [
  /^((?:\/api\/v1)?\/step-up\/)([^/?#]*)/,
];

/**
 * `url` as the log may keep it: the secret segments above replaced by
 * [redacted]. Idempotent.
 */
export function redactUrl(url: string): string {
  for (const re of secretSegments) {
    const m = re.exec(url);
    if (!m) continue;
    const segment = m[2]!;
    if (segment === "" || segment.endsWith(REDACTED)) return url;
    const dot = segment.indexOf(".");
    const kept = dot > 0 ? segment.slice(0, dot + 1) : "";
    return `${m[1]}${kept}${REDACTED}${url.slice(m[0].length)}`;
  }
  return url;
}

/** Fastify's `req` log serializer, with the URL redacted. */
export function requestLogSerializer(req: FastifyRequest): Record<string, unknown> {
  return { method: req.method, url: redactUrl(req.url), host: req.host, remoteAddress: req.ip };
}
