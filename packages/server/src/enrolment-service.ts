import { createHmac, randomInt, randomUUID, timingSafeEqual } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { EnrolmentRecord, Repositories, Store } from "@ukey/store";
import { raKeyFiles, readOrCreateKeyFile } from "./admin/secret-key-file.js";
import type { ServerContext } from "./server-context.js";

/** Digits and capitals without 0, O, 1 and I, which are misread when a code is read out or typed. 32 symbols: 5 bits each. */
export const AUTHORIZATION_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

const DAY = 86_400_000;

/** An enrolment as operators see it: everything but the code's hash. */
export type EnrolmentView = Omit<EnrolmentRecord, "codeHash">;

/** What `create` returns: the authorization code is in this object and nowhere else, ever. */
export interface CreatedEnrolment {
  enrolment: EnrolmentView;
  /** 10 digits, the last a Luhn check digit, e.g. "4728193056". */
  referenceNumber: string;
  /** 12 characters of AUTHORIZATION_CODE_ALPHABET in groups of four, e.g. "K7QM-3XTA-9HPW". */
  authorizationCode: string;
}

declare const verifiedBrand: unique symbol;

/**
 * An enrolment whose reference number and code were just checked by
 * `verify`. Only `verify` makes one, so `redeemIn` cannot be reached with a
 * guessed code that was never counted.
 */
export type VerifiedEnrolment = EnrolmentRecord & { readonly [verifiedBrand]: true };

type EnrolmentStore = Pick<Store, "transaction" | "enrolments" | "profiles" | "holders">;

/** The Luhn check digit of a string of digits. */
export function luhnCheckDigit(digits: string): string {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 0) { d *= 2; if (d > 9) d -= 9; }
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

/** Drops spaces and dashes; a reference number is then 10 digits whose last is the Luhn check digit of the rest. */
export function normaliseReferenceNumber(input: string): string | undefined {
  const s = input.replace(/[\s-]/g, "");
  return /^[0-9]{10}$/.test(s) && luhnCheckDigit(s.slice(0, 9)) === s[9] ? s : undefined;
}

/** Upper-cases and drops spaces and dashes, so "k7qm 3xta-9hpw" is the code "K7QM3XTA9HPW". */
export function normaliseAuthorizationCode(input: string): string {
  return input.replace(/[\s-]/g, "").toUpperCase();
}

/**
 * Enrolments: an operator gives a holder a reference number and an
 * authorization code (delivered out of band, as Chinese CAs do with 参考号
 * and 授权码) to download a certificate for a profile onto a key that holds
 * none. The code is stored only as an HMAC-SHA256 under a key of the data
 * directory and compared in constant time; it is single use, expires
 * (default 14 days) and locks after `maxAttempts` wrong tries (default 5).
 * Every attempt, good or bad, is in the audit log, never with the code.
 *
 * Redemption is two calls so that the attempt counter survives a refusal
 * and the code is consumed together with the issuance:
 * `verify` (its own transaction; a wrong code is counted and committed)
 * returns a VerifiedEnrolment, and `redeemIn(r, verified, actor)` inside the
 * caller's issuance transaction marks it used (compare-and-set, so of two
 * racing requests one wins). `redeem` does both for callers with nothing
 * else to commit.
 */
export class EnrolmentService {
  constructor(private readonly deps: { store: EnrolmentStore; clock: Clock; codeKey: Buffer }) {}

  /**
   * Creates an enrolment for a holder and profile.
   * @throws UkeyError HOLDER_NOT_FOUND, PROFILE_NOT_FOUND, REQUEST_INVALID (ttlDays not 1-90, maxAttempts not 1-10).
   */
  async create(o: {
    holderId: string; profileId: string; actor: string; ttlDays?: number; maxAttempts?: number;
    /** A holder's self-service re-download: the certificate it replaces and how long it lasts (instead of ttlDays). */
    selfService?: { replacesSerial: string; ttlMs: number };
  }): Promise<CreatedEnrolment> {
    const ttlDays = o.ttlDays ?? 14;
    const maxAttempts = o.maxAttempts ?? 5;
    if (!Number.isInteger(ttlDays) || ttlDays < 1 || ttlDays > 90) throw new UkeyError("REQUEST_INVALID", { params: { reason: "ttlDays must be a whole number of days, 1 to 90" } });
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) throw new UkeyError("REQUEST_INVALID", { params: { reason: "maxAttempts must be 1 to 10" } });
    const ttlMs = o.selfService?.ttlMs ?? ttlDays * DAY;
    const at = this.deps.clock.now().getTime();
    for (let attempt = 0; ; attempt++) {
      const referenceNumber = newReferenceNumber();
      const authorizationCode = newAuthorizationCode();
      const record: EnrolmentRecord = {
        id: `enr-${randomUUID()}`, holderId: o.holderId, profileId: o.profileId, referenceNumber,
        codeHash: this.hash(referenceNumber, normaliseAuthorizationCode(authorizationCode)),
        expiresAt: at + ttlMs, attempts: 0, maxAttempts, status: "open", createdAt: at, updatedAt: at,
        replacesSerial: o.selfService?.replacesSerial ?? null,
      };
      try {
        await this.deps.store.transaction(async (r) => {
          if (!(await r.holders.get(o.holderId))) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: o.holderId } });
          if (!(await r.profiles.get(o.profileId))) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: o.profileId } });
          await r.enrolments.insert(record);
          await r.audit.append({
            at, actor: o.actor, action: "enrolment.created", subjectType: "enrolment", subjectId: record.id,
            data: {
              holderId: o.holderId, profileId: o.profileId, referenceNumber, expiresAt: record.expiresAt, maxAttempts,
              ...(o.selfService ? { selfService: true, replaces: o.selfService.replacesSerial } : {}),
            },
          });
        });
      } catch (e) {
        // A reference number drawn twice (one in a billion per pair): draw again.
        if (attempt < 3 && e instanceof UkeyError && e.code === "RECORD_DUPLICATE") continue;
        throw e;
      }
      return { enrolment: enrolmentView(record), referenceNumber, authorizationCode };
    }
  }

  /**
   * Checks a reference number and authorization code, in a transaction of
   * its own so that a wrong code is counted even though the caller fails.
   * Does not consume the enrolment: pass the result to `redeemIn`.
   * @throws UkeyError DOWNLOAD_CODE_INVALID (wrong code for an open reference: the count goes up, the tries left in params),
   *   CODE_INVALID (unknown reference, mistyped check digit, or a wrong code for a reference no longer open),
   *   CODE_ATTEMPTS_EXCEEDED (this try reached the limit, or it was reached before), CODE_EXPIRED,
   *   CODE_ALREADY_USED, CODE_REVOKED (the last three only when the code itself is right).
   */
  async verify(referenceNumber: string, code: string, actor: string): Promise<VerifiedEnrolment> {
    const at = this.deps.clock.now().getTime();
    const ref = normaliseReferenceNumber(referenceNumber);
    const given = normaliseAuthorizationCode(code);
    const outcome = await this.deps.store.transaction(async (r): Promise<{ error: UkeyError } | { ok: EnrolmentRecord }> => {
      const refused = async (reason: string, error: UkeyError, e?: EnrolmentRecord) => {
        await r.audit.append({
          at, actor, action: "enrolment.code-refused", subjectType: "enrolment", subjectId: e?.id ?? "unknown",
          data: { reason, referenceNumber: ref ?? "malformed", ...(e ? { attempts: e.attempts, maxAttempts: e.maxAttempts } : {}) },
        });
        return { error };
      };
      if (!ref) return refused("malformed-reference", new UkeyError("CODE_INVALID", { detail: "the reference number is not 10 digits with a matching check digit" }));
      const e = await r.enrolments.lockByReference(ref);
      if (!e) return refused("unknown-reference", new UkeyError("CODE_INVALID"));
      if (e.status === "locked") return refused("locked", new UkeyError("CODE_ATTEMPTS_EXCEEDED"), e);
      const right = this.matches(e, given);
      if (!right) {
        if (e.status !== "open" || e.expiresAt <= at) return refused(`wrong-code-${e.status === "open" ? "expired" : e.status}`, new UkeyError("CODE_INVALID"), e);
        const attempts = e.attempts + 1;
        const locked = attempts >= e.maxAttempts;
        await r.enrolments.update(e.id, { attempts, ...(locked ? { status: "locked" as const } : {}) }, at);
        return refused(locked ? "wrong-code-locked" : "wrong-code", locked
          ? new UkeyError("CODE_ATTEMPTS_EXCEEDED")
          : new UkeyError("DOWNLOAD_CODE_INVALID", { params: { triesLeft: e.maxAttempts - attempts } }), { ...e, attempts });
      }
      if (e.status === "used") return refused("used", new UkeyError("CODE_ALREADY_USED"), e);
      if (e.status === "revoked") return refused("revoked", new UkeyError("CODE_REVOKED"), e);
      if (e.status === "expired") return refused("expired", new UkeyError("CODE_EXPIRED"), e);
      if (e.expiresAt <= at) {
        await r.enrolments.update(e.id, { status: "expired" }, at);
        return refused("expired", new UkeyError("CODE_EXPIRED"), e);
      }
      await r.audit.append({ at, actor, action: "enrolment.code-verified", subjectType: "enrolment", subjectId: e.id, data: { referenceNumber: ref, attempts: e.attempts } });
      return { ok: e };
    });
    if ("error" in outcome) throw outcome.error;
    return outcome.ok as VerifiedEnrolment;
  }

  /**
   * Consumes a verified enrolment inside the caller's transaction `r`, so
   * that it is used exactly when the issuance it pays for commits. Audited
   * as enrolment.redeemed with `data` (e.g. the new certificate's serial).
   * @throws UkeyError CODE_ALREADY_USED (another request consumed it first), CODE_REVOKED, CODE_EXPIRED,
   *   CODE_ATTEMPTS_EXCEEDED, ENROLMENT_NOT_FOUND.
   */
  async redeemIn(r: Repositories, verified: VerifiedEnrolment, actor: string, data: Record<string, unknown> = {}): Promise<EnrolmentRecord> {
    const at = this.deps.clock.now().getTime();
    const e = await r.enrolments.lockByReference(verified.referenceNumber);
    if (!e || e.id !== verified.id) throw new UkeyError("ENROLMENT_NOT_FOUND", { params: { enrolment: verified.id } });
    const byStatus = { used: "CODE_ALREADY_USED", revoked: "CODE_REVOKED", expired: "CODE_EXPIRED", locked: "CODE_ATTEMPTS_EXCEEDED" } as const;
    if (e.status !== "open") throw new UkeyError(byStatus[e.status]);
    if (e.expiresAt <= at) throw new UkeyError("CODE_EXPIRED");
    if (!(await r.enrolments.transition(e.id, "open", "used", at))) throw new UkeyError("CODE_ALREADY_USED");
    await r.audit.append({ at, actor, action: "enrolment.redeemed", subjectType: "enrolment", subjectId: e.id, data: { referenceNumber: e.referenceNumber, ...data } });
    return { ...e, status: "used", updatedAt: at };
  }

  /**
   * `verify`, then `redeemIn` in a transaction of its own.
   * @throws what those two throw.
   */
  async redeem(referenceNumber: string, code: string, actor: string): Promise<EnrolmentRecord> {
    const verified = await this.verify(referenceNumber, code, actor);
    return this.deps.store.transaction((r) => this.redeemIn(r, verified, actor));
  }

  /**
   * Withdraws an open enrolment: its code stops working at once.
   * @throws UkeyError ENROLMENT_NOT_FOUND, ENROLMENT_NOT_OPEN (used, expired, locked or already revoked).
   */
  async revoke(id: string, actor: string): Promise<EnrolmentView> {
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r) => {
      const e = await r.enrolments.get(id);
      if (!e) throw new UkeyError("ENROLMENT_NOT_FOUND", { params: { enrolment: id } });
      if (!(await r.enrolments.transition(id, "open", "revoked", at))) throw new UkeyError("ENROLMENT_NOT_OPEN", { params: { enrolment: id, status: e.status } });
      await r.audit.append({ at, actor, action: "enrolment.revoked", subjectType: "enrolment", subjectId: id, data: { holderId: e.holderId, referenceNumber: e.referenceNumber } });
      return enrolmentView({ ...e, status: "revoked", updatedAt: at });
    });
  }

  /** Newest first (limit default 100, at most 1000), optionally of one holder and one status; never with hashes. */
  async list(q: { holderId?: string; status?: EnrolmentRecord["status"]; limit?: number; offset?: number } = {}): Promise<EnrolmentView[]> {
    return (await this.deps.store.enrolments.list(q)).map(enrolmentView);
  }

  /**
   * One enrolment, without its hash.
   * @throws UkeyError ENROLMENT_NOT_FOUND.
   */
  async get(id: string): Promise<EnrolmentView> {
    const e = await this.deps.store.enrolments.get(id);
    if (!e) throw new UkeyError("ENROLMENT_NOT_FOUND", { params: { enrolment: id } });
    return enrolmentView(e);
  }

  private hash(referenceNumber: string, code: string): string {
    return `hmac-sha256$${createHmac("sha256", this.deps.codeKey).update(`enrolment-code:${referenceNumber}:${code}`).digest("hex")}`;
  }

  private matches(e: EnrolmentRecord, code: string): boolean {
    const expected = Buffer.from(e.codeHash);
    const actual = Buffer.from(this.hash(e.referenceNumber, code));
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
}

/** The enrolment without its code hash. */
export function enrolmentView(e: EnrolmentRecord): EnrolmentView {
  const { codeHash: _hidden, ...view } = e;
  return view;
}

/**
 * The EnrolmentService of a server context, with the code key from
 * `<data-dir>/secrets/enrolment-code.key` (created on first use).
 * @throws UkeyError FILE_UNREADABLE when the key file cannot be read or made.
 */
export function enrolmentServiceFor(ctx: Pick<ServerContext, "store" | "clock" | "layout">): EnrolmentService {
  return new EnrolmentService({ store: ctx.store, clock: ctx.clock, codeKey: readOrCreateKeyFile(raKeyFiles(ctx.layout).enrolmentCode) });
}

/** 9 random digits (the first not 0, so that spreadsheets keep it whole) and a Luhn check digit. */
function newReferenceNumber(): string {
  let s = String(randomInt(1, 10));
  for (let i = 0; i < 8; i++) s += String(randomInt(0, 10));
  return s + luhnCheckDigit(s);
}

/** 12 symbols (60 bits) in groups of four for reading out. */
function newAuthorizationCode(): string {
  let s = "";
  for (let i = 0; i < 12; i++) s += AUTHORIZATION_CODE_ALPHABET[randomInt(0, AUTHORIZATION_CODE_ALPHABET.length)];
  return `${s.slice(0, 4)}-${s.slice(4, 8)}-${s.slice(8)}`;
}
