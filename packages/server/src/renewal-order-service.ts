import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import { derToPem, encodeName, nameToString, type SubjectSpec, type VerifiedCsr } from "@ukey/ca";
import {
  UkeyError, evaluate, renewalRefusal, validityFor,
  type CertificateProfile, type Clock, type RenewalChannel,
} from "@ukey/policy";
import type { CertificateRecord, HolderRecord, OrderState, Repositories, RenewalOrderRecord, Store } from "@ukey/store";
import { formatCertId } from "./cert-id.js";
import { formatDn } from "./ca-runtime.js";
import { hashIdNumber } from "./holder-identity.js";
import { newOrderId } from "./order-id.js";
import type { IssuanceService } from "./issuance-service.js";
import type { ProfileCache } from "./profile-cache.js";
import { SignatureVerifier } from "./signature-verifier.js";
import { subjectFor } from "./issuance-service.js";

/** A message to the holder's phone or e-mail; the delivery channels implement it. */
export interface CodeMessage {
  channel: "sms" | "email";
  to: string;
  subject: { "zh-CN": string; en: string };
  text: string;
  redactedText: string;
  purpose: "otp";
  holderId?: string;
}

/** Sends one-time codes; see src/delivery for the outbox, webhook and SMTP senders. */
export interface CodeSenders {
  sms: { send(m: CodeMessage): Promise<unknown> };
  email: { send(m: CodeMessage): Promise<unknown> };
}

/** The steps of a renewal, in the order the holder does them. */
export type OrderStep = "possession" | "id-number" | "one-time-code" | "step-up" | "csr" | "install" | "complete";

interface OrderData {
  requirements: { idNumber: boolean; oneTimeCode: "sms" | "email" | null; stepUp: boolean };
  done: Partial<Record<"possession" | "idNumber" | "oneTimeCode" | "stepUp", number>>;
  challenge?: { value: string; expiresAt: number };
  idAttempts: number;
  code?: { hash: string; expiresAt: number; sentAt: number; attempts: number; to: string; used: boolean };
  stepUp?: { tokenHash: string; expiresAt: number };
  csrSpkiSha256?: string;
  failure?: string;
}

/** What the portal and the agent see of an order. */
export interface OrderView {
  id: string;
  state: OrderState;
  channel: string;
  nextStep: OrderStep | null;
  certificate: { serial: string; certId: string; subject: string; notAfter: string };
  requirements: OrderData["requirements"] & { possession: true };
  done: string[];
  /** The subject the new certificate will have; a CSR must ask for this or for nothing. */
  subject: string;
  /** The type of ID on record (resident-id, passport ...), when the ID number or step-up is asked: the number alone is asked of the holder. */
  idType?: string;
  keyAlgorithms: readonly string[];
  /** The challenge to sign for proof of possession, while one is outstanding (see possessionMessage). */
  challenge?: { value: string; expiresAt: string };
  codeSentTo?: string;
  codeResendAt?: string;
  newCertificate?: { serial: string; certId: string; notBefore: string; notAfter: string; pem: string; chainPem: string };
  failure?: string;
}

const challengeTtlMs = 5 * 60_000;
const codeTtlMs = 5 * 60_000;
const codeResendMs = 60_000;
const maxCodeAttempts = 5;
const maxIdAttempts = 5;
const stepUpTtlMs = 10 * 60_000;
const failureLockMs = 24 * 3_600_000;

/** The exact bytes a proof of possession signs: a fixed prefix, the order and the challenge, so a signature can be reused for nothing else. */
export function possessionMessage(orderId: string, challenge: string): Buffer {
  return Buffer.from(`ukey-renew possession v1\n${orderId}\n${challenge}`, "utf8");
}

/** Phone "15900000005" → "159*****005"; shown so the holder knows where the code went (seed 000 shows 15*****5). */
export function maskPhone(phone: string): string {
  const d = phone.replace(/\D/g, "");
  if (d.length < 7) return "*".repeat(d.length);
  return `${d.slice(0, 3)}${"*".repeat(d.length - 6)}${d.slice(-3)}`;
}

/** E-mail "zhangsan@example.com" → "z*******@example.com". */
export function maskEmail(email: string): string {
  const [local = "", domain = ""] = email.split("@");
  return `${local.slice(0, 1)}${"*".repeat(Math.max(1, local.length - 1))}@${domain}`;
}

type OrderStore = Pick<Store, "transaction" | "certificates" | "holders" | "profiles" | "orders">;

/**
 * Renewal orders: the RA's decision, step by step, persisted so that any
 * server instance can take the next step and every step can be repeated.
 *
 * created → verified (possession, then ID number / one-time code / step-up
 * as the profile asks) → key-submitted (a CSR for a new key) → issued (in
 * the transaction that stores the certificate) → installed (the agent read
 * it back from the key) → completed (the old certificate superseded as the
 * profile says). Also failed (too many wrong answers) and cancelled.
 *
 * One open order per certificate: starting again returns the open order
 * with its next step, never a bare "already applied" (seed 001's 0116).
 * An issued certificate is delivered again on request; a new key after an
 * issued one (the old key was lost with the token) revokes the undelivered
 * certificate and issues anew.
 */
export class RenewalOrderService {
  private readonly verifier: SignatureVerifier;

  constructor(private readonly deps: {
    store: OrderStore;
    issuance: IssuanceService;
    clock: Clock;
    idKey: Buffer;
    institution: { name: string; country: string };
    chainPem: string;
    senders?: CodeSenders;
    /** Base URL of the portal, for step-up approval links. */
    publicUrl: string;
    profiles: ProfileCache;
    /** Checks possession proofs and CSRs; one that never leaves this thread when not given. */
    verifier?: SignatureVerifier;
  }) {
    this.verifier = deps.verifier ?? new SignatureVerifier({ offloadAbove: Infinity });
  }

  /**
   * Starts (or resumes) the renewal of a certificate on a channel.
   * @throws UkeyError CERT_NOT_FOUND, CERT_REVOKED, CERT_SUPERSEDED, RENEWAL_NOT_YET_OPEN,
   *   RENEWAL_WINDOW_CLOSED, RENEWAL_CHANNEL_NOT_OFFERED, PROFILE_NOT_FOUND, HOLDER_NOT_FOUND.
   */
  async start(serial: string, channel: RenewalChannel, actor: string): Promise<OrderView> {
    const now = this.deps.clock.now();
    const cert = await this.deps.store.certificates.get(serial);
    if (!cert || cert.der === null) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
    const open = await this.deps.store.orders.findOpenForCertificate(serial);
    if (open) return this.view(open);
    // An order that failed on wrong answers locks its certificate for a day: five guesses a day, not per order.
    const lastFailure = await this.deps.store.orders.lastFailedAt(serial);
    if (lastFailure !== undefined && now.getTime() - lastFailure < failureLockMs) throw new UkeyError("RENEWAL_LOCKED", { params: { until: new Date(lastFailure + failureLockMs).toISOString() } });
    const profile = await this.profile(cert.profileId);
    const e = evaluate({ notBefore: cert.notBefore, notAfter: cert.notAfter, status: cert.status, revokedAt: cert.revokedAt }, profile, channel, now);
    const refusal = renewalRefusal(e, { serial, stepUpVerified: true });
    if (refusal) throw refusal;
    const at = now.getTime();
    const data: OrderData = {
      requirements: { idNumber: profile.verification.idNumber, oneTimeCode: profile.verification.oneTimeCode, stepUp: e.state === "open-step-up" },
      done: {},
      idAttempts: 0,
      // The first challenge comes with the order: one round trip less for the agent.
      challenge: { value: randomBytes(32).toString("base64url"), expiresAt: at + challengeTtlMs },
    };
    const order: RenewalOrderRecord = {
      id: newOrderId(at), certificateSerial: serial, holderId: cert.holderId, profileId: cert.profileId, state: "created",
      channel, newSerial: null, data: data as unknown as Record<string, unknown>, createdAt: at, updatedAt: at,
    };
    try {
      await this.deps.store.transaction(async (r) => {
        await r.orders.insert(order);
        await r.audit.append({ at, actor, action: "order.created", subjectType: "order", subjectId: order.id, data: { serial, channel, state: e.state } });
      });
    } catch (err) {
      // Two starts at once: the other one won; answer with its order.
      if (err instanceof UkeyError && err.code === "ORDER_ALREADY_OPEN") {
        const winner = await this.deps.store.orders.findOpenForCertificate(serial);
        if (winner) return this.view(winner);
      }
      throw err;
    }
    return this.view(order, { cert });
  }

  /** The order with its next step. @throws UkeyError ORDER_NOT_FOUND. */
  async get(orderId: string): Promise<OrderView> {
    return this.view(await this.load(orderId));
  }

  /** A fresh challenge for the current key to sign (5 minutes, once). */
  async challenge(orderId: string): Promise<{ challenge: string; expiresAt: string; message: string }> {
    const value = randomBytes(32).toString("base64url");
    const at = this.deps.clock.now().getTime();
    await this.update(orderId, ["created"], (d) => { d.challenge = { value, expiresAt: at + challengeTtlMs }; });
    return { challenge: value, expiresAt: new Date(at + challengeTtlMs).toISOString(), message: possessionMessage(orderId, value).toString("base64") };
  }

  /**
   * Checks the current key's signature over possessionMessage(order, challenge).
   * Allowed after expiry while the window is open; never for a revoked certificate.
   * @throws UkeyError CHALLENGE_INVALID, POSSESSION_PROOF_FAILED, CERT_REVOKED.
   */
  async provePossession(orderId: string, signatureB64: string): Promise<OrderView> {
    const signature = Buffer.from(signatureB64, "base64");
    // The signature is checked before the step's transaction, against the challenge as read now, so
    // that no transaction waits for it; the step then takes the result only if that challenge is
    // still the order's (single use: a newer challenge makes this proof worthless).
    const before = await this.load(orderId);
    const asked = (before.data as unknown as OrderData).challenge;
    let valid = false;
    if (asked && asked.expiresAt >= this.deps.clock.now().getTime() && before.state === "created") {
      const cert = await this.certificateOf(before);
      valid = await this.verifier.possessionValid(cert.der!, possessionMessage(before.id, asked.value), signature);
    }
    return this.step(orderId, "possession", async (o, d, cert, at) => {
      if (cert.revokedAt !== null) throw new UkeyError("CERT_REVOKED", { params: { serial: cert.serial } });
      const c = d.challenge;
      delete d.challenge; // single use, whatever the outcome
      if (!c || c.expiresAt < at) return new UkeyError("CHALLENGE_INVALID");
      if (c.value !== asked?.value || o.certificateSerial !== before.certificateSerial || !valid) return new UkeyError("POSSESSION_PROOF_FAILED");
      d.done.possession = at;
      return undefined;
    });
  }

  /**
   * Proof of possession by TLS: the client authenticated with this very
   * certificate (EST simplereenroll, RFC 7030 section 3.3.2), so the
   * handshake already proved the key. The DER must equal the stored one.
   * @throws UkeyError POSSESSION_PROOF_FAILED, CERT_REVOKED.
   */
  async provePossessionByTls(orderId: string, clientCertDer: Buffer, actor: string): Promise<OrderView> {
    return this.step(orderId, "possession", async (_o, d, cert, at) => {
      if (cert.revokedAt !== null) throw new UkeyError("CERT_REVOKED", { params: { serial: cert.serial } });
      if (!cert.der || !cert.der.equals(clientCertDer)) return new UkeyError("POSSESSION_PROOF_FAILED");
      d.done.possession = at;
      return undefined;
    }, actor);
  }

  /** Compares the ID type and number with the record (keyed hashes). @throws UkeyError IDENTITY_MISMATCH, CODE_ATTEMPTS_EXCEEDED. */
  async proveIdentity(orderId: string, idType: string, idNumber: string): Promise<OrderView> {
    return this.step(orderId, "id-number", async (_o, d, _cert, _at, holder) => {
      const given = Buffer.from(hashIdNumber(this.deps.idKey, idType, idNumber), "hex");
      const want = Buffer.from(holder.idHash, "hex");
      if (holder.idType === idType && given.length === want.length && timingSafeEqual(given, want)) {
        d.done.idNumber = this.deps.clock.now().getTime();
        return undefined;
      }
      d.idAttempts += 1;
      if (d.idAttempts >= maxIdAttempts) {
        d.failure = "IDENTITY_MISMATCH";
        return new UkeyError("CODE_ATTEMPTS_EXCEEDED");
      }
      return new UkeyError("IDENTITY_MISMATCH");
    });
  }

  /** Sends a 6-digit code to the phone or e-mail on record. @throws UkeyError CODE_RESEND_TOO_SOON, CODE_DELIVERY_FAILED. */
  async sendCode(orderId: string, actor: string): Promise<OrderView> {
    const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
    let message: CodeMessage | undefined;
    const view = await this.step(orderId, "one-time-code", async (o, d, _cert, at, holder) => {
      const channel = d.requirements.oneTimeCode ?? "sms";
      if (d.code && at - d.code.sentAt < codeResendMs) {
        return new UkeyError("CODE_RESEND_TOO_SOON", { params: { seconds: Math.ceil((d.code.sentAt + codeResendMs - at) / 1000) } });
      }
      const to = channel === "sms" ? holder.phone : holder.email;
      if (!to) return new UkeyError("CODE_DELIVERY_FAILED", { params: { channel } });
      d.code = { hash: this.codeHash(o.id, code), expiresAt: at + codeTtlMs, sentAt: at, attempts: 0, to: channel === "sms" ? maskPhone(to) : maskEmail(to), used: false };
      const text = (c: string) => `【${this.deps.institution.name}】证书更新验证码 ${c}，5 分钟内有效，请勿告诉他人。Your certificate renewal code is ${c}, valid for 5 minutes; never share it.`;
      message = { channel, to, subject: { "zh-CN": "证书更新验证码", en: "Certificate renewal code" }, text: text(code), redactedText: text("******"), purpose: "otp", holderId: holder.id };
      return undefined;
    }, actor, { keepStep: true });
    if (message) {
      const sender = this.deps.senders?.[message.channel];
      if (!sender) throw new UkeyError("CODE_DELIVERY_FAILED", { params: { channel: message.channel } });
      await sender.send(message);
    }
    return view;
  }

  /** Checks a one-time code: 5 minutes, single use, 5 tries. @throws UkeyError CODE_INVALID, CODE_EXPIRED, CODE_ATTEMPTS_EXCEEDED. */
  async verifyCode(orderId: string, code: string): Promise<OrderView> {
    return this.step(orderId, "one-time-code", async (o, d, _cert, at) => {
      const c = d.code;
      if (!c || c.used) return new UkeyError("CODE_INVALID");
      if (c.expiresAt < at) return new UkeyError("CODE_EXPIRED");
      const given = Buffer.from(this.codeHash(o.id, code.trim()), "hex");
      if (timingSafeEqual(given, Buffer.from(c.hash, "hex"))) {
        c.used = true;
        d.done.oneTimeCode = at;
        return undefined;
      }
      c.attempts += 1;
      if (c.attempts >= maxCodeAttempts) {
        // The order fails (a resent code must not bring five more guesses) and the certificate rests a day.
        c.used = true;
        d.failure = "CODE_ATTEMPTS_EXCEEDED";
        return new UkeyError("CODE_ATTEMPTS_EXCEEDED");
      }
      return new UkeyError("CODE_INVALID");
    });
  }

  /**
   * Starts step-up for a long-expired certificate: a one-time link (shown as
   * a QR code) to open on a second device, where the holder confirms with
   * the ID number on record. Returns the link.
   */
  async startStepUp(orderId: string): Promise<{ approvalUrl: string; expiresAt: string }> {
    const token = randomBytes(24).toString("base64url");
    const at = this.deps.clock.now().getTime();
    await this.update(orderId, ["created"], (d) => { d.stepUp = { tokenHash: sha256(token), expiresAt: at + stepUpTtlMs }; });
    return { approvalUrl: `${this.deps.publicUrl.replace(/\/+$/, "")}/step-up/${orderId}.${token}`, expiresAt: new Date(at + stepUpTtlMs).toISOString() };
  }

  /** The second device approves with the one-time link and the ID number. @throws UkeyError CHALLENGE_INVALID, IDENTITY_MISMATCH. */
  async approveStepUp(link: string, idType: string, idNumber: string): Promise<OrderView> {
    const [orderId = "", token = ""] = link.split(".");
    return this.step(orderId, "step-up", async (_o, d, _cert, at, holder) => {
      const s = d.stepUp;
      if (!s || s.expiresAt < at || sha256(token) !== s.tokenHash) return new UkeyError("CHALLENGE_INVALID");
      if (holder.idType !== idType || hashIdNumber(this.deps.idKey, idType, idNumber) !== holder.idHash) {
        d.idAttempts += 1;
        if (d.idAttempts >= maxIdAttempts) {
          delete d.stepUp;
          d.failure = "IDENTITY_MISMATCH";
          return new UkeyError("CODE_ATTEMPTS_EXCEEDED");
        }
        return new UkeyError("IDENTITY_MISMATCH");
      }
      delete d.stepUp;
      d.done.stepUp = at;
      return undefined;
    });
  }

  /**
   * Takes the CSR for the new key and issues the certificate; the order turns
   * "issued" in the transaction that stores it. Repeating with the same key
   * delivers the same certificate again; a different key after issuance
   * revokes the undelivered certificate and issues a new one.
   * @throws UkeyError ORDER_STEP_OUT_OF_ORDER, CSR_*, KEY_*, CSR_SUBJECT_MISMATCH, KEY_NOT_RENEWED.
   */
  async submitCsr(orderId: string, csr: Buffer | string, tokenSerial: string | null, actor: string): Promise<OrderView> {
    const order = await this.load(orderId);
    const cert = await this.certificateOf(order);
    const holder = await this.holder(order.holderId);
    const profile = await this.profile(order.profileId);
    const verified = await this.verifier.verifyCsr(csr);
    const spkiSha = createHash("sha256").update(verified.spki).digest("hex");
    if (spkiSha === cert.spkiSha256) throw new UkeyError("KEY_NOT_RENEWED");
    checkRequestedSubject(verified, encodeName(subjectFor(holder, profile, this.deps.institution).rdns));
    if (order.state === "issued" && order.newSerial) {
      const issued = await this.deps.store.certificates.get(order.newSerial);
      if (issued && issued.spkiSha256 === spkiSha) return this.view(order);
    }
    if (order.state !== "verified" && order.state !== "key-submitted" && order.state !== "issued") throw this.outOfOrder(order);
    const at = this.deps.clock.now().getTime();
    // The order takes the CSR in the transaction that records the certificate's intent (one commit);
    // only a new key after issuance, which revokes the undelivered certificate first, takes its own.
    const takeCsr = async (r: Repositories, o: RenewalOrderRecord): Promise<boolean> => {
      const d = o.data as unknown as OrderData;
      d.csrSpkiSha256 = spkiSha;
      if (!(await r.orders.transition(o.id, o.state, "key-submitted", at, { data: d as unknown as Record<string, unknown> }))) return false;
      await r.audit.append({ at, actor, action: "order.key-submitted", subjectType: "order", subjectId: o.id, data: { spkiSha256: spkiSha } });
      return true;
    };
    let onIntent: ((r: Repositories) => Promise<UkeyError | undefined>) | undefined = async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) return new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      if (o.state !== "verified" && o.state !== "key-submitted") return this.outOfOrder(o);
      return (await takeCsr(r, o)) ? undefined : this.outOfOrder(o);
    };
    if (order.state === "issued") {
      await this.deps.store.transaction(async (r) => {
        const o = await r.orders.getForUpdate(orderId);
        if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
        if (o.state === "issued" && o.newSerial) {
          // A new key after issuance: the certificate for the old one can never be installed.
          await r.certificates.revoke(o.newSerial, "superseded", at, "revoked");
          await r.audit.append({ at, actor, action: "certificate.revoked", subjectType: "certificate", subjectId: o.newSerial, data: { reason: "superseded", order: o.id, why: "re-keyed before installation" } });
        } else if (o.state !== "verified" && o.state !== "key-submitted") {
          throw this.outOfOrder(o);
        }
        if (!(await takeCsr(r, o))) throw this.outOfOrder(o);
      });
      onIntent = undefined;
    }
    const { notAfter } = validityFor(profile, { now: new Date(at), oldNotAfter: new Date(cert.notAfter) });
    let moved = false;
    const issued = await this.deps.issuance.issue({
      holderId: holder.id, holder, profileId: profile.id, csr: verified, actor, tokenSerial, notAfter,
      auditData: { order: orderId, renews: cert.serial },
      onIntent,
      onCommit: async (r, c) => {
        moved = await r.orders.transition(orderId, "key-submitted", "issued", at, { newSerial: c.serial });
        await r.audit.append({ at, actor, action: moved ? "order.issued" : "order.issue-raced", subjectType: "order", subjectId: orderId, data: { serial: c.serial } });
      },
    });
    if (!moved) return this.get(orderId);
    return this.view(orderAfter(order, "issued", at, { newSerial: issued.serial }), { cert, holder, newCert: issued });
  }

  /** The agent read the certificate back from the key. */
  async installed(orderId: string, actor: string): Promise<OrderView> {
    return this.move(orderId, "issued", "installed", actor);
  }

  /**
   * Completes the order and supersedes the old certificate as the profile
   * says: revoked (reason superseded) or left to expire.
   */
  async complete(orderId: string, actor: string): Promise<OrderView> {
    const order = await this.load(orderId);
    if (order.state === "completed") return this.view(order);
    const profile = await this.profile(order.profileId);
    const at = this.deps.clock.now().getTime();
    let after: { order: RenewalOrderRecord; cert: CertificateRecord } | undefined;
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o || (o.state !== "installed" && o.state !== "issued")) throw this.outOfOrder(o ?? order);
      if (!(await r.orders.transition(o.id, o.state, "completed", at))) throw this.outOfOrder(o);
      const old = await this.certificateOf(o, r);
      const audit = [];
      if (old.revokedAt === null) {
        const revoke = profile.renewal.onCompletion === "revoke-superseded";
        if (revoke) await r.certificates.revoke(old.serial, "superseded", at, "superseded");
        else await r.certificates.setStatus(old.serial, "superseded", at);
        audit.push({ at, actor, action: "certificate.superseded", subjectType: "certificate", subjectId: old.serial, data: { by: o.newSerial, revoked: revoke } });
      }
      audit.push({ at, actor, action: "order.completed", subjectType: "order", subjectId: o.id, data: { newSerial: o.newSerial } });
      await r.audit.appendMany(audit);
      after = { order: orderAfter(o, "completed", at), cert: old };
    });
    return this.view(after!.order, { cert: after!.cert });
  }

  /** Cancels an order that has not issued yet. */
  async cancel(orderId: string, actor: string): Promise<OrderView> {
    const o = await this.load(orderId);
    if (o.state === "cancelled") return this.view(o);
    if (!["created", "verified", "key-submitted"].includes(o.state)) throw this.outOfOrder(o);
    return this.move(orderId, o.state, "cancelled", actor);
  }

  private codeHash(orderId: string, code: string): string {
    return createHmac("sha256", this.deps.idKey).update(`otp:${orderId}:${code}`).digest("hex");
  }

  private outOfOrder(o: RenewalOrderRecord): UkeyError {
    return new UkeyError("ORDER_STEP_OUT_OF_ORDER", { params: { order: o.id, state: o.state, next: nextStep(o) ?? "none" } });
  }

  private async move(orderId: string, from: OrderState, to: OrderState, actor: string): Promise<OrderView> {
    const at = this.deps.clock.now().getTime();
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      if (o.state === to) return;
      if (o.state !== from || !(await r.orders.transition(orderId, from, to, at))) throw this.outOfOrder(o);
      await r.audit.append({ at, actor, action: `order.${to}`, subjectType: "order", subjectId: orderId, data: {} });
    });
    return this.get(orderId);
  }

  /** Changes an order's data under its row lock while it is in one of `states`. */
  private async update(orderId: string, states: OrderState[], change: (d: OrderData) => void): Promise<void> {
    const at = this.deps.clock.now().getTime();
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      if (!states.includes(o.state)) throw this.outOfOrder(o);
      const d = o.data as unknown as OrderData;
      change(d);
      await r.orders.transition(o.id, o.state, o.state, at, { data: d as unknown as Record<string, unknown> });
    });
  }

  /**
   * One verification step under the order's row lock. `check` returns an
   * error to refuse (its changes to the data, such as counted attempts, are
   * kept and audited) or undefined to pass; when every requirement is met
   * the order turns "verified".
   */
  private async step(
    orderId: string, step: OrderStep,
    check: (o: RenewalOrderRecord, d: OrderData, cert: CertificateRecord, at: number, holder: HolderRecord) => Promise<UkeyError | undefined>,
    actor = "holder", opts: { keepStep?: boolean } = {},
  ): Promise<OrderView> {
    const at = this.deps.clock.now().getTime();
    let refusal: UkeyError | undefined;
    let after: { order: RenewalOrderRecord; cert: CertificateRecord; holder: HolderRecord } | undefined;
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      if (o.state !== "created") throw this.outOfOrder(o);
      const d = o.data as unknown as OrderData;
      if (step !== "possession" && d.done.possession === undefined) throw this.outOfOrder(o);
      const cert = await this.certificateOf(o, r);
      const holder = await this.holder(o.holderId, r);
      refusal = await check(o, d, cert, at, holder);
      let to: OrderState = o.state;
      if (d.failure) to = "failed";
      else if (!opts.keepStep && isVerified(d)) to = "verified";
      await r.orders.transition(o.id, o.state, to, at, { data: d as unknown as Record<string, unknown> });
      await r.audit.append({
        at, actor: actor === "holder" ? `holder:${o.holderId}` : actor, action: refusal ? `order.${step}.refused` : `order.${step}`,
        subjectType: "order", subjectId: o.id, data: refusal ? { code: refusal.code, state: to } : { state: to },
      });
      after = { order: orderAfter(o, to, at, { data: d as unknown as Record<string, unknown> }), cert, holder };
    });
    if (refusal) throw refusal;
    // The view comes from what the transaction read and wrote: no second round of reads.
    return this.view(after!.order, after!);
  }

  private async load(orderId: string): Promise<RenewalOrderRecord> {
    const o = /^[0-9a-f-]{36}$/.test(orderId) ? await this.deps.store.orders.get(orderId) : undefined;
    if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId.slice(0, 40) } });
    return o;
  }

  private async certificateOf(o: RenewalOrderRecord, r?: Pick<Repositories, "certificates">): Promise<CertificateRecord> {
    const c = o.certificateSerial ? await (r ?? this.deps.store).certificates.get(o.certificateSerial) : undefined;
    if (!c || c.der === null) throw new UkeyError("CERT_NOT_FOUND", { params: { serial: o.certificateSerial ?? "" } });
    return c;
  }

  private async holder(id: string, r?: Pick<Repositories, "holders">): Promise<HolderRecord> {
    const h = await (r ?? this.deps.store).holders.get(id);
    if (!h) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: id } });
    return h;
  }

  private async profile(id: string): Promise<CertificateProfile> {
    const p = await this.deps.profiles.get(id);
    if (!p) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: id } });
    return p;
  }

  private async view(o: RenewalOrderRecord, known: { cert?: CertificateRecord; holder?: HolderRecord; newCert?: CertificateRecord } = {}): Promise<OrderView> {
    const d = o.data as unknown as OrderData;
    const cert = known.cert ?? await this.certificateOf(o);
    const holder = known.holder ?? await this.holder(o.holderId);
    const profile = await this.profile(o.profileId);
    const subject: SubjectSpec = subjectFor(holder, profile, this.deps.institution);
    const v: OrderView = {
      id: o.id, state: o.state, channel: o.channel, nextStep: nextStep(o),
      certificate: { serial: cert.serial, certId: formatCertId(cert.issuerKeyId, cert.serial), subject: cert.subjectDn, notAfter: new Date(cert.notAfter).toISOString() },
      requirements: { possession: true, idNumber: d.requirements.idNumber, oneTimeCode: d.requirements.oneTimeCode, stepUp: d.requirements.stepUp },
      done: Object.keys(d.done),
      subject: formatDn(subject.rdns),
      keyAlgorithms: profile.keyAlgorithms,
    };
    if ((d.requirements.idNumber || d.requirements.stepUp) && holder.idType) v.idType = holder.idType;
    if (d.challenge && d.challenge.expiresAt > this.deps.clock.now().getTime() && o.state === "created") {
      v.challenge = { value: d.challenge.value, expiresAt: new Date(d.challenge.expiresAt).toISOString() };
    }
    if (d.code) {
      v.codeSentTo = d.code.to;
      v.codeResendAt = new Date(d.code.sentAt + codeResendMs).toISOString();
    }
    if (d.failure) v.failure = d.failure;
    if (o.newSerial && (o.state === "issued" || o.state === "installed" || o.state === "completed")) {
      const n = known.newCert?.serial === o.newSerial ? known.newCert : await this.deps.store.certificates.get(o.newSerial);
      if (n?.der) {
        v.newCertificate = {
          serial: n.serial, certId: formatCertId(n.issuerKeyId, n.serial),
          notBefore: new Date(n.notBefore).toISOString(), notAfter: new Date(n.notAfter).toISOString(),
          pem: derToPem(n.der, "CERTIFICATE"), chainPem: this.deps.chainPem,
        };
      }
    }
    return v;
  }
}

/**
 * A CSR may ask for the record's subject or for none; anything else is
 * refused (the certificate always says what the record says). Byte
 * equality is the fast path; a client that encodes the same names with
 * other string types (strongSwan writes PrintableString where we write
 * UTF8String) is compared by the names' values.
 * @throws UkeyError CSR_SUBJECT_MISMATCH.
 */
export function checkRequestedSubject(csr: VerifiedCsr, expectedDer: Buffer): void {
  if (csr.requestedSubjectDer.length === 2 || csr.requestedSubjectDer.equals(expectedDer)) return;
  const expected = nameToString(expectedDer);
  if (csr.requestedSubject !== expected) {
    throw new UkeyError("CSR_SUBJECT_MISMATCH", { params: { requested: csr.requestedSubject, expected } });
  }
}

function isVerified(d: OrderData): boolean {
  return d.done.possession !== undefined
    && (!d.requirements.idNumber || d.done.idNumber !== undefined)
    && (!d.requirements.oneTimeCode || d.done.oneTimeCode !== undefined)
    && (!d.requirements.stepUp || d.done.stepUp !== undefined);
}

/** What the holder does next on an order, or null when nothing is left. */
export function nextStep(o: RenewalOrderRecord): OrderStep | null {
  const d = o.data as unknown as OrderData;
  switch (o.state) {
    case "created":
      if (d.done.possession === undefined) return "possession";
      if (d.requirements.stepUp && d.done.stepUp === undefined) return "step-up";
      if (d.requirements.idNumber && d.done.idNumber === undefined) return "id-number";
      if (d.requirements.oneTimeCode && d.done.oneTimeCode === undefined) return "one-time-code";
      return "csr";
    case "verified":
    case "key-submitted":
      return "csr";
    case "issued":
      return "install";
    case "installed":
      return "complete";
    default:
      return null;
  }
}

/** An order record in a new state (written out field by field: object spreads cost more on this path). */
function orderAfter(o: RenewalOrderRecord, state: OrderState, updatedAt: number, patch: { newSerial?: string; data?: Record<string, unknown> } = {}): RenewalOrderRecord {
  return {
    id: o.id, certificateSerial: o.certificateSerial, holderId: o.holderId, profileId: o.profileId, state, channel: o.channel,
    newSerial: patch.newSerial ?? o.newSerial, data: patch.data ?? o.data, createdAt: o.createdAt, updatedAt,
  };
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
