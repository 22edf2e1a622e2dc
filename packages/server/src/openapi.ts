import swagger from "@fastify/swagger";
import type { FastifyInstance } from "fastify";

/** Where the OpenAPI document is served. */
export const OPENAPI_PATH = "/api/v1/openapi.json";

/**
 * Registers @fastify/swagger so that GET /api/v1/openapi.json serves an
 * OpenAPI 3.0 document built from the schemas of every route registered
 * after this call (the plugin learns routes through the onRoute hook, so
 * it must come first). Routes opt out with `schema.hide`.
 */
export async function registerOpenApi(app: FastifyInstance, info: { version?: string } = {}): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: {
        title: "ukey-renew",
        description: "Renewal API for the agent and the portal, admin API for operators, and the standard PKI endpoints (CA certificates, CRLs, OCSP). Errors are RFC 9457 problem documents with a catalogue code, zh-CN and en messages and a remedy (docs/errors.md).",
        version: info.version ?? "1",
      },
      tags: [
        { name: "renewal", description: "Renewal orders for the agent and the portal: start, prove possession of the key, then every step with the order credential" },
        { name: "admin", description: "Operator API: sign in first, then send Authorization: Bearer <token>" },
        { name: "pki", description: "CA certificates, CRLs and OCSP" },
        { name: "holder", description: "The holder's own pages: sign in with the customer number and a one-time code, then Authorization: Bearer <token>; the bell, certificates, reminder channels" },
        { name: "metrics", description: "Prometheus metrics" },
        { name: "downloads", description: "The agent's installers and the institution's signed agent configuration and manifest" },
        { name: "health", description: "Liveness (/healthz: the process answers) and readiness (/readyz: the database answers and accepts writes)" },
      ],
      components: {
        securitySchemes: {
          orderCredential: { type: "http", scheme: "bearer", description: "Order credential from POST /api/v1/orders/{id}/possession (proof of possession of the certificate's key); replaced by each new proof, valid 2 hours and 10 minutes past the order's end" },
          operatorSession: { type: "http", scheme: "bearer", description: "Token from POST /api/v1/admin/sign-in (30 minutes)" },
          holderSession: { type: "http", scheme: "bearer", description: "Token from POST /api/v1/holder/sign-in/verify (30 minutes from its last use; each answer carries a renewed one in X-Ukey-Session-Token)" },
        },
      },
    },
    transformObject: (doc) => ("openapiObject" in doc ? namedWildcards(doc.openapiObject) : doc.swaggerObject),
  });
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async (_req, reply) => reply.header("cache-control", "no-cache").send(app.swagger()));
}

/**
 * Fastify's wildcard routes (`/ocsp/*`) come out as `/ocsp/{*}`, a template
 * whose parameter no operation declares, which OpenAPI forbids: name it
 * `{rest}` and declare it.
 */
function namedWildcards<D extends { paths?: object }>(doc: D): D {
  const paths: Record<string, unknown> = {};
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    if (!path.includes("{*}")) { paths[path] = item; continue; }
    const ops = Object.fromEntries(Object.entries(item as Record<string, { parameters?: unknown[] }>).map(([method, op]) => [method, {
      ...op,
      parameters: [...(op.parameters ?? []).filter((p) => (p as { name?: string }).name !== "*"),
        { name: "rest", in: "path", required: true, schema: { type: "string" }, description: "the rest of the path" }],
    }]));
    paths[path.replace("{*}", "{rest}")] = ops;
  }
  return { ...doc, paths };
}
