// The swagger types add tags and summaries to route schemas (the OpenAPI document is built from them).
import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { UkeyError } from "@ukey/policy";
import type { OperatorRole, ReminderRecord, ReminderStatus } from "@ukey/store";
import { ADMIN_PREFIX } from "../admin/admin-routes.js";
import { body, listOf, page, params, problemSchema } from "../admin/admin-schemas.js";
import { operatorRoles, operatorServiceFor, roleAllows, type OperatorPrincipal } from "../admin/operator-service.js";
import type { HolderBellService } from "../holder-session/holder-bell-service.js";
import type { ServerContext } from "../server-context.js";

const problems = { "4XX": problemSchema, "5XX": problemSchema } as const;
const millis = { type: "integer", description: "epoch milliseconds" } as const;
const statuses: readonly ReminderStatus[] = ["pending", "sent", "failed", "cancelled"];

const reminderSchema = {
  type: "object",
  properties: {
    id: { type: "string" }, certificateSerial: { type: "string" }, threshold: { type: "integer" }, holderId: { type: "string" },
    recipientId: { type: "string" }, notAfter: millis, status: { type: "string", enum: statuses },
    delivered: { type: "array", items: { type: "string" } }, attempts: { type: "integer" }, nextAttemptAt: { ...millis, nullable: true },
    lastError: { type: "string", nullable: true }, readAt: { ...millis, nullable: true }, sentAt: { ...millis, nullable: true },
    createdAt: millis, updatedAt: millis,
  },
} as const;

const preferencesSchema = {
  type: "object",
  properties: { holderId: { type: "string" }, sms: { type: "boolean" }, email: { type: "boolean" }, updatedAt: { ...millis, nullable: true } },
} as const;

/**
 * The operators' side of reminders under /api/v1/admin: reminders by
 * status (the failed ones are what the console reports), and a holder's
 * reminder channels. Same sign-in, roles and audit as the rest of the admin API.
 */
export function registerReminderAdminRoutes(app: FastifyInstance, ctx: ServerContext, bell: HolderBellService): void {
  const operators = operatorServiceFor(ctx);
  const principals = new WeakMap<FastifyRequest, OperatorPrincipal>();
  const who = (req: FastifyRequest) => principals.get(req)!;
  const now = () => ctx.clock.now().getTime();
  const guard = (required: OperatorRole) => async (req: FastifyRequest) => {
    const m = /^Bearer ([A-Za-z0-9._-]{1,2048})$/.exec(req.headers.authorization ?? "");
    let p: OperatorPrincipal;
    const refused = (actor: string, reason: string, data: Record<string, unknown> = {}) => ctx.refusals.record({
      actor, action: "admin.refused", subjectType: "route", subjectId: `${req.method} ${req.routeOptions.url ?? "?"}`, data: { reason, ip: req.ip, ...data },
    });
    try {
      if (!m) throw new UkeyError("SESSION_INVALID", { detail: "no Authorization: Bearer token" });
      p = await operators.authenticate(m[1]!);
    } catch (e) {
      if (e instanceof UkeyError) refused("unknown", "session-invalid", { detail: e.detail ?? "" });
      throw e;
    }
    if (!roleAllows(p.role, required)) {
      refused(p.actor, "role", { role: p.role, required });
      throw new UkeyError("ROLE_FORBIDDEN", { params: { role: p.role, required: operatorRoles.filter((r) => roleAllows(r, required)).join(", ") } });
    }
    principals.set(req, p);
  };
  const schema = (role: OperatorRole, summary: string, extra: Record<string, unknown>) =>
    ({ tags: ["admin"], summary, security: [{ operatorSession: [] }], description: `Role: ${role} or higher.`, ...extra });

  app.get<{ Querystring: { status?: ReminderStatus; limit?: number; offset?: number } }>(`${ADMIN_PREFIX}/reminders`, {
    preHandler: guard("auditor"),
    schema: schema("auditor", "Expiry reminders, most recently changed first, by status (failed: every channel's attempts ran out)", {
      querystring: { type: "object", additionalProperties: false, properties: { status: { type: "string", enum: statuses }, ...page } },
      response: { 200: listOf("reminders", reminderSchema), ...problems },
    }),
  }, async (req) => {
    await ctx.store.audit.append({ at: now(), actor: who(req).actor, action: "admin.viewed", subjectType: "reminder", subjectId: "*", data: { ...req.query } });
    const list: ReminderRecord[] = await ctx.store.reminders.list(req.query);
    return { reminders: list };
  });

  const view = (p: { holderId: string; smsReminders: boolean; emailReminders: boolean; updatedAt: number | null }) =>
    ({ holderId: p.holderId, sms: p.smsReminders, email: p.emailReminders, updatedAt: p.updatedAt });
  app.get<{ Params: { id: string } }>(`${ADMIN_PREFIX}/holders/:id/preferences`, {
    preHandler: guard("auditor"),
    schema: schema("auditor", "A holder's reminder channels", { params: params("id"), response: { 200: preferencesSchema, ...problems } }),
  }, async (req) => {
    if (!await ctx.store.holders.get(req.params.id)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: req.params.id } });
    await ctx.store.audit.append({ at: now(), actor: who(req).actor, action: "admin.viewed", subjectType: "holder", subjectId: req.params.id, data: { what: "preferences" } });
    return view(await bell.preferences(req.params.id));
  });
  app.put<{ Params: { id: string }; Body: { sms: boolean; email: boolean } }>(`${ADMIN_PREFIX}/holders/:id/preferences`, {
    preHandler: guard("operator"), bodyLimit: 4096,
    schema: schema("operator", "Turn a holder's reminders by SMS or e-mail on or off (at the holder's request)", {
      params: params("id"), body: body({ sms: { type: "boolean" }, email: { type: "boolean" } }, ["sms", "email"]),
      response: { 200: preferencesSchema, ...problems },
    }),
  }, async (req) => view(await bell.setPreferences(req.params.id, req.body, who(req).actor)));
}
