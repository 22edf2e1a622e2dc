/**
 * JSON schemas of the admin API: request validation, response
 * serialisation (only the fields named here ever leave the server) and
 * the OpenAPI document are all made from them.
 */

const str = (maxLength = 200) => ({ type: "string", maxLength }) as const;
const millis = { type: "integer", description: "epoch milliseconds" } as const;
const nullable = <T extends Record<string, unknown>>(s: T) => ({ ...s, nullable: true }) as const;

/** A request body object: unknown fields are refused. */
export const body = (properties: Record<string, unknown>, required: string[] = []) =>
  ({ type: "object", additionalProperties: false, properties, required }) as const;

/** A path parameter object. */
export const params = (...names: string[]) =>
  ({ type: "object", properties: Object.fromEntries(names.map((n) => [n, str(128)])), required: names }) as const;

/** Page parameters every list takes. */
export const page = {
  limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 },
  offset: { type: "integer", minimum: 0, maximum: 1_000_000, default: 0 },
} as const;

/** RFC 9457 problem document with the catalogue's fields. */
export const problemSchema = {
  type: "object",
  properties: {
    type: str(), title: str(1000), status: { type: "integer" }, code: str(64), kind: str(32),
    message: { type: "object", properties: { "zh-CN": str(2000), en: str(2000) } },
    remedy: { type: "object", properties: { "zh-CN": str(2000), en: str(2000) } },
    // The values in the texts (a port, a date), as http-errors.ts writes them: a response schema drops what it does not list.
    params: { type: "object", additionalProperties: { type: ["string", "number"] } },
    detail: str(2000),
  },
} as const;

export const operatorSchema = {
  type: "object",
  properties: {
    id: str(64), role: { type: "string", enum: ["admin", "operator", "auditor"] }, certificatePinned: { type: "boolean" },
    disabled: { type: "boolean" }, createdAt: millis, updatedAt: millis,
    signInPaused: {
      type: "object", nullable: true, description: "in lists: addresses whose password sign-ins to this account are paused now (POST /operators/{id}/unlock lifts them)",
      properties: { clients: { type: "integer" }, until: millis },
    },
  },
} as const;

export const holderSchema = {
  type: "object",
  properties: {
    id: str(64), kind: { type: "string", enum: ["person", "organisation"] }, name: str(), idType: str(32),
    idMasked: { type: "string", description: "the ID number masked; the number itself is never stored" },
    phone: nullable(str(32)), email: nullable(str()), organisationId: nullable(str(64)), createdAt: millis,
  },
} as const;

export const certificateSchema = {
  type: "object",
  properties: {
    serial: str(64), certId: { type: "string", description: "RFC 9773 certificate identifier" }, issuerKeyId: str(128), issuerDn: str(1000),
    subjectDn: str(1000), sans: { type: "array", items: str(1000) }, notBefore: millis, notAfter: millis,
    status: { type: "string", enum: ["pending", "active", "revoked", "superseded", "expired", "abandoned"] },
    revocationReason: nullable(str(64)), revokedAt: nullable(millis), spkiSha256: str(64), kind: { type: "string", enum: ["hardware", "file"] },
    tokenSerial: nullable(str(64)), holderId: str(64), profileId: str(64), imported: { type: "boolean" }, createdAt: millis, updatedAt: millis,
    pem: { type: "string", description: "only when one certificate is asked for" },
    pair: {
      type: "object", additionalProperties: false,
      description: "A signing + encryption certificate pair's half: this certificate's role, the other's serial, and the escrow (its id only, never key material) of the encryption key",
      properties: { role: { type: "string", enum: ["signing", "encryption"] }, otherSerial: str(64), escrowId: str(64) },
      required: ["role", "otherSerial", "escrowId"],
    },
    renewalLockedUntil: { ...nullable(millis), description: "in lists: while failed orders pause its online renewal (RENEWAL_LOCKED), when the pause ends; else null" },
  },
} as const;

export const enrolmentStatuses = ["open", "used", "revoked", "expired", "locked"] as const;

export const enrolmentSchema = {
  type: "object",
  properties: {
    id: str(64), holderId: str(64), profileId: str(64), referenceNumber: str(16), expiresAt: millis, attempts: { type: "integer" },
    maxAttempts: { type: "integer" }, status: { type: "string", enum: enrolmentStatuses }, createdAt: millis, updatedAt: millis,
  },
} as const;

export const kmcRecoveryStatuses = ["pending", "released", "rejected", "delivered"] as const;

export const kmcRecoverySchema = {
  type: "object",
  properties: {
    id: str(64), holderId: str(64), profileId: str(64), escrowIds: { type: "array", items: str(64) }, reason: str(500),
    status: { type: "string", enum: kmcRecoveryStatuses }, requestedBy: str(64), requestedAt: millis, expiresAt: millis,
    decidedBy: { ...str(64), nullable: true }, decidedAt: { ...millis, nullable: true }, enrolmentId: { ...str(64), nullable: true },
    deliveredSpkiSha256: { ...str(64), nullable: true }, deliveredAt: { ...millis, nullable: true }, updatedAt: millis,
    expired: { type: "boolean", description: "pending and past expiresAt: it can no longer be approved" },
  },
} as const;

export const kmcEscrowSchema = {
  type: "object",
  description: "An escrowed encryption key as operators see it: never the wrapped key",
  properties: { id: str(64), holderId: str(64), algorithm: str(16), spkiSha256: str(64), masterKeyId: str(16), createdAt: millis },
} as const;

export const orderStates = ["created", "verified", "key-submitted", "issued", "installed", "completed", "failed", "cancelled", "expired"] as const;

export const orderSchema = {
  type: "object",
  properties: {
    id: str(64), certificateSerial: nullable(str(64)), holderId: str(64), profileId: str(64), state: { type: "string", enum: orderStates },
    channel: str(32), newSerial: nullable(str(64)), createdAt: millis, updatedAt: millis,
    renewalLockedUntil: { ...nullable(millis), description: "in lists, for a failed order: while it still pauses its certificate's online renewal, when the pause ends; else null" },
    // Listed field by field: the order's secrets (the credential's and codes' hashes, step-up and challenge state) never leave it.
    data: {
      type: "object", additionalProperties: false, description: "verification progress (never a code, a credential or an ID number)",
      properties: {
        requirements: { type: "object", additionalProperties: true },
        done: { type: "object", additionalProperties: { type: "integer" } },
        idAttempts: { type: "integer" },
        code: { type: "object", additionalProperties: false, properties: { to: str(64), sentAt: millis, expiresAt: millis, attempts: { type: "integer" }, used: { type: "boolean" } } },
        csrSpkiSha256: str(64),
        failure: str(64),
      },
    },
  },
} as const;

export const outboxSchema = {
  type: "object",
  properties: {
    id: str(64), channel: { type: "string", enum: ["sms", "email"] }, transport: str(32), recipient: { type: "string", description: "masked" },
    purpose: str(32), holderId: nullable(str(64)), redactedText: { type: "string", description: "every secret replaced by ******" },
    status: { type: "string", enum: ["pending", "queued", "sent", "failed"] }, attempts: { type: "integer" }, lastError: nullable(str(2000)),
    nextAttemptAt: nullable(millis), createdAt: millis, sentAt: nullable(millis),
  },
} as const;

export const auditEntrySchema = {
  type: "object",
  properties: {
    seq: { type: "integer" }, at: millis, actor: str(), action: str(), subjectType: str(), subjectId: str(),
    data: { type: "object", additionalProperties: true }, prevHash: str(64), hash: str(64),
  },
} as const;

/** `{ <key>: [item] }` */
export const listOf = (key: string, item: unknown) =>
  ({ type: "object", properties: { [key]: { type: "array", items: item } } }) as const;
