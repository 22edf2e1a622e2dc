import Fastify, { LogController, type FastifyInstance, type FastifyReply } from "fastify";
import { derToPem } from "@ukey/ca";
import { UkeyError } from "@ukey/policy";
import { registerAdminRoutes } from "./admin/admin-routes.js";
import { registerAdminStatsRoutes } from "./admin/admin-stats-routes.js";
import { decorateListener } from "./client-certificate.js";
import { registerHealthRoutes } from "./health-routes.js";
import { edgeFastifyOptions, nodeServerOptions, registerHttpEdge, securityHeaders } from "./http-edge.js";
import { problemHandler } from "./http-errors.js";
import { registerOpenApi } from "./openapi.js";
import { registerRateLimits } from "./rate-limits.js";
import { registerOrderRoutes } from "./renewal/order-routes.js";
import { registerEstRoutes } from "./est/est-routes.js";
import { redactUrl, requestLogSerializer } from "./request-log.js";
import type { ListenerKind } from "./server-config.js";
import type { ServerContext } from "./server-context.js";
import { registerRedownloadRoutes } from "./redownload/redownload-routes.js";
import { registerHolderRoutes } from "./holder-session/holder-routes.js";
import { createMetrics, readMetricsToken, registerMetricsRoute } from "./metrics.js";
import { registerReminderAdminRoutes } from "./reminders/reminder-admin-routes.js";
import { StorageMonitor } from "./storage-monitor.js";
import { schemaGuardFor } from "./schema-guard.js";
import { LATEST_SCHEMA_VERSION } from "@ukey/store";
import { registerWebRoutes } from "./web-routes.js";
import { distributionDir } from "./distribution/distribution-publisher.js";
import { registerDistributionRoutes } from "./distribution/distribution-routes.js";
import { watchRootCrl } from "./offline-root/root-crl-watch.js";

/** How buildApp serves: which listener, and where its log goes. */
export interface AppOptions {
  /** Log to standard output at info. */
  logger?: boolean;
  /** Log here at info instead (tests). */
  logStream?: { write(line: string): void };
  /** HTTPS with this key and certificate; without it, plain HTTP. */
  https?: { key: Buffer; cert: Buffer };
  /** With `https`: ask every client for a certificate, the client-certificate listener. Default false: never ask. */
  clientCertificates?: boolean;
  /** The client-certificate listener's port, named in refusals on the others; default `listen.clientCertPort`. */
  clientCertPort?: number | null;
}

/**
 * The HTTP application of one listener: standard PKI endpoints (CA
 * certificates, CRLs, OCSP), health, the renewal, holder and admin APIs,
 * EST on the TLS listeners, metrics where configured, and the portal. One
 * service call per handler; policy never sits here. The HTTP edge
 * (http-edge.ts) comes first: timeouts, connection cap, security headers,
 * strict JSON, problem documents for every refusal.
 * @throws UkeyError FILE_UNREADABLE, CONFIG_INVALID for the metrics token file.
 */
export async function buildApp(ctx: ServerContext, opts: AppOptions = {}): Promise<FastifyInstance> {
  const kind: ListenerKind = !opts.https ? "http" : opts.clientCertificates ? "clientCert" : "tls";
  const edge = ctx.config.http;
  const headers = securityHeaders(edge, kind);
  const serializers = { req: requestLogSerializer };
  // Read before anything is built: a bad token file stops the start.
  const metricsToken = readMetricsToken(ctx.config.metrics.bearerTokenFile, ctx.layout.dir);
  const app = Fastify({
    // Only the client-certificate listener asks for a certificate (asked, not required): TLS 1.3 cannot ask later,
    // and asking on the TLS listener would show every browser holding a UKey certificate a picker.
    ...(opts.https
      ? { https: { ...nodeServerOptions(edge), ...opts.https, ...(kind === "clientCert" ? { requestCert: true, rejectUnauthorized: false } : {}) } }
      : { http: nodeServerOptions(edge) }),
    ...edgeFastifyOptions(edge, headers),
    logger: opts.logStream ? { level: "info", stream: opts.logStream, serializers } : opts.logger ? { level: "info", serializers } : false,
    bodyLimit: ctx.config.limits.bodyBytes,
    // Unknown fields are an error, not something to drop silently.
    ajv: { customOptions: { removeAdditional: false } },
    // One line per OCSP request would drown the log; errors are logged by the problem handler.
    logController: new LogController({ disableRequestLogging: true }),
    // Behind a reverse proxy the client is the forwarded address, for the limits and the audit (docs/configuration.md).
    trustProxy: trustProxyOption(ctx.config.trustProxy),
  });
  decorateListener(app, { kind, clientCertPort: opts.clientCertPort === undefined ? ctx.config.listen.clientCertPort : opts.clientCertPort });
  registerHttpEdge(app, edge, headers);
  // An older instance left running after a newer one migrated the database refuses every request but /healthz (schema-guard.ts).
  const schema = schemaGuardFor(ctx, (found) => app.log.error({ code: "DATABASE_SCHEMA_NEWER", found, supported: LATEST_SCHEMA_VERSION },
    "the database was migrated by a newer ukey-renew: this instance refuses requests and has stopped its background jobs; replace it with the new release"));
  app.addHook("onRequest", (req, _reply, done) => {
    if (schema.current() || req.url.split("?")[0] === "/healthz") return done();
    schema.check().then(() => done(), done);
  });
  const storage = new StorageMonitor({ db: ctx.store.db, log: app.log, failureLogSeconds: ctx.config.storage.failureLogSeconds });
  app.addHook("onClose", async () => { storage.close(); });
  app.setErrorHandler(problemHandler(app.log, (u, req) => storage.noteRefusal(u, redactUrl(req.url))));
  app.setNotFoundHandler((req, reply) => {
    problemHandler(app.log)(new UkeyError("ROUTE_NOT_FOUND"), req, reply);
  });
  for (const type of ["application/ocsp-request", "application/pkcs10", "application/octet-stream"]) {
    app.addContentTypeParser(type, { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  }

  // Before any route: every route gets its per-client limit (rate-limits.ts).
  await registerRateLimits(app, ctx.config.rateLimits, ctx.refusals);
  // First: the OpenAPI document is built from the routes registered after it.
  await registerOpenApi(app);

  registerHealthRoutes(app, storage);

  for (const which of ["root", "issuing"] as const) {
    const cert = () => (which === "root" ? ctx.ca.root.der : ctx.ca.issuing.der);
    app.get(`/ca/${which}.cer`, async (_req, reply) => reply.type("application/pkix-cert").send(cert()));
    app.get(`/ca/${which}.pem`, async (_req, reply) => reply.type("application/x-pem-file").send(derToPem(cert(), "CERTIFICATE")));
    app.get(`/crl/${which}.crl`, async (_req, reply) => {
      const der = await ctx.revocation.crl(which);
      return reply.type("application/pkix-crl").header("cache-control", "max-age=300").send(der);
    });
    app.get(`/crl/${which}.pem`, async (_req, reply) => {
      const der = await ctx.revocation.crl(which);
      return reply.type("application/x-pem-file").send(derToPem(der, "X509 CRL"));
    });
  }

  // Delta CRLs (ca.deltaCrl): /crl/issuing-delta.crl and .pem; 404 while they are off.
  app.get("/crl/issuing-delta.crl", async (_req, reply) => {
    return reply.type("application/pkix-crl").header("cache-control", "max-age=300").send(await ctx.revocation.deltaCrl());
  });
  app.get("/crl/issuing-delta.pem", async (_req, reply) => {
    return reply.type("application/x-pem-file").send(derToPem(await ctx.revocation.deltaCrl(), "X509 CRL"));
  });

  // Shards of the partitioned CRL (ca.crlShards): /crl/issuing/3.crl (DER) and /crl/issuing/3.pem; their deltas 3-delta.crl.
  app.get<{ Params: { file: string } }>("/crl/issuing/:file", async (req, reply) => {
    const m = /^(\d{1,3})(-delta)?\.(crl|pem)$/.exec(req.params.file);
    if (!m) throw new UkeyError("ROUTE_NOT_FOUND");
    const der = m[2] ? await ctx.revocation.deltaCrl(Number(m[1])) : await ctx.revocation.crlShard(Number(m[1]));
    if (m[3] === "pem") return reply.type("application/x-pem-file").send(derToPem(der, "X509 CRL"));
    return reply.type("application/pkix-crl").header("cache-control", "max-age=300").send(der);
  });

  // RFC 6960 appendix A: POST with the DER body, or GET with base64 in the path.
  app.post("/ocsp", async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) throw new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: String(req.headers["content-type"] ?? "none") } });
    return sendOcsp(reply, await ctx.revocation.ocsp(req.body));
  });
  const ocspMaxAgeMs = ctx.config.ca.ocspMaxAgeSeconds * 1000;
  app.get<{ Params: { "*": string } }>("/ocsp/*", async (req, reply) => {
    // The router has decoded the path once, as RFC 6960 appendix A asks; a second decode would choke on '%'.
    const b64 = req.params["*"];
    const der = /^[A-Za-z0-9+/=_-]+$/.test(b64) ? Buffer.from(b64, "base64") : Buffer.alloc(0);
    const answer = await ctx.revocation.ocsp(der);
    const c = answer.cache;
    if (!c) return sendOcsp(reply, answer);
    // RFC 5019 6.2: what HTTP caches and CDNs need to serve the pre-signed answer, never past its nextUpdate.
    const now = ctx.clock.now().getTime();
    const maxAge = Math.max(0, Math.floor(Math.min(ocspMaxAgeMs, c.nextUpdate - now) / 1000));
    reply.header("cache-control", `max-age=${maxAge}, public, no-transform, must-revalidate`)
      .header("last-modified", new Date(c.thisUpdate).toUTCString())
      .header("expires", new Date(now + maxAge * 1000).toUTCString())
      .header("etag", c.etag);
    if (req.headers["if-none-match"] === c.etag) return reply.code(304).send();
    return reply.type("application/ocsp-response").send(answer.der);
  });

  registerOrderRoutes(app, ctx.orders, ctx.downloads);
  // The agent's installers and the signed configuration that tells an installed agent its server and portal.
  registerDistributionRoutes(app, distributionDir(ctx));

  // The institution's key vendor table, for the agent and the portal to name a key and guide its holder.
  app.get("/api/v1/key-vendors", async () => ({ keyVendors: ctx.keyVendors }));

  // EST (RFC 7030) only over TLS: enrolment authenticates with Basic credentials, re-enrolment with the client
  // certificate, which only the client-certificate listener asks for.
  if (opts.https) registerEstRoutes(app, ctx);

  // Renewal advice (RFC 9773 style) for the portal, the agent and EST clients.
  const channels = ["web", "mobile", "cli", "est"] as const;
  app.get<{ Params: { certId: string }; Querystring: { channel?: string } }>("/api/v1/renewal-info/:certId", async (req, reply) => {
    const channel = req.query.channel ?? "web";
    if (!(channels as readonly string[]).includes(channel)) {
      throw new UkeyError("REQUEST_INVALID", { params: { reason: `channel must be one of ${channels.join(", ")}` } });
    }
    return sendRenewalInfo(reply, await ctx.renewalInfo.get(req.params.certId, channel as (typeof channels)[number]));
  });
  // Seed 004's login rule for the institution's login system: public like OCSP, it says no more than OCSP and the certificate do.
  app.get<{ Params: { certId: string } }>("/api/v1/login-check/:certId", async (req, reply) =>
    reply.header("cache-control", "no-store").send(await ctx.renewalInfo.loginCheck(req.params.certId)));
  app.get<{ Params: { certId: string } }>("/.well-known/est/renewal-info/:certId", async (req, reply) =>
    sendRenewalInfo(reply, await ctx.renewalInfo.get(req.params.certId, "est")));

  await registerAdminRoutes(app, ctx);
  registerAdminStatsRoutes(app, ctx);
  // The holder's sign-in, bell and certificate list; the operators' view of reminders; Prometheus metrics.
  const holder = registerHolderRoutes(app, ctx);
  // Self-service re-download after a key was initialised: ID number and an SMS code instead of an operator's two codes.
  registerRedownloadRoutes(app, ctx, holder.signIn);
  registerReminderAdminRoutes(app, ctx, holder.bell);
  const metricsHere = ctx.config.metrics.listeners.includes(kind);
  registerMetricsRoute(app, metricsHere ? createMetrics({ store: ctx.store, clock: ctx.clock, reminders: ctx.reminders, rootCrl: () => ctx.ca.installedRootCrl(), signInHashes: ctx.signInHashes }) : null, metricsToken);
  // Reminders and the sweep of orphaned issuance intents run in a server that listens: never in a CLI
  // command (which sweeps once when it opens the data directory), nor in a test that only injects requests.
  app.addHook("onListen", async () => { ctx.reminders.start(); ctx.intentSweeper.start(app.log); ctx.ocsp.start(); });
  // An offline root's CRL runs out unless a ceremony signs the next one: warned at start and daily, a month ahead.
  watchRootCrl(app, ctx);
  // The portal at / and the operator console at /console/, with strict security headers.
  await registerWebRoutes(app);

  return app;
}

/** Fastify's trustProxy for ours: a hop count trusts that many addresses nearest the server, as proxy-addr does. */
function trustProxyOption(t: ServerContext["config"]["trustProxy"]): false | string[] | ((address: string, hop: number) => boolean) {
  if (t === false) return false;
  if (typeof t === "number") return (_address, hop) => hop < t;
  return [...t];
}

function sendRenewalInfo(reply: FastifyReply, r: { info: unknown; retryAfterSeconds: number }) {
  return reply.header("retry-after", String(r.retryAfterSeconds)).header("cache-control", "no-cache").send(r.info);
}

function sendOcsp(reply: FastifyReply, r: { der: Buffer; error?: UkeyError }) {
  if (r.error) reply.header("x-ukey-error", r.error.code);
  return reply.type("application/ocsp-response").header("cache-control", "no-cache").send(r.der);
}
