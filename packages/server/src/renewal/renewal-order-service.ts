import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import { derToPem, encodeName, nameToString, type SubjectSpec, type VerifiedCsr } from "@ukey/ca";
import {
  UkeyError, evaluate, isPairProfile, renewalRefusal, validityFor,
  type CertificateProfile, type Clock, type RenewalChannel,
} from "@ukey/policy";
import type { CertificateRecord, HolderRecord, OrderState, Repositories, RenewalOrderRecord, Store } from "@ukey/store";
import { formatCertId } from "../cert-id.js";
import { formatDn } from "../ca-runtime.js";
import { maskEmail, maskPhone } from "../holder-contact.js";
import { hashIdNumber } from "../holder-identity.js";
import { newOrderId } from "../order-id.js";
import type { IssuanceService } from "../issuance-service.js";
import type { KeyManagementCentre, PreparedEncryptionKey } from "../kmc/key-management-centre.js";
import type { ProfileCache } from "../profile-cache.js";
import { SignatureVerifier } from "../signature-verifier.js";
import { subjectFor } from "../issuance-service.js";
import { failureLockMs, renewalLockedUntil } from "./renewal-lock.js";
import {
  closedOrderStates, isVerified, nextStep, orderAfter,
  type OrderData, type OrderStarted, type OrderStep, type OrderView, type PossessionChallengeView, type ProvenOrderView,
} from "./order-view.js";
import {
  PossessionChallenges, credentialRefusal, looksLikeOrderCredential, mintOrderCredential, possessionMessage,
  type PossessionSigner,
} from "./possession.js";

export type { OrderData, OrderStarted, OrderStep, OrderView, PossessionChallengeView, ProvenOrderView } from "./order-view.js";
export { nextStep } from "./order-view.js";

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

/** Where refusals of callers who proved nothing go: counted per window in the audit log, not one row each. */
export interface RefusalRecorder {
  record(r: { action: string; actor: string; subjectType: string; subjectId: string; data?: Record<string, unknown> }): void;
}

/** A proof of possession by signature: the challenge the server gave, the signature over possessionMessage(order, challenge), and whose key signed. */
export interface SignatureProof {
  challenge: string;
  signature: Buffer;
  /** Default "certificate": the key of the certificate being renewed. */
  signer?: PossessionSigner;
}

/** What authorizes a step: the order credential, or (approving step-up on a second device) the step-up link's token. */
type Authority = { credential: string | undefined } | { stepUpToken: string };

const codeTtlMs = 5 * 60_000;
const codeResendMs = 60_000;
const maxCodeAttempts = 5;
const maxIdAttempts = 5;
const stepUpTtlMs = 10 * 60_000;
const orderIdPattern = /^[0-9a-f-]{36}$/;

type OrderStore = Pick<Store, "transaction" | "certificates" | "holders" | "profiles" | "orders" | "certificatePairs">;

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
 * Only the key's holder drives an order. Starting one (or asking for a
 * challenge) needs nothing and says nothing but the order's id and the
 * proof it takes. Proof of possession of the certificate's key (a
 * signature over a server challenge, or the certificate as TLS client
 * certificate) gives an order credential; every other step requires it
 * (the step-up link's own token approves step-up). A new proof replaces
 * the credential; it expires after two hours, and ten minutes after its
 * order ended. The holder's agent resumes after any crash by proving
 * possession again: with the old key, or with the new certificate's key
 * once the order issued one.
 *
 * One open order per certificate: starting again returns the open order,
 * never a bare "already applied" (seed 001's 0116). An issued certificate
 * is delivered again on request; a new key after an issued one (the old
 * key was lost with the token) revokes the undelivered certificate and
 * issues anew.
 */
export class RenewalOrderService {
  private readonly verifier: SignatureVerifier;
  private readonly challenges: PossessionChallenges;

  constructor(private readonly deps: {
    store: OrderStore;
    issuance: IssuanceService;
    /** The key management centre, for pair profiles (CertificateProfile.certificates). */
    kmc?: KeyManagementCentre;
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
    /** Refusals of callers who proved nothing (bad proofs, missing or wrong credentials); dropped when not given. */
    refusals?: RefusalRecorder;
  }) {
    this.verifier = deps.verifier ?? new SignatureVerifier({ offloadAbove: Infinity });
    this.challenges = new PossessionChallenges(deps.idKey);
  }

  /**
   * Starts (or resumes) the renewal of a certificate on a channel. Anyone
   * may ask (the serial is in every copy of the certificate), so the answer
   * says only that the order exists and what proof of possession it takes.
   * @throws UkeyError CERT_NOT_FOUND, CERT_REVOKED, CERT_SUPERSEDED, RENEWAL_NOT_YET_OPEN, RENEWAL_LOCKED,
   *   RENEWAL_WINDOW_CLOSED, RENEWAL_CHANNEL_NOT_OFFERED, PROFILE_NOT_FOUND.
   */
  async start(serial: string, channel: RenewalChannel, actor: string): Promise<OrderStarted> {
    const now = this.deps.clock.now();
    const at = now.getTime();
    const cert = await this.deps.store.certificates.get(serial);
    if (!cert || cert.der === null) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
    const open = await this.deps.store.orders.findOpenForCertificate(serial);
    if (open) return { ...this.challengeView(open, cert, at), resumed: true, nextStep: "possession" };
    // An order that failed on wrong answers locks its certificate for a day: five guesses a day, not per order.
    const lockedUntil = renewalLockedUntil(await this.deps.store.orders.lastFailedAt(serial), at);
    if (lockedUntil) throw new UkeyError("RENEWAL_LOCKED", { params: { until: lockedUntil.toISOString() } });
    const profile = await this.profile(cert.profileId);
    const e = evaluate({ notBefore: cert.notBefore, notAfter: cert.notAfter, status: cert.status, revokedAt: cert.revokedAt, revocationReason: cert.revocationReason }, profile, channel, now);
    const refusal = renewalRefusal(e, { serial, stepUpVerified: true });
    if (refusal) throw refusal;
    const data: OrderData = {
      requirements: { idNumber: profile.verification.idNumber, oneTimeCode: profile.verification.oneTimeCode, stepUp: e.state === "open-step-up" },
      done: {},
      idAttempts: 0,
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
        if (winner) return { ...this.challengeView(winner, cert, at), resumed: true, nextStep: "possession" };
      }
      throw err;
    }
    return { ...this.challengeView(order, cert, at), resumed: false, nextStep: "possession" };
  }

  /**
   * A fresh challenge for an order, with what proof it takes and whether the
   * order is still open. Anyone who names the order may ask; challenges are
   * not stored, so asking spoils nobody's proof.
   * @throws UkeyError ORDER_NOT_FOUND.
   */
  async challenge(orderId: string): Promise<PossessionChallengeView> {
    const o = await this.load(orderId);
    return this.challengeView(o, await this.certificateOf(o), this.deps.clock.now().getTime());
  }

  /**
   * Checks a signature over possessionMessage(order, challenge): by the key
   * of the certificate being renewed (allowed after expiry while the window
   * is open; never for a revoked certificate), or by the key of the order's
   * new certificate once it was issued. The first proof completes the
   * possession step; every proof on an open order answers a new order
   * credential (replacing the last one). A challenge proves once.
   * @throws UkeyError ORDER_NOT_FOUND, CHALLENGE_INVALID, POSSESSION_PROOF_FAILED, CERT_REVOKED.
   */
  async provePossession(orderId: string, proof: SignatureProof, actor = "holder"): Promise<ProvenOrderView> {
    const at = this.deps.clock.now().getTime();
    const before = await this.load(orderId);
    const challenge = this.challenges.check(before.id, proof.challenge, at);
    if (!challenge) throw this.refused(before.id, "possession", new UkeyError("CHALLENGE_INVALID"));
    const signer = proof.signer ?? "certificate";
    const cert = await this.signerCertificate(before, signer);
    // The signature is checked before the step's transaction, so that no transaction waits for it.
    if (!(await this.verifier.possessionValid(cert.der!, possessionMessage(before.id, proof.challenge), proof.signature))) {
      throw this.refused(before.id, "possession", new UkeyError("POSSESSION_PROOF_FAILED"), { signer });
    }
    return this.proven(before.id, { signer, method: "signature", nonce: challenge.nonce, nonceExpiresAt: challenge.expiresAt }, actor);
  }

  /**
   * Proof of possession by TLS: the client authenticated with this very
   * certificate (EST simplereenroll, RFC 7030 section 3.3.2, or the
   * renewal API on the client-certificate port), so the handshake already
   * proved the key. The DER must equal the order's certificate (or its new
   * certificate, once issued). Answers as provePossession does.
   * @throws UkeyError ORDER_NOT_FOUND, POSSESSION_PROOF_FAILED, CERT_REVOKED.
   */
  async provePossessionByTls(orderId: string, clientCertDer: Buffer, actor: string): Promise<ProvenOrderView> {
    const before = await this.load(orderId);
    for (const signer of ["certificate", "new-key"] as const) {
      const cert = await this.signerCertificate(before, signer).catch(() => undefined);
      if (cert?.der && cert.der.equals(clientCertDer)) return this.proven(before.id, { signer, method: "tls" }, actor);
    }
    throw this.refused(before.id, "possession", new UkeyError("POSSESSION_PROOF_FAILED"), { method: "tls" });
  }

  /** The order with its next step. @throws UkeyError ORDER_CREDENTIAL_REQUIRED, ORDER_NOT_FOUND, ORDER_CREDENTIAL_INVALID. */
  async get(orderId: string, credential: string | undefined): Promise<OrderView> {
    this.requireCredential(orderId, "view", credential);
    const o = await this.load(orderId);
    this.authorize(o, { credential }, this.deps.clock.now().getTime(), "view");
    return this.view(o);
  }

  /**
   * Compares the ID type and number with the record (keyed hashes); five
   * wrong answers fail the order.
   * @throws UkeyError ORDER_CREDENTIAL_*, IDENTITY_MISMATCH (with triesLeft), IDENTITY_ATTEMPTS_EXCEEDED (the fifth, with the day the pause ends).
   */
  async proveIdentity(orderId: string, credential: string | undefined, idType: string, idNumber: string): Promise<OrderView> {
    this.requireCredential(orderId, "id-number", credential);
    return this.step(orderId, "id-number", { credential }, async (_o, d, _cert, at, holder) => {
      const given = Buffer.from(hashIdNumber(this.deps.idKey, idType, idNumber), "hex");
      const want = Buffer.from(holder.idHash, "hex");
      if (holder.idType === idType && given.length === want.length && timingSafeEqual(given, want)) {
        d.done.idNumber = this.deps.clock.now().getTime();
        return undefined;
      }
      return this.wrongIdNumber(d, at);
    });
  }

  /** Sends a 6-digit code to the phone or e-mail on record. @throws UkeyError ORDER_CREDENTIAL_*, CODE_RESEND_TOO_SOON, CODE_DELIVERY_FAILED. */
  async sendCode(orderId: string, credential: string | undefined, actor: string): Promise<OrderView> {
    this.requireCredential(orderId, "one-time-code", credential);
    const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
    let message: CodeMessage | undefined;
    const view = await this.step(orderId, "one-time-code", { credential }, async (o, d, _cert, at, holder) => {
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

  /** Checks a one-time code: 5 minutes, single use, 5 tries. @throws UkeyError ORDER_CREDENTIAL_*, CODE_INVALID, CODE_EXPIRED, CODE_ATTEMPTS_EXCEEDED. */
  async verifyCode(orderId: string, credential: string | undefined, code: string): Promise<OrderView> {
    this.requireCredential(orderId, "one-time-code", credential);
    return this.step(orderId, "one-time-code", { credential }, async (o, d, _cert, at) => {
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
   * the ID number on record. Returns the link; its token is its authority.
   * @throws UkeyError ORDER_CREDENTIAL_*, ORDER_STEP_OUT_OF_ORDER.
   */
  async startStepUp(orderId: string, credential: string | undefined): Promise<{ approvalUrl: string; expiresAt: string }> {
    this.requireCredential(orderId, "step-up", credential);
    const token = randomBytes(24).toString("base64url");
    const at = this.deps.clock.now().getTime();
    await this.update(orderId, ["created"], { credential }, (d) => { d.stepUp = { tokenHash: sha256(token), expiresAt: at + stepUpTtlMs }; });
    return { approvalUrl: `${this.deps.publicUrl.replace(/\/+$/, "")}/step-up/${orderId}.${token}`, expiresAt: new Date(at + stepUpTtlMs).toISOString() };
  }

  /**
   * The second device approves with the one-time link and the ID number.
   * @throws UkeyError CHALLENGE_INVALID (unknown, used or expired link), IDENTITY_MISMATCH, IDENTITY_ATTEMPTS_EXCEEDED.
   */
  async approveStepUp(link: string, idType: string, idNumber: string): Promise<OrderView> {
    const [orderId = "", token = "", ...rest] = link.split(".");
    if (!orderIdPattern.test(orderId) || !/^[A-Za-z0-9_-]{32}$/.test(token) || rest.length) {
      throw this.refused(orderId.slice(0, 36), "step-up", new UkeyError("CHALLENGE_INVALID"));
    }
    return this.step(orderId, "step-up", { stepUpToken: token }, async (_o, d, _cert, at, holder) => {
      if (holder.idType !== idType || hashIdNumber(this.deps.idKey, idType, idNumber) !== holder.idHash) {
        const wrong = this.wrongIdNumber(d, at);
        if (d.failure) delete d.stepUp;
        return wrong;
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
   * @throws UkeyError ORDER_CREDENTIAL_*, ORDER_STEP_OUT_OF_ORDER, CSR_*, KEY_*, CSR_SUBJECT_MISMATCH, KEY_NOT_RENEWED.
   */
  async submitCsr(orderId: string, credential: string | undefined, csr: Buffer | string, tokenSerial: string | null, actor: string): Promise<OrderView> {
    this.requireCredential(orderId, "csr", credential);
    const order = await this.load(orderId);
    this.authorize(order, { credential }, this.deps.clock.now().getTime(), "csr");
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
    // A pair: the KMC makes the encryption key and its envelope for this CSR's key now; the escrow commits
    // with the order taking the CSR, before anything is signed.
    const prepared = isPairProfile(profile) ? await prepareEncryptionKey(this.deps.kmc, profile, verified, holder.id, auditActor(order, actor), orderId) : undefined;
    // The order takes the CSR in the transaction that records the certificate's intent (one commit);
    // only a new key after issuance, which revokes the undelivered certificate first, takes its own.
    const takeCsr = async (r: Repositories, o: RenewalOrderRecord): Promise<boolean> => {
      const d = o.data as unknown as OrderData;
      d.csrSpkiSha256 = spkiSha;
      if (prepared) d.pair = { escrowId: prepared.escrowId, envelope: prepared.envelope.toString("base64"), envelopeFormat: prepared.envelopeFormat };
      else delete d.pair;
      if (!(await r.orders.transition(o.id, o.state, "key-submitted", at, { data: d as unknown as Record<string, unknown> }))) return false;
      if (prepared) await this.deps.kmc!.recordIn(r, prepared, at);
      await r.audit.append({ at, actor: auditActor(o, actor), action: "order.key-submitted", subjectType: "order", subjectId: o.id, data: { spkiSha256: spkiSha } });
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
          await r.audit.append({ at, actor: auditActor(o, actor), action: "certificate.revoked", subjectType: "certificate", subjectId: o.newSerial, data: { reason: "superseded", order: o.id, why: "re-keyed before installation" } });
          const pair = await r.certificatePairs.getBySigning(o.newSerial);
          if (pair) {
            await r.certificates.revoke(pair.encryptionSerial, "superseded", at, "revoked");
            await r.audit.append({ at, actor: auditActor(o, actor), action: "certificate.revoked", subjectType: "certificate", subjectId: pair.encryptionSerial, data: { reason: "superseded", order: o.id, why: "re-keyed before installation", pairOf: o.newSerial } });
          }
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
      holderId: holder.id, holder, profileId: profile.id, csr: verified, actor: auditActor(order, actor), tokenSerial, notAfter,
      auditData: { order: orderId, renews: cert.serial },
      ...(prepared ? { encryption: { spki: prepared.spki, escrowId: prepared.escrowId } } : {}),
      onIntent,
      onCommit: async (r, c, enc) => {
        moved = await r.orders.transition(orderId, "key-submitted", "issued", at, { newSerial: c.serial });
        await r.audit.append({ at, actor: auditActor(order, actor), action: moved ? "order.issued" : "order.issue-raced", subjectType: "order", subjectId: orderId, data: { serial: c.serial, ...(enc ? { encryptionSerial: enc.serial } : {}) } });
      },
    });
    if (!moved) return this.view(await this.load(orderId));
    // A pair's envelope is in the order's data as the CSR's transaction wrote it: read it back.
    if (prepared) return this.view(await this.load(orderId), { cert, holder, newCert: issued });
    return this.view(orderAfter(order, "issued", at, { newSerial: issued.serial }), { cert, holder, newCert: issued });
  }

  /** The agent read the certificate back from the key. @throws UkeyError ORDER_CREDENTIAL_*, ORDER_STEP_OUT_OF_ORDER. */
  async installed(orderId: string, credential: string | undefined, actor: string): Promise<OrderView> {
    this.requireCredential(orderId, "install", credential);
    return this.move(orderId, "issued", "installed", { credential }, actor);
  }

  /**
   * Completes the order and supersedes the old certificate as the profile
   * says: revoked (reason superseded) or left to expire. Repeating it
   * answers the completed order.
   * @throws UkeyError ORDER_CREDENTIAL_*, ORDER_STEP_OUT_OF_ORDER.
   */
  async complete(orderId: string, credential: string | undefined, actor: string): Promise<OrderView> {
    this.requireCredential(orderId, "complete", credential);
    const order = await this.load(orderId);
    const at = this.deps.clock.now().getTime();
    this.authorize(order, { credential }, at, "complete");
    if (order.state === "completed") return this.view(order);
    const profile = await this.profile(order.profileId);
    let after: { order: RenewalOrderRecord; cert: CertificateRecord } | undefined;
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o || (o.state !== "installed" && o.state !== "issued")) throw this.outOfOrder(o ?? order);
      this.authorize(o, { credential }, at, "complete");
      if (!(await r.orders.transition(o.id, o.state, "completed", at))) throw this.outOfOrder(o);
      const old = await this.certificateOf(o, r);
      const audit = [];
      const by = auditActor(o, actor);
      if (old.revokedAt === null) {
        const revoke = profile.renewal.onCompletion === "revoke-superseded";
        if (revoke) await r.certificates.revoke(old.serial, "superseded", at, "superseded");
        else await r.certificates.setStatus(old.serial, "superseded", at);
        audit.push({ at, actor: by, action: "certificate.superseded", subjectType: "certificate", subjectId: old.serial, data: { by: o.newSerial, revoked: revoke } });
      }
      // A pair is superseded whole: the old encryption certificate with its signing one (its key stays escrowed).
      const oldPair = await r.certificatePairs.getBySigning(old.serial);
      const oldEnc = oldPair ? await r.certificates.get(oldPair.encryptionSerial) : undefined;
      if (oldEnc && oldEnc.revokedAt === null && oldEnc.status === "active") {
        const revoke = profile.renewal.onCompletion === "revoke-superseded";
        if (revoke) await r.certificates.revoke(oldEnc.serial, "superseded", at, "superseded");
        else await r.certificates.setStatus(oldEnc.serial, "superseded", at);
        audit.push({ at, actor: by, action: "certificate.superseded", subjectType: "certificate", subjectId: oldEnc.serial, data: { by: o.newSerial, revoked: revoke, pairOf: old.serial } });
      }
      audit.push({ at, actor: by, action: "order.completed", subjectType: "order", subjectId: o.id, data: { newSerial: o.newSerial } });
      await r.audit.appendMany(audit);
      after = { order: orderAfter(o, "completed", at), cert: old };
    });
    return this.view(after!.order, { cert: after!.cert });
  }

  /** Cancels an order that has not issued yet. @throws UkeyError ORDER_CREDENTIAL_*, ORDER_STEP_OUT_OF_ORDER. */
  async cancel(orderId: string, credential: string | undefined, actor: string): Promise<OrderView> {
    this.requireCredential(orderId, "cancel", credential);
    const o = await this.load(orderId);
    this.authorize(o, { credential }, this.deps.clock.now().getTime(), "cancel");
    if (o.state === "cancelled") return this.view(o);
    if (!["created", "verified", "key-submitted"].includes(o.state)) throw this.outOfOrder(o);
    return this.move(orderId, o.state, "cancelled", { credential }, actor);
  }

  /** What proof an order takes now, with a fresh challenge. */
  private challengeView(o: RenewalOrderRecord, cert: CertificateRecord, at: number): PossessionChallengeView {
    const c = this.challenges.mint(o.id, at);
    const signers: PossessionSigner[] = [];
    if (cert.revokedAt === null) signers.push("certificate");
    if (o.newSerial && (o.state === "issued" || o.state === "installed" || o.state === "completed")) signers.push("new-key");
    return {
      id: o.id, open: !closedOrderStates.has(o.state), certificateSerial: cert.serial, signers,
      challenge: { value: c.value, expiresAt: new Date(c.expiresAt).toISOString() },
      message: possessionMessage(o.id, c.value).toString("base64"),
    };
  }

  /**
   * The certificate whose key a signer means: the order's certificate
   * (never a revoked one), or its new certificate once issued.
   * @throws UkeyError CERT_REVOKED, POSSESSION_PROOF_FAILED (no new certificate yet).
   */
  private async signerCertificate(o: RenewalOrderRecord, signer: PossessionSigner): Promise<CertificateRecord> {
    if (signer === "certificate") {
      const cert = await this.certificateOf(o);
      if (cert.revokedAt !== null) throw revokedError(cert);
      return cert;
    }
    const issued = o.newSerial && (o.state === "issued" || o.state === "installed" || o.state === "completed")
      ? await this.deps.store.certificates.get(o.newSerial) : undefined;
    if (!issued?.der || issued.revokedAt !== null) throw this.refused(o.id, "possession", new UkeyError("POSSESSION_PROOF_FAILED"), { signer });
    return issued;
  }

  /**
   * Possession is proven: the challenge is spent, the possession step is
   * done, and an open order gets a new credential (the old one stops
   * working). The certificate may have been revoked since the signature
   * was checked: read again under the order's lock, that decides.
   */
  private async proven(
    orderId: string, how: { signer: PossessionSigner; method: "signature" | "tls"; nonce?: string; nonceExpiresAt?: number }, actor: string,
  ): Promise<ProvenOrderView> {
    const at = this.deps.clock.now().getTime();
    let credential: ReturnType<typeof mintOrderCredential> | undefined;
    let after: { order: RenewalOrderRecord; cert: CertificateRecord; holder: HolderRecord } | undefined;
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      const d = o.data as unknown as OrderData;
      const used: Record<string, number> = {};
      for (const [nonce, expiresAt] of Object.entries(d.usedChallenges ?? {})) if (expiresAt >= at) used[nonce] = expiresAt;
      if (how.nonce !== undefined) {
        if (used[how.nonce] !== undefined) throw new UkeyError("CHALLENGE_INVALID");
        used[how.nonce] = how.nonceExpiresAt!;
      }
      d.usedChallenges = used;
      const cert = await this.certificateOf(o, r);
      if (how.signer === "certificate" && cert.revokedAt !== null) throw revokedError(cert);
      let to: OrderState = o.state;
      if (!closedOrderStates.has(o.state)) {
        if (o.state === "created" && d.done.possession === undefined) {
          d.done.possession = at;
          if (isVerified(d)) to = "verified";
        }
        credential = mintOrderCredential(at);
        d.credential = credential.stored;
      }
      await r.orders.transition(o.id, o.state, to, at, { data: d as unknown as Record<string, unknown> });
      await r.audit.append({
        at, actor: auditActor(o, actor), action: "order.possession", subjectType: "order", subjectId: o.id,
        data: { state: to, method: how.method, signer: how.signer, credential: credential ? "issued" : "none" },
      });
      after = { order: orderAfter(o, to, at, { data: d as unknown as Record<string, unknown> }), cert, holder: await this.holder(o.holderId, r) };
    });
    const view: ProvenOrderView = await this.view(after!.order, after!);
    if (credential) view.credential = { token: credential.token, expiresAt: new Date(credential.stored.expiresAt).toISOString() };
    return view;
  }

  /** Refuses a caller with no credential at all before anything is read. */
  private requireCredential(orderId: string, step: string, credential: string | undefined): void {
    if (!looksLikeOrderCredential(credential)) throw this.refused(orderId.slice(0, 36), step, new UkeyError("ORDER_CREDENTIAL_REQUIRED"));
  }

  /** Refuses unless `authority` authorizes order `o` at `at`. @throws UkeyError ORDER_CREDENTIAL_REQUIRED, ORDER_CREDENTIAL_INVALID, CHALLENGE_INVALID. */
  private authorize(o: RenewalOrderRecord, authority: Authority, at: number, step: string): void {
    const d = o.data as unknown as OrderData;
    if ("stepUpToken" in authority) {
      const s = d.stepUp;
      const given = Buffer.from(sha256(authority.stepUpToken), "hex");
      if (!s || s.expiresAt < at || !timingSafeEqual(given, Buffer.from(s.tokenHash, "hex"))) throw this.refused(o.id, step, new UkeyError("CHALLENGE_INVALID"));
      return;
    }
    const code = credentialRefusal(d.credential, authority.credential, at, closedOrderStates.has(o.state) ? o.updatedAt : undefined);
    if (code) throw this.refused(o.id, step, new UkeyError(code));
  }

  /** Records a refusal of a caller who proved nothing (counted per window, never one audit row each) and returns the error to throw. */
  private refused(orderId: string, step: string, error: UkeyError, data: Record<string, unknown> = {}): UkeyError {
    this.deps.refusals?.record({ action: `order.${step}.refused`, actor: "unknown", subjectType: "order", subjectId: orderId, data: { code: error.code, ...data } });
    return error;
  }

  /**
   * Counts a wrong ID number: IDENTITY_MISMATCH says how many tries are
   * left; the fifth fails the order, and the certificate's online renewal
   * rests a day from `at` (IDENTITY_ATTEMPTS_EXCEEDED says until when).
   */
  private wrongIdNumber(d: OrderData, at: number): UkeyError {
    d.idAttempts += 1;
    if (d.idAttempts >= maxIdAttempts) {
      d.failure = "IDENTITY_MISMATCH";
      return new UkeyError("IDENTITY_ATTEMPTS_EXCEEDED", { params: { attempts: maxIdAttempts, until: new Date(at + failureLockMs).toISOString() } });
    }
    return new UkeyError("IDENTITY_MISMATCH", { params: { triesLeft: maxIdAttempts - d.idAttempts } });
  }

  private codeHash(orderId: string, code: string): string {
    return createHmac("sha256", this.deps.idKey).update(`otp:${orderId}:${code}`).digest("hex");
  }

  private outOfOrder(o: RenewalOrderRecord): UkeyError {
    return new UkeyError("ORDER_STEP_OUT_OF_ORDER", { params: { order: o.id, state: o.state, next: nextStep(o) ?? "none" } });
  }

  private async move(orderId: string, from: OrderState, to: OrderState, authority: Authority, actor: string): Promise<OrderView> {
    const at = this.deps.clock.now().getTime();
    let after: RenewalOrderRecord | undefined;
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      this.authorize(o, authority, at, to);
      if (o.state === to) { after = o; return; }
      if (o.state !== from || !(await r.orders.transition(orderId, from, to, at))) throw this.outOfOrder(o);
      await r.audit.append({ at, actor: auditActor(o, actor), action: `order.${to}`, subjectType: "order", subjectId: orderId, data: {} });
      after = orderAfter(o, to, at);
    });
    return this.view(after!);
  }

  /** Changes an order's data under its row lock while it is in one of `states`. */
  private async update(orderId: string, states: OrderState[], authority: Authority, change: (d: OrderData) => void): Promise<void> {
    const at = this.deps.clock.now().getTime();
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      this.authorize(o, authority, at, "update");
      if (!states.includes(o.state)) throw this.outOfOrder(o);
      const d = o.data as unknown as OrderData;
      change(d);
      await r.orders.transition(o.id, o.state, o.state, at, { data: d as unknown as Record<string, unknown> });
    });
  }

  /**
   * One verification step under the order's row lock, once `authority` is
   * checked. `check` returns an error to refuse (its changes to the data,
   * such as counted attempts, are kept and audited) or undefined to pass;
   * when every requirement is met the order turns "verified".
   */
  private async step(
    orderId: string, step: OrderStep, authority: Authority,
    check: (o: RenewalOrderRecord, d: OrderData, cert: CertificateRecord, at: number, holder: HolderRecord) => Promise<UkeyError | undefined>,
    actor = "holder", opts: { keepStep?: boolean } = {},
  ): Promise<OrderView> {
    if (!orderIdPattern.test(orderId)) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId.slice(0, 40) } });
    const at = this.deps.clock.now().getTime();
    let refusal: UkeyError | undefined;
    let after: { order: RenewalOrderRecord; cert: CertificateRecord; holder: HolderRecord } | undefined;
    await this.deps.store.transaction(async (r) => {
      const o = await r.orders.getForUpdate(orderId);
      if (!o) throw new UkeyError("ORDER_NOT_FOUND", { params: { order: orderId } });
      this.authorize(o, authority, at, step);
      if (o.state !== "created") throw this.outOfOrder(o);
      const d = o.data as unknown as OrderData;
      if (d.done.possession === undefined) throw this.outOfOrder(o);
      const cert = await this.certificateOf(o, r);
      const holder = await this.holder(o.holderId, r);
      refusal = await check(o, d, cert, at, holder);
      let to: OrderState = o.state;
      if (d.failure) to = "failed";
      else if (!opts.keepStep && isVerified(d)) to = "verified";
      await r.orders.transition(o.id, o.state, to, at, { data: d as unknown as Record<string, unknown> });
      await r.audit.append({
        at, actor: auditActor(o, actor), action: refusal ? `order.${step}.refused` : `order.${step}`,
        subjectType: "order", subjectId: o.id, data: refusal ? { code: refusal.code, state: to } : { state: to },
      });
      after = { order: orderAfter(o, to, at, { data: d as unknown as Record<string, unknown> }), cert, holder };
    });
    if (refusal) throw refusal;
    // The view comes from what the transaction read and wrote: no second round of reads.
    return this.view(after!.order, after!);
  }

  private async load(orderId: string): Promise<RenewalOrderRecord> {
    const o = orderIdPattern.test(orderId) ? await this.deps.store.orders.get(orderId) : undefined;
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
    if (d.code) {
      v.codeSentTo = d.code.to;
      v.codeResendAt = new Date(d.code.sentAt + codeResendMs).toISOString();
    }
    if (d.failure) v.failure = d.failure;
    if (o.state === "failed") {
      v.failedAttempts = d.failure === "IDENTITY_MISMATCH" ? d.idAttempts : d.code?.attempts ?? 0;
      v.failedUntil = new Date(o.updatedAt + failureLockMs).toISOString();
    }
    if (o.newSerial && (o.state === "issued" || o.state === "installed" || o.state === "completed")) {
      const n = known.newCert?.serial === o.newSerial ? known.newCert : await this.deps.store.certificates.get(o.newSerial);
      if (n?.der) {
        v.newCertificate = {
          serial: n.serial, certId: formatCertId(n.issuerKeyId, n.serial),
          notBefore: new Date(n.notBefore).toISOString(), notAfter: new Date(n.notAfter).toISOString(),
          pem: derToPem(n.der, "CERTIFICATE"), chainPem: this.deps.chainPem,
        };
        const pair = d.pair ? await this.deps.store.certificatePairs.getBySigning(n.serial) : undefined;
        const e = pair ? await this.deps.store.certificates.get(pair.encryptionSerial) : undefined;
        if (d.pair && e?.der) {
          v.encryptionCertificate = {
            serial: e.serial, certId: formatCertId(e.issuerKeyId, e.serial),
            notBefore: new Date(e.notBefore).toISOString(), notAfter: new Date(e.notAfter).toISOString(), pem: derToPem(e.der, "CERTIFICATE"),
          };
          v.envelope = { format: d.pair.envelopeFormat, value: d.pair.envelope };
        }
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

/** The audit log's actor of a step: the order's holder for the renewal API, or the channel that acted (EST). */
function auditActor(o: RenewalOrderRecord, actor: string): string {
  return actor === "holder" ? `holder:${o.holderId}` : actor;
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/** The refusal for a revoked certificate: CERT_ON_HOLD while it is only suspended (certificateHold), else CERT_REVOKED. */
export function revokedError(cert: Pick<CertificateRecord, "serial" | "revocationReason">): UkeyError {
  return new UkeyError(cert.revocationReason === "certificateHold" ? "CERT_ON_HOLD" : "CERT_REVOKED", { params: { serial: cert.serial } });
}

/**
 * The KMC's encryption key for a pair profile's CSR. The key's algorithm is
 * checked first, so that an RSA or ECDSA key for an SM2 pair profile gets the
 * same KEY_ALGORITHM_NOT_ALLOWED as for one certificate.
 * @throws UkeyError KEY_ALGORITHM_NOT_ALLOWED, KMC_REQUIRED (no KMC configured), KEY_ALGORITHM_UNSUPPORTED.
 */
export async function prepareEncryptionKey(
  kmc: KeyManagementCentre | undefined, profile: CertificateProfile, csr: VerifiedCsr, holderId: string, actor: string, orderId?: string,
): Promise<PreparedEncryptionKey> {
  if (!profile.keyAlgorithms.includes(csr.algorithm)) {
    throw new UkeyError("KEY_ALGORITHM_NOT_ALLOWED", { params: { profile: profile.id, algorithm: csr.algorithm, allowed: profile.keyAlgorithms.join(", ") } });
  }
  if (!kmc) throw new UkeyError("KMC_REQUIRED", { params: { profiles: profile.id } });
  return kmc.prepareEncryptionKey({ holderId, holderSigningSpki: csr.spki, actor, ...(orderId ? { orderId } : {}) });
}
