// The swagger types add tags and summaries to route schemas (the OpenAPI document is built from them).
import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { body, problemSchema } from "../admin/admin-schemas.js";
import type { HolderSignInService } from "../holder-session/holder-sign-in-service.js";
import type { ServerContext } from "../server-context.js";
import { SelfServiceRedownloadService } from "./self-service-redownload-service.js";

/** Where self-service re-download lives. */
export const REDOWNLOAD_PREFIX = "/api/v1/redownload";

const problems = { "4XX": problemSchema, "5XX": problemSchema } as const;
const str = (maxLength = 200) => ({ type: "string", maxLength }) as const;
const dateTime = { type: "string", format: "date-time" } as const;

/**
 * Self-service re-download: `POST /api/v1/redownload` (customer number and
 * ID number; an SMS code to the phone on record, the same answer for
 * anything typed) and `POST /api/v1/redownload/verify` (the code; the two
 * codes of the existing download, per certificate). No session: what the
 * holder proves is the customer number, the ID number and the phone, each
 * time. JSON bodies only (the server parses no text/plain), answers never cached.
 */
export function registerRedownloadRoutes(app: FastifyInstance, ctx: ServerContext, signIn: HolderSignInService): SelfServiceRedownloadService {
  const service = new SelfServiceRedownloadService({
    store: ctx.store, signIn, enrolments: ctx.enrolments, clock: ctx.clock, idKey: ctx.idKey, institution: ctx.config.institution,
  });

  app.post<{ Body: { holderId: string; idNumber: string } }>(REDOWNLOAD_PREFIX, {
    bodyLimit: 4096,
    schema: {
      tags: ["holder"],
      summary: "Self-service re-download, step 1: the customer number and ID number; an SMS code goes to the phone on record if they match a holder with a certificate to download again. The answer is the same either way",
      body: body({ holderId: { type: "string", minLength: 1, maxLength: 64 }, idNumber: { type: "string", minLength: 1, maxLength: 64 } }, ["holderId", "idNumber"]),
      response: { 200: { type: "object", properties: { challengeId: str(64), expiresAt: dateTime, resendAt: dateTime, sentTo: str(32) } }, ...problems },
    },
  }, async (req, reply) => reply.header("cache-control", "no-store").send(await service.start(req.body.holderId, req.body.idNumber)));

  app.post<{ Body: { challengeId: string; code: string } }>(`${REDOWNLOAD_PREFIX}/verify`, {
    bodyLimit: 4096,
    schema: {
      tags: ["holder"],
      summary: "Self-service re-download, step 2: the SMS code; answers a reference number and authorization code (valid 30 minutes, once) per certificate that may be downloaded again, for POST /api/v1/downloads",
      body: body({ challengeId: { type: "string", minLength: 1, maxLength: 64 }, code: { type: "string", minLength: 1, maxLength: 16 } }, ["challengeId", "code"]),
      response: {
        200: {
          type: "object",
          properties: {
            authorizations: {
              type: "array",
              items: {
                type: "object",
                properties: {
                  referenceNumber: str(16), authorizationCode: str(32), expiresAt: dateTime,
                  certificate: {
                    type: "object",
                    properties: {
                      serial: str(64), subjectDn: str(1000), notAfter: dateTime, profileId: str(64),
                      profileName: { type: "object", nullable: true, properties: { "zh-CN": str(), en: str() } },
                    },
                  },
                },
              },
            },
          },
        },
        ...problems,
      },
    },
  }, async (req, reply) => reply.header("cache-control", "no-store").send(await service.verify(req.body.challengeId, req.body.code)));

  return service;
}
