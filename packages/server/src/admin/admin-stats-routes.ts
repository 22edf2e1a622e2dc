import type { FastifyInstance, FastifyRequest } from "fastify";
import { DAY_MS, UkeyError, policyDay, renderPolicyTimelineSvg, startOfPolicyDay } from "@ukey/policy";
import type { OperatorRole } from "@ukey/store";
import type { ServerContext } from "../server-context.js";
import { ADMIN_PREFIX } from "./admin-routes.js";
import { problemSchema } from "./admin-schemas.js";
import { operatorRoles, operatorServiceFor, roleAllows } from "./operator-service.js";

const problems = { "4XX": problemSchema, "5XX": problemSchema } as const;
const WEEK_MS = 7 * DAY_MS;
/** How far back an expired, never renewed certificate still counts as overdue. */
const OVERDUE_SINCE_DAYS = 365;

/**
 * The aggregates of the operator console, beside the admin API (same
 * bearer tokens, same audit of reads and refusals): expiries per week for
 * the next 52 weeks plus the overdue ones, renewal orders by state, and
 * the profiles with their renewal windows drawn as timelines. Role:
 * auditor. One store call per handler.
 * @throws UkeyError FILE_UNREADABLE when the RA key files cannot be read or made.
 */
export function registerAdminStatsRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const operators = operatorServiceFor(ctx);
  const now = () => ctx.clock.now().getTime();

  const guard = (required: OperatorRole) => async (req: FastifyRequest): Promise<string> => {
    const m = /^Bearer ([A-Za-z0-9._-]{1,2048})$/.exec(req.headers.authorization ?? "");
    const refuse = (actor: string, reason: string, data: Record<string, unknown>) => ctx.refusals.record({
      actor, action: "admin.refused", subjectType: "route", subjectId: `${req.method} ${req.routeOptions.url ?? "?"}`, data: { reason, ip: req.ip, ...data },
    });
    let p;
    try {
      if (!m) throw new UkeyError("SESSION_INVALID", { detail: "no Authorization: Bearer token" });
      p = await operators.authenticate(m[1]!);
    } catch (e) {
      if (e instanceof UkeyError) refuse("unknown", "session-invalid", { detail: e.detail ?? "" });
      throw e;
    }
    if (!roleAllows(p.role, required)) {
      refuse(p.actor, "role", { role: p.role, required });
      throw new UkeyError("ROLE_FORBIDDEN", { params: { role: p.role, required: operatorRoles.filter((r) => roleAllows(r, required)).join(", ") } });
    }
    return p.actor;
  };
  const auditor = guard("auditor");
  const viewed = (actor: string, subjectId: string, data: Record<string, unknown> = {}) =>
    ctx.store.audit.append({ at: now(), actor, action: "admin.viewed", subjectType: "stats", subjectId, data });

  app.get<{ Querystring: { weeks?: number } }>(`${ADMIN_PREFIX}/stats/expiries`, {
    schema: {
      tags: ["admin"], summary: "Live certificates expiring per week from today (CST), and those expired in the last year and never renewed",
      description: "Role: auditor or higher.", security: [{ operatorSession: [] }],
      querystring: { type: "object", additionalProperties: false, properties: { weeks: { type: "integer", minimum: 1, maximum: 104, default: 52 } } },
      response: {
        200: {
          type: "object",
          properties: {
            from: { type: "integer", description: "start of today in CST, epoch milliseconds" }, weekMs: { type: "integer" },
            overdue: { type: "integer" }, overdueSinceDays: { type: "integer" }, total: { type: "integer" },
            weeks: { type: "array", items: { type: "object", properties: { start: { type: "integer" }, count: { type: "integer" } } } },
          },
        },
        ...problems,
      },
    },
  }, async (req) => {
    const actor = await auditor(req);
    const weeks = req.query.weeks ?? 52;
    const from = startOfPolicyDay(policyDay(now())).getTime();
    const h = await ctx.store.certificates.expiryHistogram({ from, bucketMs: WEEK_MS, buckets: weeks, overdueSinceMs: OVERDUE_SINCE_DAYS * DAY_MS });
    await viewed(actor, "expiries", { weeks });
    return {
      from, weekMs: WEEK_MS, overdue: h.overdue, overdueSinceDays: OVERDUE_SINCE_DAYS, total: h.overdue + h.counts.reduce((a, b) => a + b, 0),
      weeks: h.counts.map((count, i) => ({ start: from + i * WEEK_MS, count })),
    };
  });

  app.get(`${ADMIN_PREFIX}/stats/orders`, {
    schema: {
      tags: ["admin"], summary: "Renewal orders by state (the renewal funnel)", description: "Role: auditor or higher.", security: [{ operatorSession: [] }],
      response: { 200: { type: "object", properties: { byState: { type: "object", additionalProperties: { type: "integer" } } } }, ...problems },
    },
  }, async (req) => {
    const actor = await auditor(req);
    const byState = await ctx.store.orders.countByState();
    await viewed(actor, "orders");
    return { byState };
  });

  app.get(`${ADMIN_PREFIX}/profiles`, {
    schema: {
      tags: ["admin"], summary: "Certificate profiles with their renewal windows, each drawn as an SVG timeline",
      description: "Role: auditor or higher.", security: [{ operatorSession: [] }],
      response: {
        200: {
          type: "object",
          properties: {
            profiles: {
              type: "array",
              items: {
                type: "object",
                properties: {
                  id: { type: "string" }, name: { type: "object", properties: { "zh-CN": { type: "string" }, en: { type: "string" } } },
                  certificateKind: { type: "string" }, validityAnchor: { type: "string" },
                  validity: { type: "object", additionalProperties: true }, verification: { type: "object", additionalProperties: true },
                  renewal: { type: "object", additionalProperties: true }, updatedAt: { type: "integer" },
                  timelineSvg: { type: "string", description: "SVG text; show it as an image (data: URL), never as markup" },
                },
              },
            },
          },
        },
        ...problems,
      },
    },
  }, async (req) => {
    const actor = await auditor(req);
    const records = await ctx.store.profiles.list();
    await viewed(actor, "profiles");
    return {
      profiles: records.map(({ profile: p, updatedAt }) => ({
        id: p.id, name: p.name, certificateKind: p.certificateKind, validityAnchor: p.validityAnchor, validity: p.validity,
        verification: p.verification, renewal: p.renewal, updatedAt, timelineSvg: renderPolicyTimelineSvg(p),
      })),
    };
  });
}
