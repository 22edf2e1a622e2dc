import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { z } from "zod";
import { UkeyError, catalogue, parseKeyVendorTable, type ErrorCode, type ErrorParams, type KeyVendorTable } from "@ukey/policy";
import type { ServerConnection } from "./flows/flow-types.js";

/** The steps of a renewal order, as the server names them (renewal-order-service.ts). */
export type OrderStep = "possession" | "id-number" | "one-time-code" | "step-up" | "csr" | "install" | "complete";

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), "not a date");

const newCertificateSchema = z.object({
  serial: z.string(), certId: z.string(), notBefore: isoDate, notAfter: isoDate, pem: z.string(), chainPem: z.string(),
});

/** A pair profile's encryption certificate (beside the signing one). */
const encryptionCertificateSchema = z.object({ serial: z.string(), certId: z.string(), notBefore: isoDate, notAfter: isoDate, pem: z.string() });
/** An encryption private key enveloped for the new signing key: "gmt0016-enveloped-key-blob" (SM2) or "cms-enveloped-data-v2" (RSA), base64 (docs/envelopes.md). */
const envelopeSchema = z.object({ format: z.string(), value: z.string().min(1) });

/** A pair's encryption half as the server delivers it with the signing certificate. */
export type EncryptionHalf = { encryptionCertificate: z.infer<typeof encryptionCertificateSchema>; envelope: z.infer<typeof envelopeSchema> };

const orderSchema = z.object({
  id: z.string().min(1),
  state: z.enum(["created", "verified", "key-submitted", "issued", "installed", "completed", "failed", "cancelled"]),
  channel: z.string(),
  nextStep: z.enum(["possession", "id-number", "one-time-code", "step-up", "csr", "install", "complete"]).nullable(),
  certificate: z.object({ serial: z.string(), certId: z.string(), subject: z.string(), notAfter: isoDate }),
  requirements: z.object({ possession: z.literal(true), idNumber: z.boolean(), oneTimeCode: z.enum(["sms", "email"]).nullable(), stepUp: z.boolean() }),
  done: z.array(z.string()),
  subject: z.string(),
  keyAlgorithms: z.array(z.enum(["p256", "p384", "rsa2048", "rsa3072", "rsa4096", "sm2"])).min(1),
  idType: z.string().optional(),
  challenge: z.object({ value: z.string(), expiresAt: isoDate }).optional(),
  codeSentTo: z.string().optional(),
  codeResendAt: isoDate.optional(),
  newCertificate: newCertificateSchema.optional(),
  encryptionCertificate: encryptionCertificateSchema.optional(),
  envelope: envelopeSchema.optional(),
  failure: z.string().optional(),
  failedAttempts: z.number().int().optional(),
  failedUntil: z.string().optional(),
});

/** A renewal order as the server shows it to the key's holder (after proof of possession). */
export type OrderView = z.infer<typeof orderSchema>;

/** The keys that may prove possession for an order: the certificate being renewed, or the order's new certificate once issued. */
export type PossessionSigner = "certificate" | "new-key";

const challengeSchema = z.object({
  id: z.string().min(1),
  open: z.boolean(),
  certificateSerial: z.string(),
  signers: z.array(z.enum(["certificate", "new-key"])),
  challenge: z.object({ value: z.string().min(1), expiresAt: isoDate }),
  message: z.string(),
});

/** What anybody who names an order learns: whether it is open, and the proof it takes (POST /api/v1/orders/{id}/challenge). */
export type OrderChallenge = z.infer<typeof challengeSchema>;

const startedSchema = challengeSchema.extend({ resumed: z.boolean(), nextStep: z.literal("possession") });

/** The answer to starting or resuming a renewal: the order's id and the proof it takes. */
export type OrderStarted = z.infer<typeof startedSchema>;

const provenSchema = orderSchema.extend({ credential: z.object({ token: z.string().min(1), expiresAt: isoDate }).optional() });
const stepUpSchema = z.object({ approvalUrl: z.string().min(1), expiresAt: isoDate });

const renewalInfoSchema = z.object({
  suggestedWindow: z.object({ start: isoDate, end: isoDate }),
  state: z.enum(["not-yet", "open", "open-step-up", "closed", "revoked", "superseded"]),
  channel: z.string(),
  opensAt: isoDate.nullable().optional(),
  closesAt: isoDate.nullable().optional(),
  noticeFrom: isoDate,
  stepUpFrom: isoDate.nullable().optional(),
  lockedUntil: isoDate.nullable().optional(),
  login: z.object({ allowed: z.boolean(), refusedFrom: isoDate.nullable() }).optional(),
  explanation: z.object({ "zh-CN": z.string(), en: z.string() }),
  /** What a renewal now would issue; absent from a server older than the preview (seed 004 §3.5). */
  renewal: z.object({
    notBefore: isoDate, notAfter: isoDate, keyAlgorithms: z.array(z.string()), pair: z.boolean(),
    profile: z.object({ "zh-CN": z.string(), en: z.string() }),
  }).nullable().optional(),
  /** No subject: the route is public, and the agent reads the subject from the certificate on the key. */
  certificate: z.object({
    serial: z.string(), notBefore: isoDate, notAfter: isoDate, status: z.string(),
    revocationReason: z.string().nullable().optional(),
  }).passthrough(),
}).passthrough();

/** The server's renewal advice for one certificate (GET /api/v1/renewal-info/{certId}). */
export type RenewalInfo = z.infer<typeof renewalInfoSchema>;

const downloadSchema = newCertificateSchema.extend({
  subject: z.string(),
  encryptionCertificate: encryptionCertificateSchema.optional(),
  envelope: envelopeSchema.optional(),
  /** A recovery's old encryption keys, each enveloped for the CSR's key, with their certificates. */
  recoveredKeys: z.array(z.object({
    escrowId: z.string(), spki: z.string(), envelope: envelopeSchema, certificate: encryptionCertificateSchema.optional(),
    /** The recipient key the envelope is for, when the download gave recipient keys (else it is for the CSR's key). */
    recipientSpki: z.string().optional(),
  }).passthrough()).optional(),
});

const downloadCheckSchema = z.object({
  valid: z.literal(true),
  certificate: z.object({
    subject: z.string(), notBefore: isoDate, notAfter: isoDate, keyAlgorithms: z.array(z.string()), pair: z.boolean(),
    profile: z.object({ "zh-CN": z.string(), en: z.string() }),
  }).optional(),
  /** How many recovered old encryption keys the download carries (absent from an older server: none). */
  recoveredKeys: z.number().int().min(0).max(64).optional(),
}).passthrough();

/** POST /api/v1/downloads/check: the codes are good, and the certificate they authorize. */
export type DownloadCheck = z.infer<typeof downloadCheckSchema>;

/** What a download with two codes returns. */
export type DownloadAnswer = z.infer<typeof downloadSchema>;

const redownloadStartedSchema = z.object({ challengeId: z.string(), expiresAt: z.string(), resendAt: z.string(), sentTo: z.string() });
const redownloadVerifiedSchema = z.object({
  authorizations: z.array(z.object({
    referenceNumber: z.string(), authorizationCode: z.string(), expiresAt: z.string(),
    certificate: z.object({ serial: z.string(), subjectDn: z.string(), notAfter: z.string(), profileId: z.string() }),
  })),
});
export type RedownloadStarted = z.infer<typeof redownloadStartedSchema>;
export type RedownloadAuthorization = z.infer<typeof redownloadVerifiedSchema>["authorizations"][number];

const problemSchema = z.object({
  code: z.string(),
  message: z.object({ "zh-CN": z.string(), en: z.string() }).optional(),
  params: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
  detail: z.string().optional(),
}).passthrough();

/** Called when the answer's headers have arrived and before its body is read (fault injection for tests). */
export type OnAnswer = () => void;

/**
 * A small typed client of the server's renewal API (docs/renewal-api.md).
 * HTTP or HTTPS (an extra CA PEM trusted besides the system's); answers are
 * checked against their schema. Every method throws UkeyError: the
 * server's own code for a problem document (params recovered from its
 * message), SERVER_UNREACHABLE when no answer came, SERVER_CERT_UNTRUSTED
 * for a TLS certificate that does not verify, SERVER_RESPONSE_INVALID for
 * an answer that is not what the API promises.
 */
export class ServerClient {
  private readonly base: URL;
  /** The order credentials this client's proofs of possession got, by order id; never written anywhere. */
  private readonly credentials = new Map<string, string>();
  /** The server's Date header of the last answer, and the local time it arrived (for the clock check). */
  lastDate: { server: Date; local: Date } | undefined;

  constructor(private readonly connection: ServerConnection, private readonly timeoutMs = 30_000) {
    let base: URL;
    try {
      base = new URL(connection.url);
    } catch (cause) {
      throw new UkeyError("CLI_USAGE", { params: { reason: `the server address is not a URL: ${connection.url}` }, cause });
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new UkeyError("CLI_USAGE", { params: { reason: `the server address must start with https:// or http:// (got ${connection.url})` } });
    }
    this.base = base;
  }

  /** The server's address, as shown to the holder. */
  get url(): string {
    return this.base.origin;
  }

  /** Starts the renewal of a certificate or finds its open order: its id and the proof of possession it takes. */
  async startOrder(certId: string, channel: "web" | "cli"): Promise<OrderStarted> {
    return this.parse(startedSchema, (await this.call("POST", "/api/v1/orders", { certId, channel })).body);
  }

  /** The order, with the credential of this client's last proof of possession. */
  async getOrder(id: string): Promise<OrderView> {
    return this.parse(orderSchema, (await this.call("GET", `/api/v1/orders/${encodeURIComponent(id)}`, undefined, undefined, id)).body);
  }

  /** A fresh challenge of an order, whether it is still open, and which keys may sign. */
  async challenge(id: string): Promise<OrderChallenge> {
    return this.parse(challengeSchema, (await this.call("POST", `/api/v1/orders/${encodeURIComponent(id)}/challenge`, {})).body);
  }

  /**
   * Sends a proof of possession: `signature` over possessionMessage(order, challenge) by `signer`'s key.
   * The credential the server answers is kept for every later step of this order (and replaces an older one).
   */
  async provePossession(id: string, challenge: string, signature: Uint8Array, signer: PossessionSigner = "certificate"): Promise<OrderView> {
    const r = await this.call("POST", `/api/v1/orders/${encodeURIComponent(id)}/possession`, { challenge, signature: Buffer.from(signature).toString("base64"), signer });
    const proven = this.parse(provenSchema, r.body);
    if (proven.credential) this.credentials.set(id, proven.credential.token);
    const { credential: _secret, ...view } = proven;
    return view;
  }

  /** Whether this client holds a credential for the order (proved possession in this run). */
  hasCredential(id: string): boolean {
    return this.credentials.has(id);
  }

  async proveIdentity(id: string, idType: string, idNumber: string): Promise<OrderView> {
    return this.order(id, "identity", { idType, idNumber });
  }

  async sendCode(id: string): Promise<OrderView> {
    return this.order(id, "code", {});
  }

  async verifyCode(id: string, code: string): Promise<OrderView> {
    return this.order(id, "code/verify", { code });
  }

  async startStepUp(id: string): Promise<z.infer<typeof stepUpSchema>> {
    return this.parse(stepUpSchema, (await this.call("POST", `/api/v1/orders/${encodeURIComponent(id)}/step-up`, {}, undefined, id)).body);
  }

  async submitCsr(id: string, csr: string, tokenSerial: string, onAnswer?: OnAnswer): Promise<OrderView> {
    return this.order(id, "csr", { csr, tokenSerial }, onAnswer);
  }

  async installed(id: string): Promise<OrderView> {
    return this.order(id, "installed", {});
  }

  async complete(id: string): Promise<OrderView> {
    return this.order(id, "complete", {});
  }

  async renewalInfo(certId: string, channel: "web" | "cli"): Promise<RenewalInfo> {
    const r = await this.call("GET", `/api/v1/renewal-info/${encodeURIComponent(certId)}?channel=${channel}`);
    return this.parse(renewalInfoSchema, r.body);
  }

  /** Checks the two codes of a download before the key is used (POST /api/v1/downloads/check); throws the server's refusal. */
  /** The codes are good: the certificate they authorize, when the server says (a server older than the preview answers only {valid: true}). */
  async checkDownloadCodes(referenceNumber: string, authorizationCode: string): Promise<DownloadCheck> {
    const r = await this.call("POST", "/api/v1/downloads/check", { referenceNumber, authorizationCode });
    return this.parse(downloadCheckSchema, r.body);
  }

  /** Self-service re-download, step 1: the same answer whether or not the customer number and ID number match a holder. */
  async redownloadStart(holderId: string, idNumber: string): Promise<RedownloadStarted> {
    return this.parse(redownloadStartedSchema, (await this.call("POST", "/api/v1/redownload", { holderId, idNumber })).body);
  }

  /** Self-service re-download, step 2: the SMS code; the two codes of a download per certificate that may be downloaded again. */
  async redownloadVerify(challengeId: string, code: string): Promise<RedownloadAuthorization[]> {
    return this.parse(redownloadVerifiedSchema, (await this.call("POST", "/api/v1/redownload/verify", { challengeId, code })).body).authorizations;
  }

  async download(referenceNumber: string, authorizationCode: string, csr: string, tokenSerial: string, onAnswer?: OnAnswer,
    recoveredKeyRecipients?: { spki: string; signature: string }[]): Promise<DownloadAnswer> {
    const r = await this.call("POST", "/api/v1/downloads", {
      referenceNumber, authorizationCode, csr, tokenSerial, ...(recoveredKeyRecipients?.length ? { recoveredKeyRecipients } : {}),
    }, onAnswer);
    return this.parse(downloadSchema, r.body);
  }

  /** A signed document the institution publishes beside its installers (not yet verified: see institution-config.ts). */
  async distributionDocument(name: "agent-config.json" | "manifest.json"): Promise<unknown> {
    return (await this.call("GET", `/downloads/${name}`)).body;
  }

  /**
   * The institution's key vendor table (GET /api/v1/key-vendors: the
   * built-in table with the operator's `keyVendors` applied), validated as
   * the server's own configuration is. SERVER_RESPONSE_INVALID when it does
   * not parse; SERVER_* when the server cannot be reached.
   */
  async keyVendors(): Promise<KeyVendorTable> {
    const r = await this.call("GET", "/api/v1/key-vendors");
    const body = this.parse(z.object({ keyVendors: z.array(z.unknown()) }), r.body);
    try {
      return parseKeyVendorTable(body.keyVendors, "the server's keyVendors");
    } catch (e) {
      throw this.invalid(`keyVendors: ${e instanceof UkeyError ? String(e.params.reason) : String(e)}`);
    }
  }

  /** Fetches the OpenAPI document: proves the address is a ukey-renew server and records its Date header. */
  async ping(): Promise<void> {
    const r = await this.call("GET", "/api/v1/openapi.json");
    this.parse(z.object({ openapi: z.string(), paths: z.record(z.string(), z.unknown()) }).passthrough(), r.body);
  }

  private async order(id: string, step: string, body: unknown, onAnswer?: OnAnswer): Promise<OrderView> {
    const r = await this.call("POST", `/api/v1/orders/${encodeURIComponent(id)}/${step}`, body, onAnswer, id);
    return this.parse(orderSchema, r.body);
  }

  private parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
    const r = schema.safeParse(body);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw this.invalid(`unexpected answer${issue ? ` at ${issue.path.join(".") || "(root)"}: ${issue.message}` : ""}`);
    }
    return r.data;
  }

  private invalid(detail: string): UkeyError {
    return new UkeyError("SERVER_RESPONSE_INVALID", { params: { server: this.url }, detail });
  }

  /** `orderId`: the order whose credential authorizes the call (sent as Authorization: Bearer). */
  private call(method: "GET" | "POST", path: string, body?: unknown, onAnswer?: OnAnswer, orderId?: string): Promise<{ status: number; body: unknown }> {
    const url = new URL(path, this.base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const credential = orderId === undefined ? undefined : this.credentials.get(orderId);
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, {
        method,
        headers: {
          accept: "application/json",
          ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
          ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        },
        ...(url.protocol === "https:" && this.connection.caPem ? { ca: this.connection.caPem } : {}),
        timeout: this.timeoutMs,
      }, (res) => {
        onAnswer?.();
        this.read(res).then(resolve, reject);
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on("error", (err: NodeJS.ErrnoException) => reject(this.networkError(err)));
      req.end(payload);
    });
  }

  private async read(res: IncomingMessage): Promise<{ status: number; body: unknown }> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res) {
      size += (c as Buffer).length;
      // No answer of the API comes near this; a server streaming without end is not ours.
      if (size > 4 * 1024 * 1024) throw this.invalid("answer larger than 4 MiB");
      chunks.push(c as Buffer);
    }
    const date = res.headers.date ? new Date(res.headers.date) : undefined;
    if (date && !Number.isNaN(date.getTime())) this.lastDate = { server: date, local: new Date() };
    const status = res.statusCode ?? 0;
    const text = Buffer.concat(chunks).toString("utf8");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw this.invalid(`HTTP ${status}, ${res.headers["content-type"] ?? "no content type"}, not JSON: ${JSON.stringify(text.slice(0, 80))}`);
    }
    if (status >= 200 && status < 300) return { status, body: json };
    const problem = problemSchema.safeParse(json);
    if (!problem.success) throw this.invalid(`HTTP ${status} without a problem document`);
    throw this.fromProblem(problem.data, status);
  }

  /**
   * The server's problem document as our UkeyError: same code and params
   * (read back from the rendered message when an older server sends none).
   */
  private fromProblem(p: z.infer<typeof problemSchema>, status: number): UkeyError {
    if (!(p.code in catalogue)) return this.invalid(`HTTP ${status} with unknown code ${p.code}`);
    const code = p.code as ErrorCode;
    const params = p.params ?? (p.message ? paramsFromMessage(catalogue[code].en, p.message.en) : {});
    return new UkeyError(code, { params, ...(p.detail ? { detail: p.detail } : {}) });
  }

  private networkError(err: NodeJS.ErrnoException): UkeyError {
    if (err instanceof UkeyError) return err;
    const code = err.code ?? "";
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME|ALTNAME/.test(code)) {
      return new UkeyError("SERVER_CERT_UNTRUSTED", { params: { server: this.url, reason: code }, cause: err });
    }
    return new UkeyError("SERVER_UNREACHABLE", { params: { server: this.url }, detail: code || err.message, cause: err });
  }
}

/**
 * Recovers a catalogue message's parameters from its rendered text, so that
 * the holder sees the server's dates ("opens on 2031-09-04") in either
 * language. Returns {} when the text does not follow the template.
 */
export function paramsFromMessage(template: string, rendered: string): ErrorParams {
  const names: string[] = [];
  const pattern = template.split(/(\{\w+\})/).map((part) => {
    const m = /^\{(\w+)\}$/.exec(part);
    if (!m) return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    names.push(m[1]!);
    return "(.*?)";
  }).join("");
  const m = new RegExp(`^${pattern}$`, "s").exec(rendered);
  if (!m) return {};
  const params: ErrorParams = {};
  names.forEach((n, i) => { params[n] = m[i + 1]!; });
  return params;
}
