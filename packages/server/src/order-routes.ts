// The swagger types add tags and summaries to route schemas (the OpenAPI document is built from them).
import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { UkeyError, type RenewalChannel } from "@ukey/policy";
import { parseCertId } from "./cert-id.js";
import type { DownloadService } from "./download-service.js";
import type { RenewalOrderService } from "./renewal-order-service.js";

const orderId = { type: "object", properties: { id: { type: "string", maxLength: 64 } }, required: ["id"] } as const;
const body = (properties: Record<string, unknown>, required: string[] = []) =>
  ({ type: "object", additionalProperties: false, properties, required }) as const;

/**
 * The renewal API for the agent and the portal: one service call per
 * route; every rule lives in RenewalOrderService. No route takes a PIN:
 * the PIN stays in the agent.
 */
export function registerOrderRoutes(app: FastifyInstance, orders: RenewalOrderService, downloads: DownloadService): void {
  app.post<{ Body: { certId?: string; serial?: string; channel?: RenewalChannel } }>("/api/v1/orders", {
    schema: {
      tags: ["renewal"], summary: "Start or resume the renewal of a certificate",
      body: body({ certId: { type: "string", maxLength: 200 }, serial: { type: "string", maxLength: 64 }, channel: { type: "string", enum: ["web", "mobile", "cli", "est"] } }),
    },
  }, async (req, reply) => {
    const serial = req.body.certId ? parseCertId(req.body.certId).serial : req.body.serial?.toLowerCase();
    if (!serial || !/^[0-9a-f]{2,42}$/.test(serial)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "give certId (RFC 9773) or serial (hex)" } });
    const view = await orders.start(serial, req.body.channel ?? "web", "holder");
    return reply.status(view.state === "created" && view.done.length === 0 ? 201 : 200).send(view);
  });

  app.get<{ Params: { id: string } }>("/api/v1/orders/:id", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.get(req.params.id));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/challenge", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.challenge(req.params.id));

  app.post<{ Params: { id: string }; Body: { signature: string } }>("/api/v1/orders/:id/possession", {
    schema: { tags: ["renewal"], params: orderId, body: body({ signature: { type: "string", maxLength: 2048 } }, ["signature"]) },
  }, (req) => orders.provePossession(req.params.id, req.body.signature));

  app.post<{ Params: { id: string }; Body: { idType: string; idNumber: string } }>("/api/v1/orders/:id/identity", {
    schema: { tags: ["renewal"], params: orderId, body: body({ idType: { type: "string", maxLength: 32 }, idNumber: { type: "string", maxLength: 40 } }, ["idType", "idNumber"]) },
  }, (req) => orders.proveIdentity(req.params.id, req.body.idType, req.body.idNumber));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/code", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.sendCode(req.params.id, "holder"));

  app.post<{ Params: { id: string }; Body: { code: string } }>("/api/v1/orders/:id/code/verify", {
    schema: { tags: ["renewal"], params: orderId, body: body({ code: { type: "string", pattern: "^\\s*\\d{6}\\s*$" } }, ["code"]) },
  }, (req) => orders.verifyCode(req.params.id, req.body.code));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/step-up", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.startStepUp(req.params.id));

  app.post<{ Params: { link: string }; Body: { idType: string; idNumber: string } }>("/api/v1/step-up/:link", {
    schema: {
      tags: ["renewal"], params: { type: "object", properties: { link: { type: "string", maxLength: 120 } }, required: ["link"] },
      body: body({ idType: { type: "string", maxLength: 32 }, idNumber: { type: "string", maxLength: 40 } }, ["idType", "idNumber"]),
    },
  }, (req) => orders.approveStepUp(req.params.link, req.body.idType, req.body.idNumber));

  app.post<{ Params: { id: string }; Body: { csr: string; tokenSerial?: string } }>("/api/v1/orders/:id/csr", {
    schema: { tags: ["renewal"], params: orderId, body: body({ csr: { type: "string", maxLength: 16384 }, tokenSerial: { type: "string", maxLength: 64 } }, ["csr"]) },
  }, (req) => orders.submitCsr(req.params.id, req.body.csr, req.body.tokenSerial ?? null, "holder"));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/installed", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.installed(req.params.id, "holder"));
  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/complete", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.complete(req.params.id, "holder"));
  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/cancel", { schema: { tags: ["renewal"], params: orderId } }, (req) => orders.cancel(req.params.id, "holder"));

  app.post<{ Body: { referenceNumber: string; authorizationCode: string; csr: string; tokenSerial?: string } }>("/api/v1/downloads", {
    schema: {
      tags: ["renewal"], summary: "Download a certificate onto an empty key with a reference number and an authorization code",
      body: body({
        referenceNumber: { type: "string", maxLength: 32 }, authorizationCode: { type: "string", maxLength: 32 },
        csr: { type: "string", maxLength: 16384 }, tokenSerial: { type: "string", maxLength: 64 },
      }, ["referenceNumber", "authorizationCode", "csr"]),
    },
  }, async (req, reply) => reply.status(201).send(await downloads.download(req.body.referenceNumber, req.body.authorizationCode, req.body.csr, req.body.tokenSerial ?? null, "holder")));
}
