import { createHmac, randomBytes, randomInt, randomUUID, timingSafeEqual } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { HolderKind, HolderRecord, Store } from "@ukey/store";
import type { DeliveryChannel, Senders } from "../delivery/index.js";
import type { RefusalLog } from "../audit/refusal-log.js";
import { maskEmail, maskPhone } from "../holder-contact.js";
import { HOLDER_SESSION_TTL_MS, signHolderSession, verifyHolderSession, type HolderSessionClaims } from "./holder-session-token.js";

const CODE_TTL_MS = 5 * 60_000;
const RESEND_MS = 60_000;
const MAX_ATTEMPTS = 5;
/** The window of the per-customer-number quotas. */
const QUOTA_WINDOW_MS = 24 * 3_600_000;
/** How often an instance deletes codes and quotas that can no longer matter. */
const PURGE_EVERY_MS = 10 * 60_000;

/** What a one-time code is for; each purpose hashes its codes apart. */
export type CodePurpose = "sign-in" | "redownload";

/**
 * What a started sign-in answers, the same for every customer number typed:
 * it never says whether the number exists or where a code went.
 */
export interface SignInStarted {
  challengeId: string;
  expiresAt: string;
  resendAt: string;
}

/** A session: the bearer token and when it runs out unless used. */
export interface HolderSession {
  token: string;
  expiresAt: string;
  holder: { id: string; kind: HolderKind; name: string };
}

/** The signed-in holder of a request. */
export interface HolderPrincipal {
  id: string;
  kind: HolderKind;
  /** A fresh token: the session slides 30 minutes from every use. */
  renewed: { token: string; expiresAt: string };
}

export interface HolderSignInDeps {
  store: Pick<Store, "holders" | "holderSignIns" | "audit" | "transaction">;
  senders: Senders;
  clock: Clock;
  /** Key of the codes' hashes and of the customer numbers' (the data directory's ID key). */
  codeKey: Buffer;
  /** Key of session tokens. */
  sessionKey: Buffer;
  institution: { name: string };
  /** Where refused and decoy sign-ins are counted (the audit's refusal log). */
  refusals: Pick<RefusalLog, "record">;
  /** Per customer number and 24 hours: codes sent, and wrong codes before sign-in pauses. Defaults 10 and 20. */
  limits?: { codesPerDay: number; wrongCodesPerDay: number };
}

/**
 * Holder sign-in with the customer number and a one-time code sent to the
 * phone (or e-mail) on record: 6 digits, valid 5 minutes, a new one at most
 * every 60 seconds, 5 wrong tries spend it; only a keyed hash of the code
 * is stored, in the database, so any instance checks a code another sent.
 * A verified code gives a stateless bearer token (HMAC-signed) valid 30
 * minutes from its last use.
 *
 * Every customer number gets the same answers: one that names nobody, or
 * a holder with nothing on record for the channel, is issued a decoy (a
 * code row that no code matches, and no message), counted against the same
 * quotas, so status, answer, resend timing, attempts and final refusals
 * tell nothing. Each customer number may be sent `codesPerDay` codes and
 * given `wrongCodesPerDay` wrong codes per 24 hours (in the database, so
 * several instances share them): no SMS pumping, no endless guessing.
 * Messages go out after the answer, so its timing does not tell either; a
 * failed delivery is in the outbox for operators.
 */
export class HolderSignInService {
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly limits: { codesPerDay: number; wrongCodesPerDay: number };
  private lastPurge = Number.NEGATIVE_INFINITY;

  constructor(private readonly deps: HolderSignInDeps) {
    this.limits = deps.limits ?? { codesPerDay: 10, wrongCodesPerDay: 20 };
  }

  /**
   * Issues a sign-in code for a customer number (a decoy when nobody can be
   * reached through it). `channel` default: sms when a phone is on record, else email.
   * @throws UkeyError CODE_RESEND_TOO_SOON, CODE_DAILY_LIMIT.
   */
  async start(holderId: string, channel?: DeliveryChannel): Promise<SignInStarted> {
    const holder = await this.deps.store.holders.get(holderId);
    const ch: DeliveryChannel = channel ?? (holder?.phone ? "sms" : "email");
    const to = (ch === "sms" ? holder?.phone : holder?.email) || null;
    const text = (c: string) => `【${this.deps.institution.name}】登录验证码 ${c}，5 分钟内有效，请勿告诉他人。Your sign-in code is ${c}, valid for 5 minutes; never share it.`;
    const { started } = await this.issue({
      typed: holderId, purpose: "sign-in", channel: ch, recipient: holder && to ? { holder, to } : null,
      message: { subject: { "zh-CN": "登录验证码", en: "Sign-in code" }, text },
      decoyReason: holder ? `no ${ch} on record` : "unknown customer number",
    });
    return started;
  }

  /**
   * Sends a one-time code for `purpose` to `recipient` (a decoy row and no
   * message when null), against the quotas of the customer number `typed`.
   * `message.text` null: a notice without a code (the row is a decoy then
   * too, so nothing typed matches). The answer is the same whichever.
   * Used by sign-in and by self-service re-download (whose codes are hashed
   * under their own purpose, so a code of one never passes the other).
   * @throws UkeyError CODE_RESEND_TOO_SOON, CODE_DAILY_LIMIT.
   */
  async issue(o: {
    typed: string; purpose: CodePurpose; channel: DeliveryChannel;
    recipient: { holder: HolderRecord; to: string } | null;
    message: { subject: { "zh-CN": string; en: string }; text: ((code: string) => string) | null; notice?: string };
    decoyReason: string;
  }): Promise<{ started: SignInStarted; sentTo: string }> {
    const { store, clock } = this.deps;
    const at = clock.now().getTime();
    await this.purgeNowAndThen(at);
    const subject = this.subjectOf(o.typed);
    const ch = o.channel;
    const holder = o.recipient?.holder;
    const to = o.recipient?.to ?? null;
    const real = !!to && o.message.text !== null;
    const id = randomUUID();
    // A decoy's "code" is no 6-digit string, so that nothing typed can match it.
    const code = real ? String(randomInt(0, 1_000_000)).padStart(6, "0") : randomBytes(16).toString("hex");
    const sentTo = to ? (ch === "sms" ? maskPhone(to) : maskEmail(to)) : "";
    const outcome = await store.transaction(async (r) => {
      const q = await r.holderSignIns.lockQuota(subject, at, QUOTA_WINDOW_MS);
      if (q.lastSentAt !== null && at - q.lastSentAt < RESEND_MS) {
        return { error: new UkeyError("CODE_RESEND_TOO_SOON", { params: { seconds: Math.ceil((q.lastSentAt + RESEND_MS - at) / 1000) } }) };
      }
      if (q.codesSent >= this.limits.codesPerDay) return { error: this.untilError("CODE_DAILY_LIMIT", q.windowStart + QUOTA_WINDOW_MS, at), quota: true };
      await r.holderSignIns.insert({
        id, subject, holderId: real ? holder!.id : null, channel: ch, sentTo, codeHash: this.hash(id, code, o.purpose), expiresAt: at + CODE_TTL_MS, attempts: 0,
        status: "open", createdAt: at, updatedAt: at,
      });
      await r.holderSignIns.saveQuota({ ...q, codesSent: q.codesSent + 1, lastSentAt: at, updatedAt: at });
      if (to) {
        await r.audit.append({
          at, actor: `holder:${holder!.id}`, action: o.purpose === "sign-in" ? "holder.sign-in.code-sent" : `holder.${o.purpose}.${real ? "code-sent" : "notice-sent"}`,
          subjectType: "holder", subjectId: holder!.id, data: { channel: ch, sentTo, ...(o.message.notice ? { notice: o.message.notice } : {}) },
        });
      }
      return {};
    });
    if (outcome.error) {
      if (outcome.quota) this.refused(holder && to ? holder.id : null, subject, outcome.error.code, o.purpose);
      throw outcome.error;
    }
    if (!to) {
      this.deps.refusals.record({
        action: `holder.${o.purpose}.decoy`, actor: "unknown", subjectType: "customer-number", subjectId: subject, data: { reason: o.decoyReason },
      });
    } else {
      const text = o.message.text;
      this.deliver(() => this.deps.senders[ch].send({
        channel: ch, to, subject: o.message.subject, text: text ? text(code) : o.message.notice ?? "", redactedText: text ? text("******") : o.message.notice ?? "",
        purpose: text ? "otp" : "notice", holderId: holder!.id,
      }));
    }
    return { started: { challengeId: id, expiresAt: new Date(at + CODE_TTL_MS).toISOString(), resendAt: new Date(at + RESEND_MS).toISOString() }, sentTo };
  }

  /**
   * Checks a code and opens a session.
   * @throws UkeyError CODE_INVALID (wrong, or no such sign-in), CODE_EXPIRED, CODE_ALREADY_USED,
   *   CODE_ATTEMPTS_EXCEEDED (the fifth wrong code, and every try after it), CODE_GUESSES_EXHAUSTED
   *   (the customer number's wrong codes of the day are used up).
   */
  async verify(challengeId: string, code: string): Promise<HolderSession> {
    const { holder: h, at } = await this.check(challengeId, code, "sign-in");
    const claims: HolderSessionClaims = { sub: h.id, kind: h.kind, iat: at, exp: at + HOLDER_SESSION_TTL_MS };
    return { token: signHolderSession(this.deps.sessionKey, claims), expiresAt: new Date(claims.exp).toISOString(), holder: { id: h.id, kind: h.kind, name: h.name } };
  }

  /**
   * Checks and spends a code sent for `purpose`; returns its holder.
   * Sign-in's wrong codes answer CODE_INVALID; the others' SMS_CODE_INVALID with the tries left.
   * @throws UkeyError as `verify`, and SMS_CODE_INVALID.
   */
  async check(challengeId: string, code: string, purpose: CodePurpose): Promise<{ holder: HolderRecord; at: number }> {
    const { store, clock } = this.deps;
    const at = clock.now().getTime();
    // Refusals are returned, not thrown, so that the counted attempt is committed.
    const outcome = await store.transaction(async (r) => {
      const s = await r.holderSignIns.getForUpdate(challengeId);
      if (!s) return { error: new UkeyError("CODE_INVALID", { detail: "no such sign-in" }) };
      const refuse = (error: UkeyError) => ({ error, signIn: s });
      if (s.status === "used") return refuse(new UkeyError("CODE_ALREADY_USED"));
      if (s.status === "locked") return refuse(new UkeyError("CODE_ATTEMPTS_EXCEEDED"));
      if (s.expiresAt < at) return refuse(new UkeyError("CODE_EXPIRED"));
      const q = await r.holderSignIns.lockQuota(s.subject, at, QUOTA_WINDOW_MS);
      if (q.wrongCodes >= this.limits.wrongCodesPerDay) return refuse(this.untilError("CODE_GUESSES_EXHAUSTED", q.windowStart + QUOTA_WINDOW_MS, at));
      const given = Buffer.from(this.hash(s.id, code.trim(), purpose), "hex");
      const matches = timingSafeEqual(given, Buffer.from(s.codeHash, "hex")) && s.holderId !== null;
      if (!matches) {
        const attempts = s.attempts + 1;
        const locked = attempts >= MAX_ATTEMPTS;
        await r.holderSignIns.update(s.id, { attempts, status: locked ? "locked" : "open" }, at);
        await r.holderSignIns.saveQuota({ ...q, wrongCodes: q.wrongCodes + 1, updatedAt: at });
        return refuse(locked ? new UkeyError("CODE_ATTEMPTS_EXCEEDED")
          : purpose === "sign-in" ? new UkeyError("CODE_INVALID") : new UkeyError("SMS_CODE_INVALID", { params: { triesLeft: MAX_ATTEMPTS - attempts } }));
      }
      await r.holderSignIns.update(s.id, { attempts: s.attempts, status: "used" }, at);
      const holder = await r.holders.get(s.holderId!);
      if (!holder) return { error: new UkeyError("CODE_INVALID", { detail: "holder removed" }) };
      await r.audit.append({
        at, actor: `holder:${holder.id}`, action: purpose === "sign-in" ? "holder.signed-in" : `holder.${purpose}.code-verified`,
        subjectType: "holder", subjectId: holder.id, data: { channel: s.channel },
      });
      return { holder };
    });
    if ("error" in outcome) {
      if ("signIn" in outcome) this.refused(outcome.signIn.holderId, outcome.signIn.subject, outcome.error.code, purpose);
      throw outcome.error;
    }
    return { holder: outcome.holder, at };
  }

  /** Resolves when every message handed to a sender has been delivered or recorded as failed. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /**
   * The holder of a bearer token, with a renewed token (30 minutes from now).
   * @throws UkeyError HOLDER_SIGN_IN_REQUIRED, SESSION_EXPIRED.
   */
  authenticate(token: string | undefined): HolderPrincipal {
    const at = this.deps.clock.now().getTime();
    const c = verifyHolderSession(this.deps.sessionKey, token, at);
    const exp = at + HOLDER_SESSION_TTL_MS;
    return { id: c.sub, kind: c.kind, renewed: { token: signHolderSession(this.deps.sessionKey, { ...c, iat: at, exp }), expiresAt: new Date(exp).toISOString() } };
  }

  /** The code's keyed hash, bound to its purpose: a sign-in code is no re-download code. */
  private hash(id: string, code: string, purpose: CodePurpose): string {
    return createHmac("sha256", this.deps.codeKey).update(`${purpose === "sign-in" ? "holder-sign-in" : `holder-${purpose}`}:${id}:${code}`).digest("hex");
  }

  /** The key of a customer number's quota: keyed, so the table does not list the numbers people typed. */
  private subjectOf(holderId: string): string {
    return createHmac("sha256", this.deps.codeKey).update(`holder-sign-in-subject:${holderId}`).digest("hex").slice(0, 40);
  }

  private untilError(code: "CODE_DAILY_LIMIT" | "CODE_GUESSES_EXHAUSTED", until: number, at: number): UkeyError {
    return new UkeyError(code, { params: { until: new Date(until).toISOString(), retryAfterSeconds: Math.ceil((until - at) / 1000) } });
  }

  /** Counts a refusal in the audit (aggregated): a real holder by id, anything else by its keyed hash. */
  private refused(holderId: string | null, subject: string, code: string, purpose: CodePurpose): void {
    const action = `holder.${purpose}.refused`;
    this.deps.refusals.record(holderId
      ? { action, actor: `holder:${holderId}`, subjectType: "holder", subjectId: holderId, data: { code } }
      : { action, actor: "unknown", subjectType: "customer-number", subjectId: subject, data: { code } });
  }

  /** Sends after the answer; the sender records the outcome (failures included) in the outbox. */
  private deliver(send: () => Promise<unknown>): void {
    const p: Promise<unknown> = send().catch(() => undefined).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async purgeNowAndThen(at: number): Promise<void> {
    if (at - this.lastPurge < PURGE_EVERY_MS && at >= this.lastPurge) return;
    this.lastPurge = at;
    // Codes expired a day ago and quotas whose window ended can no longer change an answer.
    await this.deps.store.holderSignIns.purge(at - QUOTA_WINDOW_MS, at - QUOTA_WINDOW_MS);
  }
}
