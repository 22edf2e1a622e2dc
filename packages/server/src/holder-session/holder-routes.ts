// The swagger types add tags and summaries to route schemas (the OpenAPI document is built from them).
import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { DeliveryChannel } from "../delivery/index.js";
import { body, problemSchema } from "../admin/admin-schemas.js";
import { readOrCreateKeyFile } from "../admin/secret-key-file.js";
import type { ServerContext } from "../server-context.js";
import { HolderBellService, type BellViewer } from "./holder-bell-service.js";
import { holderSessionKeyFile } from "./holder-session-token.js";
import { HolderSignInService } from "./holder-sign-in-service.js";

/** Where the holder API lives. */
export const HOLDER_PREFIX = "/api/v1/holder";

/** The response header that carries the renewed session token (the session slides 30 minutes from each use). */
export const SESSION_TOKEN_HEADER = "x-ukey-session-token";

const problems = { "4XX": problemSchema, "5XX": problemSchema } as const;
const str = (maxLength = 200) => ({ type: "string", maxLength }) as const;
const dateTime = { type: "string", format: "date-time" } as const;
const words = { type: "object", properties: { "zh-CN": str(2000), en: str(2000) } } as const;

const certificateView = {
  type: "object",
  properties: {
    serial: str(64), certId: str(256), subjectDn: str(1000), holderId: str(64), profileId: str(64),
    profileName: { ...words, nullable: true }, notBefore: dateTime, notAfter: dateTime, status: str(32),
    onHold: { type: "boolean", description: "on hold (冻结, certificateHold): suspended until the institution lifts it" },
    state: { type: "string", enum: ["not-yet", "open", "open-step-up", "closed", "revoked", "superseded"], description: "renewal state on the web channel" },
    daysToExpiry: { type: "integer", description: "CST days until the expiry day; 0 on it, negative after" },
    inNotice: { type: "boolean" }, renewed: { type: "boolean" },
    window: { type: "object", properties: { opensAt: { ...dateTime, nullable: true }, closesAt: { ...dateTime, nullable: true } } },
    explanation: words,
    tokenSerial: { ...str(64), nullable: true, description: "the serial of the UKey it was issued onto, as the agent reported it at issuance; the portal's diagnostics name that key when none is seen" },
  },
} as const;

const reminderView = {
  type: "object",
  properties: {
    id: str(128), certificateSerial: str(64), holderId: str(64), threshold: { type: "integer", description: "days before the expiry day (negative: after)" },
    notAfter: dateTime, status: { type: "string", enum: ["pending", "sent", "failed"] }, channels: { type: "array", items: str(16) },
    read: { type: "boolean" }, createdAt: dateTime,
  },
} as const;

const preferencesView = {
  type: "object",
  properties: { sms: { type: "boolean" }, email: { type: "boolean" }, updatedAt: { ...dateTime, nullable: true } },
} as const;

/**
 * The holder's own API: sign-in with the customer number and a one-time
 * code, then, with `Authorization: Bearer <token>`, the bell (unread
 * reminders and expiring certificates), the certificate list (an
 * organisation sees its members' too) and reminder opt-outs. Every answer
 * to a signed-in request carries a renewed token in `X-Ukey-Session-Token`.
 * @throws UkeyError FILE_UNREADABLE when the session key file cannot be read or made.
 */
export function registerHolderRoutes(app: FastifyInstance, ctx: ServerContext): { signIn: HolderSignInService; bell: HolderBellService } {
  const signIn = new HolderSignInService({
    store: ctx.store, senders: ctx.senders, clock: ctx.clock, codeKey: ctx.idKey, sessionKey: readOrCreateKeyFile(holderSessionKeyFile(ctx.layout)),
    institution: ctx.config.institution, refusals: ctx.refusals,
    limits: { codesPerDay: ctx.config.signIn.holderCodesPerDay, wrongCodesPerDay: ctx.config.signIn.holderWrongCodesPerDay },
  });
  // Codes still on their way are delivered (or recorded as failed) before the server stops.
  app.addHook("onClose", () => signIn.drain());
  const bell = new HolderBellService({ store: ctx.store, clock: ctx.clock, profiles: ctx.reminders.profiles });
  const viewers = new WeakMap<FastifyRequest, BellViewer>();
  const who = (req: FastifyRequest) => viewers.get(req)!;

  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const m = /^Bearer ([A-Za-z0-9._-]{1,2048})$/.exec(req.headers.authorization ?? "");
    const p = signIn.authenticate(m?.[1]);
    viewers.set(req, { id: p.id, kind: p.kind });
    void reply.header(SESSION_TOKEN_HEADER, p.renewed.token).header("x-ukey-session-expires-at", p.renewed.expiresAt).header("cache-control", "no-store");
  };
  const secured = (summary: string) => ({ tags: ["holder"], summary, security: [{ holderSession: [] }] });

  app.post<{ Body: { holderId: string; channel?: DeliveryChannel } }>(`${HOLDER_PREFIX}/sign-in`, {
    bodyLimit: 4096,
    schema: {
      tags: ["holder"],
      summary: "Send a sign-in code to the phone (or e-mail) on record of this customer number, if it is registered; the answer is the same either way",
      body: body({ holderId: { type: "string", minLength: 1, maxLength: 64 }, channel: { type: "string", enum: ["sms", "email"] } }, ["holderId"]),
      response: {
        200: { type: "object", properties: { challengeId: str(64), expiresAt: dateTime, resendAt: dateTime } },
        ...problems,
      },
    },
  }, async (req, reply) => reply.header("cache-control", "no-store").send(await signIn.start(req.body.holderId, req.body.channel)));

  app.post<{ Body: { challengeId: string; code: string } }>(`${HOLDER_PREFIX}/sign-in/verify`, {
    bodyLimit: 4096,
    schema: {
      tags: ["holder"], summary: "Check the sign-in code; returns a bearer token valid 30 minutes from its last use",
      body: body({ challengeId: { type: "string", minLength: 1, maxLength: 64 }, code: { type: "string", minLength: 1, maxLength: 16 } }, ["challengeId", "code"]),
      response: {
        200: {
          type: "object",
          properties: {
            token: str(2048), expiresAt: dateTime,
            holder: { type: "object", properties: { id: str(64), kind: { type: "string", enum: ["person", "organisation"] }, name: str() } },
          },
        },
        ...problems,
      },
    },
  }, async (req, reply) => reply.header("cache-control", "no-store").send(await signIn.verify(req.body.challengeId, req.body.code)));

  app.get(`${HOLDER_PREFIX}/bell`, {
    preHandler: guard,
    schema: {
      ...secured("Unread reminders and the certificates in their notice period (an organisation's: with its members')"),
      response: {
        200: { type: "object", properties: { unreadCount: { type: "integer" }, unread: { type: "array", items: reminderView }, expiring: { type: "array", items: certificateView } } },
        ...problems,
      },
    },
  }, async (req) => bell.bell(who(req)));

  app.post<{ Body: { ids?: string[] } }>(`${HOLDER_PREFIX}/bell/read`, {
    preHandler: guard, bodyLimit: 64 * 1024,
    schema: {
      ...secured("Mark reminders read: the ids given, or all when none are given"),
      body: body({ ids: { type: "array", maxItems: 1000, items: { type: "string", minLength: 1, maxLength: 128 } } }),
      response: { 200: { type: "object", properties: { marked: { type: "integer" } } }, ...problems },
    },
  }, async (req) => ({ marked: await bell.markRead(who(req), req.body?.ids ?? null) }));

  app.get<{ Querystring: { limit?: number; offset?: number } }>(`${HOLDER_PREFIX}/certificates`, {
    preHandler: guard,
    schema: {
      ...secured("The holder's certificates (an organisation's: with its members'), earliest expiry first, with state, days left and window"),
      querystring: {
        type: "object", additionalProperties: false,
        properties: { limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 }, offset: { type: "integer", minimum: 0, maximum: 1_000_000, default: 0 } },
      },
      response: { 200: { type: "object", properties: { certificates: { type: "array", items: certificateView } } }, ...problems },
    },
  }, async (req) => ({ certificates: await bell.certificates(who(req), req.query) }));

  const prefs = (p: { smsReminders: boolean; emailReminders: boolean; updatedAt: number | null }) =>
    ({ sms: p.smsReminders, email: p.emailReminders, updatedAt: p.updatedAt === null ? null : new Date(p.updatedAt).toISOString() });
  app.get(`${HOLDER_PREFIX}/preferences`, {
    preHandler: guard,
    schema: { ...secured("The channels reminders go to (true: on)"), response: { 200: preferencesView, ...problems } },
  }, async (req) => prefs(await bell.preferences(who(req).id)));
  app.put<{ Body: { sms: boolean; email: boolean } }>(`${HOLDER_PREFIX}/preferences`, {
    preHandler: guard, bodyLimit: 4096,
    schema: {
      ...secured("Turn reminders by SMS or e-mail on or off (off on both: the bell only)"),
      body: body({ sms: { type: "boolean" }, email: { type: "boolean" } }, ["sms", "email"]),
      response: { 200: preferencesView, ...problems },
    },
  }, async (req) => prefs(await bell.setPreferences(who(req).id, req.body, `holder:${who(req).id}`)));

  return { signIn, bell };
}
