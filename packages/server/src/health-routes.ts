import type { FastifyInstance } from "fastify";
import { problemSchema } from "./admin/admin-schemas.js";
import type { StorageMonitor } from "./storage-monitor.js";

/**
 * Liveness and readiness, for a load balancer or an orchestrator:
 * - GET /healthz: the process answers (liveness). It reads no storage, so
 *   a full disk or an unreachable database never gets the process
 *   restarted, which would not help.
 * - GET /readyz: the process can serve (readiness): 200 when the database
 *   answers and accepts writes; 503 with the catalogue code of the failure
 *   (DATABASE_UNAVAILABLE, DATABASE_READ_ONLY, DATA_DIR_CORRUPT, STORAGE_FULL) otherwise. It
 *   turns 200 again by itself once the cause is gone. An instance older
 *   than the database's schema answers DATABASE_SCHEMA_NEWER here and on
 *   every route (schema-guard.ts) until it is replaced.
 */
export function registerHealthRoutes(app: FastifyInstance, storage: StorageMonitor): void {
  app.get("/healthz", {
    schema: {
      tags: ["health"],
      summary: "Liveness: the process answers (reads no storage)",
      response: { 200: { type: "object", properties: { status: { type: "string", enum: ["ok"] } } } },
    },
  }, async () => ({ status: "ok" as const }));

  app.get("/readyz", {
    schema: {
      tags: ["health"],
      summary: "Readiness: the database answers and accepts writes",
      description: "503 with a problem document naming the failure: DATABASE_UNAVAILABLE or DATA_DIR_CORRUPT (the database does not answer), "
        + "DATABASE_READ_ONLY (PostgreSQL: every listed server that answers is a standby, e.g. while a failover promotes one), "
        + "STORAGE_FULL (the last write failed for lack of space and a probe write still fails), DATABASE_SCHEMA_NEWER (a newer release migrated the database: "
        + "this instance must be replaced, and every request but /healthz gets the same answer). Turns 200 again by itself once the cause is gone (but the last).",
      response: {
        200: { type: "object", properties: { status: { type: "string", enum: ["ready"] }, engine: { type: "string", enum: ["sqlite", "postgres"] } } },
        503: problemSchema,
      },
    },
  }, async (_req, reply) => {
    const ready = await storage.readiness();
    return reply.header("cache-control", "no-store").send(ready);
  });
}
