// The swagger types add tags and summaries to route schemas (the OpenAPI document is built from them).
import type {} from "@fastify/swagger";
import { X509Certificate, createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from "fastify";
import { derToPem, normaliseSerial } from "@ukey/ca";
import { UkeyError } from "@ukey/policy";
import type { CertificateRecord, CertificateStatus, EnrolmentRecord, HolderRecord, KmcRecoveryStatus, OperatorRole, OrderState, Store } from "@ukey/store";
import { formatCertId } from "../cert-id.js";
import { peerCertificate } from "../client-certificate.js";
import { enrolmentServiceFor } from "../enrolment-service.js";
import { hashIdNumber, maskIdNumber, normaliseIdNumber } from "../holder-identity.js";
import { KeyRecoveryService } from "../kmc/key-recovery-service.js";
import { operatorRevocationReasons } from "../revocation-service.js";
import type { ServerContext } from "../server-context.js";
import {
  auditEntrySchema, body, certificateSchema, enrolmentSchema, enrolmentStatuses, holderSchema, kmcEscrowSchema, kmcRecoverySchema, kmcRecoveryStatuses,
  listOf, operatorSchema, orderSchema, orderStates, outboxSchema, page, params, problemSchema,
} from "./admin-schemas.js";
import { operatorRoles, operatorServiceFor, roleAllows, type OperatorPrincipal } from "./operator-service.js";
import { RenewalUnlockService } from "./renewal-unlock-service.js";
import { renewalLockedUntil } from "../renewal/renewal-lock.js";

/** Where the admin API lives. */
export const ADMIN_PREFIX = "/api/v1/admin";

/** Largest admin request body: no admin request needs more. */
const ADMIN_BODY_LIMIT = 16 * 1024;

const problems = { "4XX": problemSchema, "5XX": problemSchema } as const;
const millis = { type: "integer", description: "epoch milliseconds" } as const;
const certificateStatuses = ["pending", "active", "revoked", "superseded", "expired", "abandoned"] as const;

interface RouteSpec {
  /** The weakest role allowed; null for sign-in. */
  role: OperatorRole | null;
  summary: string;
  params?: unknown;
  querystring?: unknown;
  body?: unknown;
  response: Record<number | string, unknown>;
}

/**
 * The admin API under /api/v1/admin/: sign-in (password + TOTP, or a
 * pinned client certificate on the client-certificate port), holders, certificates
 * (search, revoke), enrolments (create with the code shown once, list,
 * revoke), renewal orders, the outbox, the audit log, and operator accounts.
 * Roles: auditor reads; operator also creates holders and enrolments,
 * revokes, lifts a certificate's renewal pause and opens key recoveries,
 * which a different person of any role approves (dual control); admin also
 * manages operators and lifts their sign-in pauses. Every request that passes the
 * role check is audited as `operator:<id>` (changes in their own
 * transaction, reads as admin.viewed), and every refusal (sign-in, token,
 * role) as well, counted per window (ctx.refusals), never with a secret.
 * One service call per handler.
 * @throws UkeyError FILE_UNREADABLE when the RA key files cannot be read or made.
 */
export async function registerAdminRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  const operators = operatorServiceFor(ctx);
  const enrolments = enrolmentServiceFor(ctx);
  const renewalUnlocks = new RenewalUnlockService({ store: ctx.store, clock: ctx.clock });
  const recoveries = new KeyRecoveryService({ store: ctx.store, clock: ctx.clock, enrolments });
  const principals = new WeakMap<FastifyRequest, OperatorPrincipal>();
  const who = (req: FastifyRequest): OperatorPrincipal => principals.get(req)!;
  const now = () => ctx.clock.now().getTime();

  // Counted per window (audit/refusal-log.ts), so that a flood of bad tokens costs a handful of rows, not one each.
  const refused = (req: FastifyRequest, actor: string, reason: string, extra: Record<string, unknown> = {}) => {
    ctx.refusals.record({
      actor, action: "admin.refused", subjectType: "route", subjectId: `${req.method} ${req.routeOptions.url ?? "?"}`,
      data: { reason, ip: req.ip, ...extra },
    });
  };

  const guard = (required: OperatorRole) => async (req: FastifyRequest) => {
    const header = req.headers.authorization ?? "";
    const m = /^Bearer ([A-Za-z0-9._-]{1,2048})$/.exec(header);
    let p: OperatorPrincipal;
    try {
      if (!m) throw new UkeyError("SESSION_INVALID", { detail: "no Authorization: Bearer token" });
      p = await operators.authenticate(m[1]!);
    } catch (e) {
      if (e instanceof UkeyError) refused(req, "unknown", "session-invalid", { detail: e.detail ?? "" });
      throw e;
    }
    if (!roleAllows(p.role, required)) {
      refused(req, p.actor, "role", { role: p.role, required });
      throw new UkeyError("ROLE_FORBIDDEN", { params: { role: p.role, required: operatorRoles.filter((r) => roleAllows(r, required)).join(", ") } });
    }
    principals.set(req, p);
  };

  /** Appends admin.viewed for a read: who looked at what (personal data included) is part of the record. */
  const viewed = (req: FastifyRequest, subjectType: string, subjectId: string, data: Record<string, unknown> = {}) =>
    ctx.store.audit.append({ at: now(), actor: who(req).actor, action: "admin.viewed", subjectType, subjectId, data });

  function route<Req extends { Params?: unknown; Querystring?: unknown; Body?: unknown }>(
    method: "GET" | "POST" | "PATCH", url: string, spec: RouteSpec,
    handler: (req: FastifyRequest<Req>, reply: FastifyReply) => Promise<unknown>,
  ): void {
    const schema: Record<string, unknown> = {
      tags: ["admin"], summary: spec.summary, response: { ...spec.response, ...problems },
      ...(spec.params ? { params: spec.params } : {}), ...(spec.querystring ? { querystring: spec.querystring } : {}), ...(spec.body ? { body: spec.body } : {}),
      ...(spec.role ? { security: [{ operatorSession: [] }], description: `Role: ${spec.role} or higher.` } : {}),
    };
    const options: RouteShorthandOptions = { schema, bodyLimit: ADMIN_BODY_LIMIT, ...(spec.role ? { preHandler: guard(spec.role) } : {}) };
    app.route({ method, url: `${ADMIN_PREFIX}${url}`, ...options, handler: handler as (req: FastifyRequest, reply: FastifyReply) => Promise<unknown> });
  }

  // ---- sign-in ----
  const signedIn = { type: "object", properties: { token: { type: "string" }, expiresAt: { type: "integer" }, operator: operatorSchema } } as const;
  route<{ Body: { operatorId: string; password: string; totp: string } }>("POST", "/sign-in", {
    role: null, summary: "Sign in with password and TOTP code; returns a bearer token (30 minutes)",
    body: body({ operatorId: { type: "string", minLength: 1, maxLength: 64 }, password: { type: "string", minLength: 1, maxLength: 1024 }, totp: { type: "string", maxLength: 16 } }, ["operatorId", "password", "totp"]),
    response: { 200: signedIn },
  }, async (req) => operators.signIn(req.body.operatorId, req.body.password, req.body.totp, { ip: req.ip }));

  route("POST", "/sign-in/certificate", {
    role: null, summary: "Sign in with the client certificate of the TLS connection, pinned on an operator account (client-certificate port only)",
    response: { 200: signedIn },
  }, async (req) => {
    const der = peerCertificate(req);
    if (!der) {
      refused(req, "unknown", "no-client-certificate");
      throw new UkeyError("OPERATOR_SIGN_IN_FAILED", { detail: "no client certificate on this connection" });
    }
    // The TLS handshake proved the client holds this key; the pin on the account is what trusts it.
    const spki = new X509Certificate(der).publicKey.export({ type: "spki", format: "der" });
    return operators.signInWithCertificate(createHash("sha256").update(spki).digest("hex"), { ip: req.ip });
  });

  route("GET", "/me", {
    role: "auditor", summary: "The signed-in operator", response: { 200: { type: "object", properties: { id: { type: "string" }, role: { type: "string" }, expiresAt: { type: "integer" } } } },
  }, async (req) => ({ id: who(req).id, role: who(req).role, expiresAt: who(req).claims.exp }));

  // ---- operators ----
  route("GET", "/operators", { role: "admin", summary: "Operator accounts", response: { 200: listOf("operators", operatorSchema) } }, async (req) => {
    await viewed(req, "operator", "*");
    return { operators: await operators.list() };
  });
  route<{ Body: { id: string; role: OperatorRole; password: string; certSpkiSha256?: string } }>("POST", "/operators", {
    role: "admin", summary: "Create an operator account; the TOTP secret is returned once",
    body: body({
      id: { type: "string", maxLength: 64 }, role: { type: "string", enum: operatorRoles }, password: { type: "string", maxLength: 1024 },
      certSpkiSha256: { type: "string", pattern: "^[0-9a-f]{64}$" },
    }, ["id", "role", "password"]),
    response: { 201: { type: "object", properties: { operator: operatorSchema, totpSecret: { type: "string" }, totpUri: { type: "string" } } } },
  }, async (req, reply) => reply.status(201).send(await operators.create({ ...req.body, actor: who(req).actor })));
  route<{ Params: { id: string }; Body: { role?: OperatorRole; disabled?: boolean } }>("PATCH", "/operators/:id", {
    role: "admin", summary: "Change an operator's role or disable the account", params: params("id"),
    body: body({ role: { type: "string", enum: operatorRoles }, disabled: { type: "boolean" } }), response: { 200: operatorSchema },
  }, async (req) => operators.update(req.params.id, req.body, who(req).actor));

  route<{ Params: { id: string } }>("POST", "/operators/:id/unlock", {
    role: "admin", summary: "Lift every pause of an operator's password sign-ins (all addresses); audited", params: params("id"),
    response: { 200: { type: "object", properties: { operator: operatorSchema, clientsCleared: { type: "integer" } } } },
  }, async (req) => operators.unlock(req.params.id, who(req).actor));

  // ---- holders ----
  route<{ Body: { id: string; kind?: "person" | "organisation"; name: string; idType: string; idNumber: string; phone?: string; email?: string; organisationId?: string } }>("POST", "/holders", {
    role: "operator", summary: "Register a holder (the ID number is stored only as a keyed hash and a masked form)",
    body: body({
      id: { type: "string", pattern: "^[A-Za-z0-9._-]{1,64}$" }, kind: { type: "string", enum: ["person", "organisation"] }, name: { type: "string", minLength: 1, maxLength: 200 },
      idType: { type: "string", minLength: 1, maxLength: 32 }, idNumber: { type: "string", pattern: "^[0-9A-Za-z -]{4,40}$" },
      phone: { type: "string", maxLength: 32 }, email: { type: "string", maxLength: 200 }, organisationId: { type: "string", maxLength: 64 },
    }, ["id", "name", "idType", "idNumber"]),
    response: { 201: holderSchema },
  }, async (req, reply) => {
    const b = req.body;
    const at = now();
    const holder: HolderRecord = {
      id: b.id, kind: b.kind ?? "person", name: b.name, idType: b.idType, idHash: hashIdNumber(ctx.idKey, b.idType, b.idNumber),
      idMasked: maskIdNumber(b.idNumber), phone: b.phone ?? null, email: b.email ?? null, organisationId: b.organisationId ?? null, createdAt: at,
    };
    await ctx.store.transaction(async (r) => {
      await r.holders.insert(holder);
      await r.audit.append({ at, actor: who(req).actor, action: "holder.created", subjectType: "holder", subjectId: holder.id, data: { kind: holder.kind, idMasked: holder.idMasked } });
    });
    return reply.status(201).send(holderView(holder));
  });
  route<{ Querystring: { limit?: number; offset?: number } }>("GET", "/holders", {
    role: "auditor", summary: "Holders in id order", querystring: { type: "object", additionalProperties: false, properties: page }, response: { 200: listOf("holders", holderSchema) },
  }, async (req) => {
    await viewed(req, "holder", "*", { ...req.query });
    return { holders: (await ctx.store.holders.list(req.query)).map(holderView) };
  });
  route<{ Body: { idType: string; idNumber: string } }>("POST", "/holders/search", {
    role: "auditor", summary: "Find the holder with an ID number (POST, so that the number is in no URL or access log)",
    body: body({ idType: { type: "string", minLength: 1, maxLength: 32 }, idNumber: { type: "string", minLength: 1, maxLength: 40 } }, ["idType", "idNumber"]),
    response: { 200: listOf("holders", holderSchema) },
  }, async (req) => {
    const h = await ctx.store.holders.findByIdHash(hashIdNumber(ctx.idKey, req.body.idType, req.body.idNumber));
    await viewed(req, "holder", h?.id ?? "none", { searchedBy: "id-number", idType: req.body.idType, idMasked: maskIdNumber(normaliseIdNumber(req.body.idNumber)) });
    return { holders: h ? [holderView(h)] : [] };
  });
  route<{ Params: { id: string } }>("GET", "/holders/:id", { role: "auditor", summary: "One holder", params: params("id"), response: { 200: holderSchema } }, async (req) => {
    const h = await ctx.store.holders.get(req.params.id);
    if (!h) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: req.params.id } });
    await viewed(req, "holder", h.id);
    return holderView(h);
  });

  // ---- certificates ----
  route<{ Querystring: { holderId?: string; status?: CertificateStatus; subject?: string; expiringBefore?: string; limit?: number; offset?: number } }>("GET", "/certificates", {
    role: "auditor", summary: "Search certificates by holder, status, subject text and expiry",
    querystring: {
      type: "object", additionalProperties: false,
      properties: { holderId: { type: "string", maxLength: 64 }, status: { type: "string", enum: certificateStatuses }, subject: { type: "string", maxLength: 200 }, expiringBefore: { type: "string", format: "date-time" }, ...page },
    },
    response: { 200: listOf("certificates", certificateSchema) },
  }, async (req) => {
    const q = req.query;
    await viewed(req, "certificate", "*", { ...q });
    const found = await ctx.store.certificates.search({
      ...(q.holderId ? { holderId: q.holderId } : {}), ...(q.status ? { status: q.status } : {}), ...(q.subject ? { subjectContains: q.subject } : {}),
      ...(q.expiringBefore ? { notAfterBefore: Date.parse(q.expiringBefore) } : {}), limit: q.limit ?? 100, offset: q.offset ?? 0,
    });
    const now = ctx.clock.now().getTime();
    // The console offers "解除更新暂停" only where a pause runs: one lookup per live certificate of the page.
    return {
      certificates: await Promise.all(found.map(async (c) => ({
        ...certificateView(c),
        ...(await pairOf(ctx.store, c.serial)),
        renewalLockedUntil: c.status === "active" || c.status === "expired" ? renewalLockedUntil(await ctx.store.orders.lastFailedAt(c.serial), now)?.getTime() ?? null : null,
      }))),
    };
  });
  route<{ Params: { serial: string } }>("GET", "/certificates/:serial", { role: "auditor", summary: "One certificate, with its PEM", params: params("serial"), response: { 200: certificateSchema } }, async (req) => {
    const serial = normaliseSerial(req.params.serial);
    const c = await ctx.store.certificates.get(serial);
    if (!c) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
    await viewed(req, "certificate", serial);
    return { ...certificateView(c, true), ...(await pairOf(ctx.store, c.serial)) };
  });
  route<{ Params: { serial: string }; Body: { reason: string } }>("POST", "/certificates/:serial/revoke", {
    role: "operator", summary: "Revoke a certificate with an RFC 5280 reason", params: params("serial"),
    body: body({ reason: { type: "string", enum: operatorRevocationReasons } }, ["reason"]), response: { 200: certificateSchema },
  }, async (req) => certificateView(await ctx.revocation.revoke(normaliseSerial(req.params.serial), req.body.reason, who(req).actor)));

  route<{ Params: { serial: string } }>("POST", "/certificates/:serial/hold", {
    role: "operator", summary: "Put a certificate on hold (冻结, RFC 5280 certificateHold): OCSP and CRL say revoked with that reason, renewal and download are refused with CERT_ON_HOLD until the hold is lifted; audited",
    params: params("serial"), response: { 200: certificateSchema },
  }, async (req) => certificateView(await ctx.revocation.revoke(normaliseSerial(req.params.serial), "certificateHold", who(req).actor)));
  route<{ Params: { serial: string } }>("POST", "/certificates/:serial/hold/release", {
    role: "operator", summary: "Lift a hold: the certificate is active again, OCSP answers good and the next CRL leaves it out; audited (CERT_NOT_ON_HOLD when it is not on hold)",
    params: params("serial"), response: { 200: certificateSchema },
  }, async (req) => certificateView(await ctx.revocation.releaseHold(normaliseSerial(req.params.serial), who(req).actor)));

  route<{ Params: { serial: string } }>("POST", "/certificates/:serial/renewal-unlock", {
    role: "operator", summary: "Lift the pause that failed renewal orders put on this certificate's online renewal; audited", params: params("serial"),
    response: { 200: { type: "object", properties: { serial: { type: "string" }, unlockedAt: millis, lastFailureAt: { ...millis, nullable: true } } } },
  }, async (req) => renewalUnlocks.unlock(normaliseSerial(req.params.serial), who(req).actor));

  // ---- enrolments ----
  route<{ Body: { holderId: string; profileId: string; ttlDays?: number; maxAttempts?: number } }>("POST", "/enrolments", {
    role: "operator", summary: "Create an enrolment: the reference number and authorization code are shown in this answer only",
    body: body({
      holderId: { type: "string", minLength: 1, maxLength: 64 }, profileId: { type: "string", minLength: 1, maxLength: 64 },
      ttlDays: { type: "integer", minimum: 1, maximum: 90 }, maxAttempts: { type: "integer", minimum: 1, maximum: 10 },
    }, ["holderId", "profileId"]),
    response: { 201: { type: "object", properties: { enrolment: enrolmentSchema, referenceNumber: { type: "string" }, authorizationCode: { type: "string" } } } },
  }, async (req, reply) => {
    reply.header("cache-control", "no-store");
    return reply.status(201).send(await enrolments.create({ ...req.body, actor: who(req).actor }));
  });
  route<{ Querystring: { holderId?: string; status?: EnrolmentRecord["status"]; limit?: number; offset?: number } }>("GET", "/enrolments", {
    role: "auditor", summary: "Enrolments, newest first",
    querystring: { type: "object", additionalProperties: false, properties: { holderId: { type: "string", maxLength: 64 }, status: { type: "string", enum: enrolmentStatuses }, ...page } },
    response: { 200: listOf("enrolments", enrolmentSchema) },
  }, async (req) => {
    await viewed(req, "enrolment", "*", { ...req.query });
    return { enrolments: await enrolments.list(req.query) };
  });
  route<{ Params: { id: string } }>("GET", "/enrolments/:id", { role: "auditor", summary: "One enrolment", params: params("id"), response: { 200: enrolmentSchema } }, async (req) => {
    const e = await enrolments.get(req.params.id);
    await viewed(req, "enrolment", e.id);
    return e;
  });
  route<{ Params: { id: string } }>("POST", "/enrolments/:id/revoke", {
    role: "operator", summary: "Withdraw an open enrolment: its code stops working", params: params("id"), response: { 200: enrolmentSchema },
  }, async (req) => enrolments.revoke(req.params.id, who(req).actor));

  // ---- key recovery (dual control: kmc/key-recovery-service.ts) ----
  route<{ Params: { id: string } }>("GET", "/holders/:id/kmc-escrows", {
    role: "auditor", summary: "A holder's escrowed encryption keys (never the keys: id, algorithm, public key hash, date)", params: params("id"),
    response: { 200: listOf("escrows", kmcEscrowSchema) },
  }, async (req) => {
    await viewed(req, "kmc-escrow", "*", { holderId: req.params.id });
    const escrows = await ctx.store.kmcEscrows.listByHolder(req.params.id);
    return { escrows: escrows.map((e) => ({ id: e.id, holderId: e.holderId, algorithm: e.algorithm, spkiSha256: createHash("sha256").update(e.spki).digest("hex"), masterKeyId: e.masterKeyId, createdAt: e.createdAt })) };
  });
  route<{ Body: { holderId: string; profileId: string; escrowIds?: string[]; reason: string } }>("POST", "/kmc-recoveries", {
    role: "operator", summary: "Open a key recovery request (all of the holder's escrowed keys, or escrowIds); a different person must approve it",
    body: body({
      holderId: { type: "string", minLength: 1, maxLength: 64 }, profileId: { type: "string", minLength: 1, maxLength: 64 },
      escrowIds: { type: "array", maxItems: 100, items: { type: "string", minLength: 1, maxLength: 64 } }, reason: { type: "string", minLength: 1, maxLength: 500 },
    }, ["holderId", "profileId", "reason"]),
    response: { 201: kmcRecoverySchema },
  }, async (req, reply) => reply.status(201).send(await recoveries.open(req.body, who(req))));
  route<{ Querystring: { status?: KmcRecoveryStatus; holderId?: string; limit?: number; offset?: number } }>("GET", "/kmc-recoveries", {
    role: "auditor", summary: "Key recovery requests, newest first, by status or holder",
    querystring: { type: "object", additionalProperties: false, properties: { status: { type: "string", enum: kmcRecoveryStatuses }, holderId: { type: "string", maxLength: 64 }, ...page } },
    response: { 200: listOf("recoveries", kmcRecoverySchema) },
  }, async (req) => {
    await viewed(req, "kmc-recovery", "*", { ...req.query });
    return { recoveries: await recoveries.list(req.query) };
  });
  route<{ Params: { id: string } }>("GET", "/kmc-recoveries/:id", { role: "auditor", summary: "One key recovery request", params: params("id"), response: { 200: kmcRecoverySchema } }, async (req) => {
    const r = await recoveries.get(req.params.id);
    await viewed(req, "kmc-recovery", r.id);
    return r;
  });
  route<{ Params: { id: string } }>("POST", "/kmc-recoveries/:id/approve", {
    role: "auditor", summary: "Approve a pending key recovery as the second person (never its requester); the two download codes are in this answer only",
    params: params("id"),
    response: { 200: { type: "object", properties: { recovery: kmcRecoverySchema, referenceNumber: { type: "string" }, authorizationCode: { type: "string" } } } },
  }, async (req, reply) => {
    reply.header("cache-control", "no-store");
    return recoveries.approve(req.params.id, who(req));
  });
  route<{ Params: { id: string }; Body: { note?: string } }>("POST", "/kmc-recoveries/:id/reject", {
    role: "auditor", summary: "Reject a pending key recovery (anyone signed in, its requester included)", params: params("id"),
    body: body({ note: { type: "string", maxLength: 500 } }), response: { 200: kmcRecoverySchema },
  }, async (req) => recoveries.reject(req.params.id, who(req), req.body?.note ?? ""));

  // ---- renewal orders ----
  route<{ Querystring: { state?: OrderState; holderId?: string; limit?: number; offset?: number } }>("GET", "/orders", {
    role: "auditor", summary: "Renewal orders, newest first, by state or holder",
    querystring: { type: "object", additionalProperties: false, properties: { state: { type: "string", enum: orderStates }, holderId: { type: "string", maxLength: 64 }, ...page } },
    response: { 200: listOf("orders", orderSchema) },
  }, async (req) => {
    await viewed(req, "order", "*", { ...req.query });
    const now = ctx.clock.now().getTime();
    const lockOf = new Map<string, number | null>();
    const orders = await ctx.store.orders.list(req.query);
    return {
      orders: await Promise.all(orders.map(async (o) => {
        const serial = o.state === "failed" ? o.certificateSerial : null;
        if (serial && !lockOf.has(serial)) lockOf.set(serial, renewalLockedUntil(await ctx.store.orders.lastFailedAt(serial), now)?.getTime() ?? null);
        return { ...o, renewalLockedUntil: serial ? lockOf.get(serial) ?? null : null };
      })),
    };
  });
  route<{ Params: { id: string } }>("GET", "/orders/:id", { role: "auditor", summary: "One renewal order", params: params("id"), response: { 200: orderSchema } }, async (req) => {
    const o = await ctx.store.orders.get(req.params.id);
    if (!o) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `order ${req.params.id}` } });
    await viewed(req, "order", o.id);
    return o;
  });

  // ---- outbox ----
  route<{ Querystring: { status?: "pending" | "queued" | "sent" | "failed"; limit?: number; offset?: number } }>("GET", "/outbox", {
    role: "auditor", summary: "Messages sent to holders (codes redacted, recipients masked), newest first",
    querystring: { type: "object", additionalProperties: false, properties: { status: { type: "string", enum: ["pending", "queued", "sent", "failed"] }, ...page } },
    response: { 200: listOf("messages", outboxSchema) },
  }, async (req) => {
    await viewed(req, "outbox", "*", { ...req.query });
    return { messages: await ctx.store.outbox.list(req.query) };
  });

  // ---- audit log ----
  route<{ Querystring: { fromSeq?: number; limit?: number } }>("GET", "/audit", {
    role: "auditor", summary: "Audit log entries in order from fromSeq",
    querystring: { type: "object", additionalProperties: false, properties: { fromSeq: { type: "integer", minimum: 1, default: 1 }, limit: page.limit } },
    response: { 200: { type: "object", properties: { entries: { type: "array", items: auditEntrySchema }, nextSeq: { type: "integer", nullable: true } } } },
  }, async (req) => {
    const limit = req.query.limit ?? 100;
    // Read before recording the read, so a page does not keep growing with its own entries.
    const entries = await ctx.store.audit.list(req.query.fromSeq ?? 1, limit);
    await viewed(req, "audit", "*", { fromSeq: req.query.fromSeq ?? 1, limit });
    return { entries, nextSeq: entries.length === limit ? entries[entries.length - 1]!.seq + 1 : null };
  });
  route("GET", "/audit/verify", {
    role: "auditor", summary: "Walk the audit log's hash chain",
    response: { 200: { type: "object", properties: { ok: { type: "boolean" }, entries: { type: "integer" }, head: { type: "string" }, firstBadSeq: { type: "integer" }, reason: { type: "string" } } } },
  }, async (req) => {
    const r = await ctx.store.audit.verify();
    await viewed(req, "audit", "verify", { ok: r.ok, entries: r.entries });
    return r;
  });
}

function holderView(h: HolderRecord) {
  const { idHash: _hidden, ...view } = h;
  return view;
}

/** The pair a certificate belongs to, as `{ pair }` (empty for a single certificate). */
async function pairOf(store: Pick<Store, "certificatePairs">, serial: string): Promise<{ pair?: { role: "signing" | "encryption"; otherSerial: string; escrowId: string } }> {
  const signing = await store.certificatePairs.getBySigning(serial);
  if (signing) return { pair: { role: "signing", otherSerial: signing.encryptionSerial, escrowId: signing.escrowId } };
  const encryption = await store.certificatePairs.getByEncryption(serial);
  if (encryption) return { pair: { role: "encryption", otherSerial: encryption.signingSerial, escrowId: encryption.escrowId } };
  return {};
}

function certificateView(c: CertificateRecord, withPem = false) {
  const { der, ...rest } = c;
  return { ...rest, certId: formatCertId(c.issuerKeyId, c.serial), ...(withPem && der ? { pem: derToPem(der, "CERTIFICATE") } : {}) };
}
