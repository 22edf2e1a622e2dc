// The swagger types add tags and summaries to route schemas (the OpenAPI document is built from them).
import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { UkeyError, type RenewalChannel } from "@ukey/policy";
import { parseCertId } from "../cert-id.js";
import { envelopeFormats } from "../kmc/key-envelope.js";
import { peerCertificate } from "../client-certificate.js";
import type { DownloadService } from "../download-service.js";
import type { RenewalOrderService } from "./renewal-order-service.js";

const orderId = { type: "object", properties: { id: { type: "string", maxLength: 64 } }, required: ["id"] } as const;
const body = (properties: Record<string, unknown>, required: string[] = []) =>
  ({ type: "object", additionalProperties: false, properties, required }) as const;
// What the agent installs, documented for integrators (docs/renewal-api.md). The answers keep every other
// property (additionalProperties): these schemas describe the certificates, they do not filter the answer.
const issuedCertificate = {
  type: "object", additionalProperties: true,
  properties: {
    serial: { type: "string" }, certId: { type: "string" }, notBefore: { type: "string", format: "date-time" },
    notAfter: { type: "string", format: "date-time" }, pem: { type: "string", description: "the certificate, PEM" },
  },
} as const;
const pairProperties = {
  encryptionCertificate: { ...issuedCertificate, description: "A pair profile's encryption certificate (the signing one is the main certificate): it certifies the key pair the key management centre made and escrowed" },
  envelope: {
    type: "object", additionalProperties: false, description: "A pair profile's encryption private key, enveloped for the new signing key of the CSR: only that key opens it (docs/envelopes.md)",
    properties: {
      format: { type: "string", enum: [...envelopeFormats], description: "for an SM2 signing key: GM/T 0016 ENVELOPEDKEYBLOB (388 octets, what SKF_ImportECCKeyPair takes); for an RSA one: cms-enveloped-data-v2, a CMS EnvelopedData (RFC 5652, DER) of the PKCS#8 private key, RSAES-OAEP (SHA-1) to the signing key, AES-256 key wrap with padding (RFC 5649), which a PKCS#11 token unwraps; cms-enveloped-data (RSAES-OAEP SHA-256, AES-256-CBC) only in an answer stored before version 2" },
      value: { type: "string", format: "byte", description: "base64" },
    },
    required: ["format", "value"],
  },
} as const;
const orderAnswer = {
  200: {
    type: "object", additionalProperties: true, description: "The order and its next step; once issued, the new certificate and, for a pair profile, the encryption certificate and its envelope",
    properties: { newCertificate: { ...issuedCertificate, properties: { ...issuedCertificate.properties, chainPem: { type: "string" } } }, ...pairProperties },
  },
} as const;
const recoveredKeys = {
  type: "array", description: "Only for the codes of a key recovery approved by two people: the holder's escrowed old encryption keys, each enveloped like `envelope` for the CSR's key, so that data encrypted to the old encryption certificates stays readable (docs/envelopes.md)",
  items: {
    type: "object", additionalProperties: false,
    properties: {
      escrowId: { type: "string" },
      spki: { type: "string", format: "byte", description: "the recovered key pair's public key (DER SubjectPublicKeyInfo, base64)" },
      envelope: pairProperties.envelope,
      recipientSpki: { type: "string", format: "byte", description: "when the request gave recoveredKeyRecipients: the recipient key (DER SubjectPublicKeyInfo, base64) this envelope is for; otherwise it is for the CSR's key" },
      certificate: { ...issuedCertificate, description: "The old encryption certificate that certifies this key, when the server issued it" },
    },
    required: ["escrowId", "spki", "envelope"],
  },
} as const;
const downloadAnswer = {
  201: {
    type: "object", additionalProperties: true, description: "The certificate, with its chain; for a pair profile also the encryption certificate and its envelope; for a key recovery's codes also the recovered keys",
    properties: { ...issuedCertificate.properties, subject: { type: "string" }, chainPem: { type: "string" }, ...pairProperties, recoveredKeys },
  },
} as const;

/** Every step after proof of possession: the order credential that proof answered. */
const credentialed = { security: [{ orderCredential: [] }] } as const;

/** The order credential of a request (`Authorization: Bearer uko1...`), or undefined. */
export function orderCredentialOf(req: FastifyRequest): string | undefined {
  const m = /^Bearer ([A-Za-z0-9._-]{1,200})$/.exec(req.headers.authorization ?? "");
  return m?.[1];
}

/** Answers that carry a credential or personal data are never stored by a cache. */
function private_(reply: FastifyReply): FastifyReply {
  return reply.header("cache-control", "no-store");
}

/**
 * The renewal API for the agent and the portal: one service call per
 * route; every rule lives in RenewalOrderService. Starting an order and
 * asking for a challenge need nothing; proof of possession answers the
 * order credential that every other step requires as
 * `Authorization: Bearer`. No route takes a PIN: the PIN stays in the agent.
 */
/*
 * Channels: "est" is bound to how the client authenticated (only the EST routes, over TLS with the
 * certificate being renewed, renew on the EST window), so this API refuses it. web, cli and mobile
 * all reach the server through the holder's own agent with the same proof of possession: the server
 * cannot tell them apart, so that claim is the holder's (docs/policies.md, "Channels").
 */
export function registerOrderRoutes(app: FastifyInstance, orders: RenewalOrderService, downloads: DownloadService): void {
  app.post<{ Body: { certId?: string; serial?: string; channel?: RenewalChannel } }>("/api/v1/orders", {
    schema: {
      tags: ["renewal"], summary: "Start or resume the renewal of a certificate: answers the order's id and the proof of possession it takes, nothing more",
      body: body({ certId: { type: "string", maxLength: 200 }, serial: { type: "string", maxLength: 64 }, channel: { type: "string", enum: ["web", "mobile", "cli"] } }),
    },
  }, async (req, reply) => {
    const serial = req.body.certId ? parseCertId(req.body.certId).serial : req.body.serial?.toLowerCase();
    if (!serial || !/^[0-9a-f]{2,42}$/.test(serial)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "give certId (RFC 9773) or serial (hex)" } });
    const started = await orders.start(serial, req.body.channel ?? "web", "holder");
    return private_(reply).status(started.resumed ? 200 : 201).send(started);
  });

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/challenge", {
    schema: { tags: ["renewal"], summary: "A fresh challenge, whether the order is open, and which keys may prove possession", params: orderId },
  }, async (req, reply) => private_(reply).send(await orders.challenge(req.params.id)));

  app.post<{ Params: { id: string }; Body: { challenge?: string; signature?: string; signer?: "certificate" | "new-key" } }>("/api/v1/orders/:id/possession", {
    schema: {
      tags: ["renewal"],
      summary: "Prove possession of the certificate's key (a signature over the challenge, or this certificate as TLS client certificate on the client-certificate port); answers the order and its credential",
      params: orderId,
      body: body({ challenge: { type: "string", maxLength: 200 }, signature: { type: "string", maxLength: 2048 }, signer: { type: "string", enum: ["certificate", "new-key"] } }),
    },
  }, async (req, reply) => {
    const { challenge, signature, signer } = req.body ?? {};
    if (signature !== undefined || challenge !== undefined) {
      if (!signature || !challenge) throw new UkeyError("REQUEST_INVALID", { params: { reason: "give both challenge and signature" } });
      const proof = { challenge, signature: Buffer.from(signature, "base64"), ...(signer ? { signer } : {}) };
      return private_(reply).send(await orders.provePossession(req.params.id, proof));
    }
    // No signature: the proof is the TLS client certificate, which only the client-certificate port asks for.
    const peer = peerCertificate(req);
    if (!peer) throw new UkeyError("REQUEST_INVALID", { params: { reason: "give challenge and signature, or connect with the certificate as TLS client certificate" } });
    return private_(reply).send(await orders.provePossessionByTls(req.params.id, peer, "holder"));
  });

  app.get<{ Params: { id: string } }>("/api/v1/orders/:id", { schema: { tags: ["renewal"], ...credentialed, params: orderId, response: orderAnswer } }, async (req, reply) =>
    private_(reply).send(await orders.get(req.params.id, orderCredentialOf(req))));

  app.post<{ Params: { id: string }; Body: { idType: string; idNumber: string } }>("/api/v1/orders/:id/identity", {
    schema: { tags: ["renewal"], ...credentialed, params: orderId, body: body({ idType: { type: "string", maxLength: 32 }, idNumber: { type: "string", maxLength: 40 } }, ["idType", "idNumber"]) },
  }, async (req, reply) => private_(reply).send(await orders.proveIdentity(req.params.id, orderCredentialOf(req), req.body.idType, req.body.idNumber)));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/code", { schema: { tags: ["renewal"], ...credentialed, params: orderId } }, async (req, reply) =>
    private_(reply).send(await orders.sendCode(req.params.id, orderCredentialOf(req), "holder")));

  app.post<{ Params: { id: string }; Body: { code: string } }>("/api/v1/orders/:id/code/verify", {
    schema: { tags: ["renewal"], ...credentialed, params: orderId, body: body({ code: { type: "string", pattern: "^\\s*\\d{6}\\s*$" } }, ["code"]) },
  }, async (req, reply) => private_(reply).send(await orders.verifyCode(req.params.id, orderCredentialOf(req), req.body.code)));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/step-up", { schema: { tags: ["renewal"], ...credentialed, params: orderId } }, async (req, reply) =>
    private_(reply).send(await orders.startStepUp(req.params.id, orderCredentialOf(req))));

  app.post<{ Params: { link: string }; Body: { idType: string; idNumber: string } }>("/api/v1/step-up/:link", {
    schema: {
      tags: ["renewal"], summary: "Approve step-up on a second device: the one-time link is the authority, the ID number the check",
      params: { type: "object", properties: { link: { type: "string", maxLength: 120 } }, required: ["link"] },
      body: body({ idType: { type: "string", maxLength: 32 }, idNumber: { type: "string", maxLength: 40 } }, ["idType", "idNumber"]),
    },
  }, async (req, reply) => private_(reply).send(await orders.approveStepUp(req.params.link, req.body.idType, req.body.idNumber)));

  app.post<{ Params: { id: string }; Body: { csr: string; tokenSerial?: string } }>("/api/v1/orders/:id/csr", {
    schema: { tags: ["renewal"], ...credentialed, params: orderId, body: body({ csr: { type: "string", maxLength: 16384 }, tokenSerial: { type: "string", maxLength: 64 } }, ["csr"]), response: orderAnswer },
  }, async (req, reply) => private_(reply).send(await orders.submitCsr(req.params.id, orderCredentialOf(req), req.body.csr, req.body.tokenSerial ?? null, "holder")));

  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/installed", { schema: { tags: ["renewal"], ...credentialed, params: orderId } }, async (req, reply) =>
    private_(reply).send(await orders.installed(req.params.id, orderCredentialOf(req), "holder")));
  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/complete", { schema: { tags: ["renewal"], ...credentialed, params: orderId } }, async (req, reply) =>
    private_(reply).send(await orders.complete(req.params.id, orderCredentialOf(req), "holder")));
  app.post<{ Params: { id: string } }>("/api/v1/orders/:id/cancel", { schema: { tags: ["renewal"], ...credentialed, params: orderId } }, async (req, reply) =>
    private_(reply).send(await orders.cancel(req.params.id, orderCredentialOf(req), "holder")));

  app.post<{ Body: { referenceNumber: string; authorizationCode: string; csr: string; tokenSerial?: string; recoveredKeyRecipients?: { spki: string; signature: string }[] } }>("/api/v1/downloads", {
    schema: {
      tags: ["renewal"], summary: "Download a certificate onto an empty key with a reference number and an authorization code",
      body: body({
        referenceNumber: { type: "string", maxLength: 32 }, authorizationCode: { type: "string", maxLength: 32 },
        csr: { type: "string", maxLength: 16384 }, tokenSerial: { type: "string", maxLength: 64 },
        recoveredKeyRecipients: {
          type: "array", maxItems: 64,
          description: "Only for a key recovery's codes (downloads/check tells how many keys it carries): one key per recovered key, made on the token " +
            "(an SKF key opens an envelope only into the container of the key it is for), each signing the bytes \"ukey-recovered-key-recipient\" NUL ‖ SHA-256(CSR DER) " +
            "(SM2 with the standard ID 1234567812345678; RSA PKCS#1 v1.5 SHA-256). Each recovered key is then enveloped for its own recipient instead of the CSR's key.",
          items: body({
            spki: { type: "string", format: "byte", maxLength: 2048, description: "DER SubjectPublicKeyInfo, base64" },
            signature: { type: "string", format: "byte", maxLength: 1024, description: "DER signature, base64" },
          }, ["spki", "signature"]),
        },
      }, ["referenceNumber", "authorizationCode", "csr"]),
      response: downloadAnswer,
    },
  }, async (req, reply) => {
    const recipients = req.body.recoveredKeyRecipients?.map((r) => ({ spki: Buffer.from(r.spki, "base64"), signature: Buffer.from(r.signature, "base64") }));
    return private_(reply).status(201).send(await downloads.download(req.body.referenceNumber, req.body.authorizationCode, req.body.csr, req.body.tokenSerial ?? null, "holder", recipients));
  });

  app.post<{ Body: { referenceNumber: string; authorizationCode: string } }>("/api/v1/downloads/check", {
    schema: {
      tags: ["renewal"], summary: "Check a reference number and authorization code before the key is used (a wrong code counts as in a download; nothing is consumed)",
      body: body({ referenceNumber: { type: "string", maxLength: 32 }, authorizationCode: { type: "string", maxLength: 32 } }, ["referenceNumber", "authorizationCode"]),
    },
  }, async (req, reply) => private_(reply).send(await downloads.check(req.body.referenceNumber, req.body.authorizationCode, "holder")));
}
