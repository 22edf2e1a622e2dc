import Fastify, { LogController, type FastifyInstance, type FastifyReply } from "fastify";
import { derToPem } from "@ukey/ca";
import { UkeyError } from "@ukey/policy";
import { registerAdminRoutes } from "./admin/admin-routes.js";
import { registerAdminStatsRoutes } from "./admin/admin-stats-routes.js";
import { registerHealthRoutes } from "./health-routes.js";
import { problemHandler } from "./http-errors.js";
import { registerOpenApi } from "./openapi.js";
import { registerOrderRoutes } from "./renewal/order-routes.js";
import { registerEstRoutes } from "./est/est-routes.js";
import type { ServerContext } from "./server-context.js";
import { registerHolderRoutes } from "./holder-session/holder-routes.js";
import { createMetrics, registerMetricsRoute } from "./metrics.js";
import { registerReminderAdminRoutes } from "./reminders/reminder-admin-routes.js";
import { StorageMonitor } from "./storage-monitor.js";
import { registerWebRoutes } from "./web-routes.js";

/**
 * The HTTP application: standard PKI endpoints (CA certificates, CRLs,
 * OCSP) and health. One service call per handler; policy never sits here.
 */
export async function buildApp(ctx: ServerContext, opts: { logger?: boolean; https?: { key: Buffer; cert: Buffer }; logStream?: { write(line: string): void } } = {}): Promise<FastifyInstance> {
  const app = Fastify({
    // Client certificates are asked for but not required: EST re-enrolment uses them, browsers do not.
    ...(opts.https ? { https: { ...opts.https, requestCert: true, rejectUnauthorized: false } } : {}),
    logger: opts.logStream ? { level: "info", stream: opts.logStream } : opts.logger ?? false,
    bodyLimit: ctx.config.limits.bodyBytes,
    // Unknown fields are an error, not something to drop silently.
    ajv: { customOptions: { removeAdditional: false } },
    // One line per OCSP request would drown the log; errors are logged by the problem handler.
    logController: new LogController({ disableRequestLogging: true }),
  });
  const storage = new StorageMonitor({ db: ctx.store.db, log: app.log, failureLogSeconds: ctx.config.storage.failureLogSeconds });
  app.addHook("onClose", async () => { storage.close(); });
  app.setErrorHandler(problemHandler(app.log, (u, req) => storage.noteRefusal(u, req.url)));
  app.setNotFoundHandler((req, reply) => {
    problemHandler(app.log)(new UkeyError("ROUTE_NOT_FOUND"), req, reply);
  });
  for (const type of ["application/ocsp-request", "application/pkcs10", "application/octet-stream"]) {
    app.addContentTypeParser(type, { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  }

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

  // RFC 6960 appendix A: POST with the DER body, or GET with base64 in the path.
  app.post("/ocsp", async (req, reply) => {
    if (!Buffer.isBuffer(req.body)) throw new UkeyError("UNSUPPORTED_MEDIA_TYPE", { params: { type: String(req.headers["content-type"] ?? "none") } });
    return sendOcsp(reply, await ctx.revocation.ocsp(req.body));
  });
  app.get<{ Params: { "*": string } }>("/ocsp/*", async (req, reply) => {
    const b64 = decodeURIComponent(req.params["*"]);
    const der = /^[A-Za-z0-9+/=_-]+$/.test(b64) ? Buffer.from(b64, "base64") : Buffer.alloc(0);
    return sendOcsp(reply, await ctx.revocation.ocsp(der));
  });

  registerOrderRoutes(app, ctx.orders, ctx.downloads);

  // The institution's key vendor table, for the agent and the portal to name a key and guide its holder.
  app.get("/api/v1/key-vendors", async () => ({ keyVendors: ctx.keyVendors }));

  // EST (RFC 7030) only over TLS: re-enrolment authenticates with the client certificate, enrolment with Basic credentials.
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
  app.get<{ Params: { certId: string } }>("/.well-known/est/renewal-info/:certId", async (req, reply) =>
    sendRenewalInfo(reply, await ctx.renewalInfo.get(req.params.certId, "est")));

  await registerAdminRoutes(app, ctx);
  registerAdminStatsRoutes(app, ctx);
  // The holder's sign-in, bell and certificate list; the operators' view of reminders; Prometheus metrics.
  const holder = registerHolderRoutes(app, ctx);
  registerReminderAdminRoutes(app, ctx, holder.bell);
  registerMetricsRoute(app, createMetrics({ store: ctx.store, clock: ctx.clock, reminders: ctx.reminders }));
  // Reminders and the sweep of orphaned issuance intents run in a server that listens: never in a CLI
  // command (which sweeps once when it opens the data directory), nor in a test that only injects requests.
  app.addHook("onListen", async () => { ctx.reminders.start(); ctx.intentSweeper.start(app.log); });
  // The portal at / and the operator console at /console/, with strict security headers.
  await registerWebRoutes(app);

  return app;
}

function sendRenewalInfo(reply: FastifyReply, r: { info: unknown; retryAfterSeconds: number }) {
  return reply.header("retry-after", String(r.retryAfterSeconds)).header("cache-control", "no-cache").send(r.info);
}

function sendOcsp(reply: FastifyReply, r: { der: Buffer; error?: UkeyError }) {
  if (r.error) reply.header("x-ukey-error", r.error.code);
  return reply.type("application/ocsp-response").header("cache-control", "no-cache").send(r.der);
}
