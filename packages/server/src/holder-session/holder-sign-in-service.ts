import { createHmac, randomInt, randomUUID, timingSafeEqual } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { HolderKind, Store } from "@ukey/store";
import type { DeliveryChannel, Senders } from "../delivery/index.js";
import { maskEmail, maskPhone } from "../holder-contact.js";
import { HOLDER_SESSION_TTL_MS, signHolderSession, verifyHolderSession, type HolderSessionClaims } from "./holder-session-token.js";

const CODE_TTL_MS = 5 * 60_000;
const RESEND_MS = 60_000;
const MAX_ATTEMPTS = 5;

/** What a started sign-in answers: where the code went, masked. */
export interface SignInStarted {
  challengeId: string;
  channel: DeliveryChannel;
  sentTo: string;
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
  /** Key of the codes' hashes (the data directory's ID key). */
  codeKey: Buffer;
  /** Key of session tokens. */
  sessionKey: Buffer;
  institution: { name: string };
}

/**
 * Holder sign-in with the customer number and a one-time code sent to the
 * phone (or e-mail) on record: 6 digits, valid 5 minutes, a new one at most
 * every 60 seconds, 5 wrong tries spend it; only a keyed hash of the code
 * is stored, in the database, so any instance checks a code another sent.
 * A verified code gives a stateless bearer token (HMAC-signed) valid 30
 * minutes from its last use.
 */
export class HolderSignInService {
  constructor(private readonly deps: HolderSignInDeps) {}

  /**
   * Sends a sign-in code. `channel` default: sms when a phone is on record, else email.
   * @throws UkeyError HOLDER_SIGN_IN_UNAVAILABLE (unknown holder, or nothing on record for the channel),
   *   CODE_RESEND_TOO_SOON, CODE_DELIVERY_FAILED.
   */
  async start(holderId: string, channel?: DeliveryChannel): Promise<SignInStarted> {
    const { store, clock } = this.deps;
    const at = clock.now().getTime();
    const holder = await store.holders.get(holderId);
    const ch: DeliveryChannel = channel ?? (holder?.phone ? "sms" : "email");
    const to = ch === "sms" ? holder?.phone : holder?.email;
    if (!holder || !to) throw new UkeyError("HOLDER_SIGN_IN_UNAVAILABLE", { detail: holder ? `no ${ch} on record` : "unknown holder" });
    const id = randomUUID();
    const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
    const sentTo = ch === "sms" ? maskPhone(to) : maskEmail(to);
    const added = await store.transaction(async (r) => {
      const result = await r.holderSignIns.insertUnlessRecent({
        id, holderId: holder.id, channel: ch, sentTo, codeHash: this.hash(id, code), expiresAt: at + CODE_TTL_MS, attempts: 0, status: "open",
        createdAt: at, updatedAt: at,
      }, RESEND_MS);
      if (result.inserted) {
        await r.audit.append({ at, actor: `holder:${holder.id}`, action: "holder.sign-in.code-sent", subjectType: "holder", subjectId: holder.id, data: { channel: ch, sentTo } });
      }
      return result;
    });
    if (!added.inserted) {
      throw new UkeyError("CODE_RESEND_TOO_SOON", { params: { seconds: Math.ceil((added.latest.createdAt + RESEND_MS - at) / 1000) } });
    }
    const text = (c: string) => `【${this.deps.institution.name}】登录验证码 ${c}，5 分钟内有效，请勿告诉他人。Your sign-in code is ${c}, valid for 5 minutes; never share it.`;
    await this.deps.senders[ch].send({
      channel: ch, to, subject: { "zh-CN": "登录验证码", en: "Sign-in code" }, text: text(code), redactedText: text("******"), purpose: "otp", holderId: holder.id,
    });
    return { challengeId: id, channel: ch, sentTo, expiresAt: new Date(at + CODE_TTL_MS).toISOString(), resendAt: new Date(at + RESEND_MS).toISOString() };
  }

  /**
   * Checks a code and opens a session.
   * @throws UkeyError CODE_INVALID (wrong, or no such sign-in), CODE_EXPIRED, CODE_ALREADY_USED,
   *   CODE_ATTEMPTS_EXCEEDED (the fifth wrong code, and every try after it).
   */
  async verify(challengeId: string, code: string): Promise<HolderSession> {
    const { store, clock } = this.deps;
    const at = clock.now().getTime();
    // Refusals are returned, not thrown, so that the counted attempt is committed.
    const outcome = await store.transaction(async (r) => {
      const s = await r.holderSignIns.getForUpdate(challengeId);
      if (!s) return { error: new UkeyError("CODE_INVALID", { detail: "no such sign-in" }) };
      const actor = `holder:${s.holderId}`;
      const refuse = async (error: UkeyError) => {
        await r.audit.append({ at, actor, action: "holder.sign-in.refused", subjectType: "holder", subjectId: s.holderId, data: { code: error.code, attempts: s.attempts } });
        return { error };
      };
      if (s.status === "used") return refuse(new UkeyError("CODE_ALREADY_USED"));
      if (s.status === "locked") return refuse(new UkeyError("CODE_ATTEMPTS_EXCEEDED"));
      if (s.expiresAt < at) return refuse(new UkeyError("CODE_EXPIRED"));
      const given = Buffer.from(this.hash(s.id, code.trim()), "hex");
      if (!timingSafeEqual(given, Buffer.from(s.codeHash, "hex"))) {
        const attempts = s.attempts + 1;
        const locked = attempts >= MAX_ATTEMPTS;
        await r.holderSignIns.update(s.id, { attempts, status: locked ? "locked" : "open" }, at);
        s.attempts = attempts;
        return refuse(new UkeyError(locked ? "CODE_ATTEMPTS_EXCEEDED" : "CODE_INVALID"));
      }
      await r.holderSignIns.update(s.id, { attempts: s.attempts, status: "used" }, at);
      const holder = await r.holders.get(s.holderId);
      if (!holder) return { error: new UkeyError("HOLDER_SIGN_IN_UNAVAILABLE", { detail: "holder removed" }) };
      await r.audit.append({ at, actor, action: "holder.signed-in", subjectType: "holder", subjectId: holder.id, data: { channel: s.channel } });
      return { holder };
    });
    if ("error" in outcome) throw outcome.error;
    const h = outcome.holder;
    const claims: HolderSessionClaims = { sub: h.id, kind: h.kind, iat: at, exp: at + HOLDER_SESSION_TTL_MS };
    return { token: signHolderSession(this.deps.sessionKey, claims), expiresAt: new Date(claims.exp).toISOString(), holder: { id: h.id, kind: h.kind, name: h.name } };
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

  private hash(id: string, code: string): string {
    return createHmac("sha256", this.deps.codeKey).update(`holder-sign-in:${id}:${code}`).digest("hex");
  }
}
