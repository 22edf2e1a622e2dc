import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { UkeyError } from "@ukey/policy";
import { peerCertificate } from "../client-certificate.js";
import { enrolmentServiceFor } from "../enrolment-service.js";
import { problemDocument, problemHandler, toUkeyError } from "../http-errors.js";
import { redactUrl } from "../request-log.js";
import { unstorableTextAt } from "../request-text.js";
import type { ServerContext } from "../server-context.js";
import { decodeEstBase64, encodeEstBase64 } from "./est-encoding.js";
import { EstService, profileKeyAlgorithms, type EstCredentials } from "./est-service.js";

/** The realm simpleenroll's Basic challenge names. */
export const estRealm = "ukey-renew EST";

/** Codes that mean "these credentials do not work": RFC 7030 section 3.2.3 and RFC 9110 want 401 with a challenge. */
const credentialCodes = new Set([
  "EST_CREDENTIALS_REQUIRED", "CODE_INVALID", "DOWNLOAD_CODE_INVALID", "CODE_EXPIRED", "CODE_ALREADY_USED", "CODE_REVOKED", "CODE_ATTEMPTS_EXCEEDED",
]);

/** A PKCS#10 in base64 is a few kilobytes; 32 KiB leaves room for RSA 4096 with line breaks and refuses the rest early. */
const estBodyLimit = 32 * 1024;

/**
 * EST (RFC 7030, base64 per RFC 8951) under /.well-known/est/. Register it
 * on the HTTPS apps only: Basic credentials must never cross plain HTTP.
 * simplereenroll authenticates with the TLS client certificate, so it works
 * on the client-certificate listener; on the TLS listener it answers
 * CLIENT_CERT_PORT_REQUIRED (403) naming that port.
 * One service call per route; EstService holds the rules.
 */
export function registerEstRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const est = new EstService({
    store: ctx.store, issuance: ctx.issuance, orders: ctx.orders, enrolments: enrolmentServiceFor(ctx), clock: ctx.clock,
    institution: ctx.config.institution,
    caCertificates: [ctx.ca.issuing.der, ctx.ca.root.der],
    // Read again when a configuration reload replaced ctx.config.
    keyAlgorithms: () => profileKeyAlgorithms(ctx.config.profiles),
  });
  const problems = problemHandler(app.log);

  void app.register(async (scope) => {
    scope.addHook("onRequest", (_req, reply, done) => {
      canonicalHeaderCase(reply);
      done();
    });
    scope.setErrorHandler((err, req, reply) => {
      const u = toUkeyError(err, req);
      if (!credentialCodes.has(u.code)) return problems(u, req, reply);
      // Same problem document as everywhere, but as a 401 with a Basic challenge, whatever the code's kind.
      req.log.info({ code: u.code, url: redactUrl(req.url) }, "EST credentials refused");
      return reply.status(401).header("www-authenticate", `Basic realm="${estRealm}"`).type("application/problem+json")
        .send(problemDocument(u, 401));
    });

    scope.get("/cacerts", { schema: { tags: ["pki"], summary: "EST (RFC 7030): the CA certificates as a base64 certs-only PKCS#7" } }, async (_req, reply) => sendBase64(reply, "application/pkcs7-mime", est.caCertificates()));

    scope.get("/csrattrs", { schema: { tags: ["pki"], summary: "EST: the CSR attributes (key and signature algorithms), base64 DER" } }, async (_req, reply) => sendBase64(reply, "application/csrattrs", est.csrAttributes()));

    scope.post("/simpleenroll", {
      bodyLimit: estBodyLimit,
      schema: { tags: ["pki"], summary: "EST: a first certificate; HTTP Basic with the reference number and authorization code; body a base64 PKCS#10" },
    }, async (req, reply) =>
      sendBase64(reply, "application/pkcs7-mime; smime-type=certs-only", await est.enroll(basicCredentials(req), csrBody(req))));

    scope.post("/simplereenroll", {
      bodyLimit: estBodyLimit,
      schema: { tags: ["pki"], summary: "EST: renew the TLS client certificate; body a base64 PKCS#10 with its subject" },
    }, async (req, reply) =>
      sendBase64(reply, "application/pkcs7-mime; smime-type=certs-only", await est.reenroll(peerCertificate(req), csrBody(req))));
  }, { prefix: "/.well-known/est" });
}

function sendBase64(reply: FastifyReply, type: string, der: Buffer) {
  // RFC 8951 made the header unnecessary; older RFC 7030 clients still look for it.
  return reply.type(type).header("content-transfer-encoding", "base64").header("cache-control", "no-store").send(encodeEstBase64(der));
}

/** Header names whose canonical spelling is not each word capitalised. */
const canonicalNames: Record<string, string> = { "www-authenticate": "WWW-Authenticate", etag: "ETag", "x-ratelimit-limit": "X-RateLimit-Limit",
  "x-ratelimit-remaining": "X-RateLimit-Remaining", "x-ratelimit-reset": "X-RateLimit-Reset" };

/** "content-type" as "Content-Type". */
export function canonicalHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return canonicalNames[lower] ?? lower.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());
}

/**
 * Sends this reply's header names in their canonical case ("Content-Type"). HTTP names are
 * case-insensitive and Fastify writes them in lower case, but Cisco libest matches them
 * case-sensitively; on the EST routes the canonical case costs nothing. Fastify hands its headers to
 * writeHead as one object, which Node writes with the names as given.
 */
function canonicalHeaderCase(reply: FastifyReply): void {
  const raw = reply.raw;
  const writeHead = raw.writeHead.bind(raw) as (status: number, ...rest: unknown[]) => typeof raw;
  raw.writeHead = ((status: number, ...rest: unknown[]) => {
    const args = rest.map((a) => {
      if (!a || typeof a !== "object" || Array.isArray(a)) return a;
      return Object.fromEntries(Object.entries(a as Record<string, unknown>).map(([k, v]) => [canonicalHeaderName(k), v]));
    });
    return writeHead(status, ...args);
  }) as typeof raw.writeHead;
}

/** The CSR from an application/pkcs10 body: base64 of DER (RFC 8951), or PEM, which some clients send. */
function csrBody(req: FastifyRequest): Buffer {
  if (!Buffer.isBuffer(req.body)) throw new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: String(req.headers["content-type"] ?? "none") } });
  if (req.body.subarray(0, 11).toString("latin1") === "-----BEGIN ") return req.body;
  return decodeEstBase64(req.body);
}

/** Reference number and authorization code from `Authorization: Basic`, or undefined when there are none. */
function basicCredentials(req: FastifyRequest): EstCredentials | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? "");
  if (!m) return undefined;
  const text = Buffer.from(m[1]!, "base64").toString("utf8");
  // Credentials are looked up and audited: text no store can keep stops here.
  if (unstorableTextAt(text) !== undefined) throw new UkeyError("REQUEST_TEXT_MALFORMED", { detail: "the Basic credentials" });
  const colon = text.indexOf(":");
  if (colon < 0) return undefined;
  return { referenceNumber: text.slice(0, colon), authorizationCode: text.slice(colon + 1) };
}
