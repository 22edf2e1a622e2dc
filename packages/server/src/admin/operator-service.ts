import { createHmac } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { OperatorRecord, OperatorRole, Store } from "@ukey/store";
import type { RefusalLog } from "../audit/refusal-log.js";
import type { ServerContext } from "../server-context.js";
import {
  checkPasswordStrength, hashPassword, matchTotp, newTotpSecret, openTotpSecret, sealTotpSecret, totpUri, verifyPassword,
} from "./operator-credentials.js";
import { PasswordHashQueue } from "./password-hash-queue.js";
import { raKeyFiles, readOrCreateKeyFile } from "./secret-key-file.js";
import { SESSION_TTL_MS, signSessionToken, verifySessionToken, type SessionClaims } from "./session-token.js";

/** The roles, weakest first. */
export const operatorRoles: readonly OperatorRole[] = ["auditor", "operator", "admin"];

/**
 * Back-off of refused operator sign-ins, per account and client address:
 * after `afterFailures` failures in a row (default 5) the pair pauses for
 * `firstPauseMs` (default a minute), doubled after each further failure up
 * to `maxPauseMs` (default an hour); failures are forgotten 24 hours after
 * the last one, or at a good sign-in from that address.
 */
export interface SignInBackOff {
  afterFailures: number;
  firstPauseMs: number;
  maxPauseMs: number;
}

const defaultBackOff: SignInBackOff = { afterFailures: 5, firstPauseMs: 60_000, maxPauseMs: 3_600_000 };
/** Failures older than this are forgotten. */
const FORGET_FAILURES_MS = 24 * 3_600_000;
/** How often an instance deletes back-off rows nobody failed on for a day. */
const PURGE_EVERY_MS = 10 * 60_000;

/** An operator as the API shows it: no hash, no sealed secret, no TOTP step. */
export interface OperatorView {
  id: string;
  role: OperatorRole;
  certificatePinned: boolean;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
  /** In lists: the addresses whose password sign-ins to this account are paused now, and until when at the latest. */
  signInPaused?: { clients: number; until: number } | null;
}

/** A signed-in operator, as routes see it. */
export interface OperatorPrincipal {
  id: string;
  role: OperatorRole;
  /** "operator:<id>", the audit log's actor. */
  actor: string;
  claims: SessionClaims;
}

type OperatorStore = Pick<Store, "transaction" | "operators" | "audit" | "signInBackoffs">;

/** True when `role` may do what `required` may. */
export function roleAllows(role: OperatorRole, required: OperatorRole): boolean {
  return operatorRoles.indexOf(role) >= operatorRoles.indexOf(required);
}

/** What an OperatorService works with. */
export interface OperatorServiceDeps {
  store: OperatorStore;
  clock: Clock;
  sessionKey: Buffer;
  totpKey: Buffer;
  issuer: string;
  sessionTtlMs?: number;
  /** Where password hashes of sign-ins wait their turn; default one at a time, 16 waiting. */
  hashes?: PasswordHashQueue;
  /** Default: 5 failures, then 1 minute doubling up to an hour. */
  backOff?: SignInBackOff;
  /** Where refused sign-ins are counted (the audit's refusal log). */
  refusals: Pick<RefusalLog, "record">;
}

/**
 * Operator accounts and sign-in. A password (scrypt) and a TOTP code
 * (RFC 6238) are both required, and a TOTP step is accepted once (the
 * database compares and sets, so two instances cannot both accept it). A
 * good sign-in gives a stateless HMAC-signed session token (default 30
 * minutes).
 *
 * Nobody can lock an account for its operator: refused password sign-ins
 * pause only the pair of that account and that client address (SignInBackOff,
 * kept in the database so that every instance applies it), unknown ids
 * exactly like known ones; certificate sign-in never pauses; an admin can
 * lift a pause (`unlock`). Password hashes run through a bounded queue
 * (PasswordHashQueue), so a flood of sign-ins cannot starve renewals, and an
 * unknown account costs the same hash as a known one. Every sign-in, good or
 * refused, is audited, never with a secret: a refused id that names no
 * account is audited as a keyed hash, since it may be a password typed in
 * the wrong field. Refusals are counted per window (RefusalLog).
 */
export class OperatorService {
  private readonly hashes: PasswordHashQueue;
  private readonly backOff: SignInBackOff;
  private lastPurge = Number.NEGATIVE_INFINITY;

  constructor(private readonly deps: OperatorServiceDeps) {
    this.hashes = deps.hashes ?? new PasswordHashQueue();
    this.backOff = deps.backOff ?? defaultBackOff;
  }

  /**
   * Creates an account. Returns the TOTP secret and its otpauth:// URI:
   * the only time they are shown.
   * @throws UkeyError OPERATOR_PASSWORD_WEAK, REQUEST_INVALID (id or role), RECORD_DUPLICATE.
   */
  async create(o: { id: string; role: OperatorRole; password: string; actor: string; certSpkiSha256?: string | null }): Promise<{ operator: OperatorView; totpSecret: string; totpUri: string }> {
    if (!/^[a-z0-9][a-z0-9._-]{1,63}$/.test(o.id)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "an operator id is 2-64 lower-case letters, digits, '.', '_' or '-'" } });
    if (!operatorRoles.includes(o.role)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `role must be one of ${operatorRoles.join(", ")}` } });
    if (o.certSpkiSha256 != null && !/^[0-9a-f]{64}$/.test(o.certSpkiSha256)) throw new UkeyError("REQUEST_INVALID", { params: { reason: "certSpkiSha256 is 64 lower-case hex digits" } });
    checkPasswordStrength(o.password);
    const totpSecret = newTotpSecret();
    const at = this.deps.clock.now().getTime();
    const record: OperatorRecord = {
      id: o.id, role: o.role, passwordHash: await hashPassword(o.password), totpSealed: sealTotpSecret(this.deps.totpKey, o.id, totpSecret),
      totpLastStep: null, failedAttempts: 0, lockedUntil: null, certSpkiSha256: o.certSpkiSha256 ?? null, disabled: false, createdAt: at, updatedAt: at,
    };
    await this.deps.store.transaction(async (r) => {
      await r.operators.insert(record);
      await r.audit.append({ at, actor: o.actor, action: "operator.created", subjectType: "operator", subjectId: o.id, data: { role: o.role, certificatePinned: record.certSpkiSha256 !== null } });
    });
    return { operator: operatorView(record), totpSecret, totpUri: totpUri(totpSecret, o.id, this.deps.issuer) };
  }

  /**
   * Signs in with password and TOTP code from the client address `meta.ip`.
   * @throws UkeyError OPERATOR_SIGN_IN_FAILED (unknown or disabled account, wrong password, wrong or replayed code),
   *   OPERATOR_SIGN_IN_BACKED_OFF (this account paused for this address, now or by this failure),
   *   SIGN_IN_BUSY (too many sign-ins waiting for their password hash).
   */
  async signIn(id: string, password: string, totpCode: string, meta: { ip?: string } = {}): Promise<{ token: string; expiresAt: number; operator: OperatorView }> {
    const now = this.deps.clock.now();
    const at = now.getTime();
    const account = this.accountKey(id);
    const client = meta.ip ?? "unknown";
    try {
      // A flood is refused before it costs even a database read.
      this.hashes.refuseWhenFull();
    } catch (e) {
      this.refused(undefined, account, { reason: "busy", ip: client });
      throw e;
    }
    await this.purgeNowAndThen(at);
    const op = await this.deps.store.operators.get(id);
    // Every failure counts, for unknown and disabled accounts as for others: a pause must not tell which exist.
    const refuse = async (reason: string, error: UkeyError): Promise<never> => {
      const { pausedUntil } = await this.deps.store.signInBackoffs.recordFailure(account, client, at, at - FORGET_FAILURES_MS, (n) => this.pauseAfter(n));
      this.refused(op, account, { reason, ip: client, ...(pausedUntil !== null ? { pausedUntil } : {}) });
      throw pausedUntil !== null ? this.backedOff(pausedUntil, at) : error;
    };
    const failed = new UkeyError("OPERATOR_SIGN_IN_FAILED");
    const paused = await this.deps.store.signInBackoffs.get(account, client);
    if (paused?.pausedUntil != null && paused.pausedUntil > at) {
      this.refused(op, account, { reason: "paused", ip: client });
      throw this.backedOff(paused.pausedUntil, at);
    }
    let passwordOk: boolean;
    try {
      // The hash is computed for unknown accounts too, so that timing does not tell which exist.
      passwordOk = await this.hashes.run(() => verifyPassword(password, op?.passwordHash));
    } catch (e) {
      if (e instanceof UkeyError && e.code === "SIGN_IN_BUSY") this.refused(op, account, { reason: "busy", ip: client });
      throw e;
    }
    if (!op) return refuse("unknown-account", failed);
    if (op.disabled) return refuse("disabled", failed);
    const step = matchTotp(openTotpSecret(this.deps.totpKey, op.id, op.totpSealed), totpCode, now);
    if (!passwordOk) return refuse("wrong-password", failed);
    if (step === null) return refuse("wrong-totp", failed);
    if (!(await this.deps.store.operators.acceptSignIn(op.id, step, at))) return refuse("totp-replayed", failed);
    await this.deps.store.signInBackoffs.clear(account, client);
    return this.issue(op, "pwd+otp", at, meta);
  }

  /**
   * Signs in with a verified client certificate whose SubjectPublicKeyInfo
   * hash is pinned on an account (the TLS port only: the caller must have
   * checked the chain). Never paused by refused password sign-ins: the TLS
   * handshake proved the key, there is nothing to guess.
   * @throws UkeyError OPERATOR_SIGN_IN_FAILED.
   */
  async signInWithCertificate(spkiSha256: string, meta: { ip?: string } = {}): Promise<{ token: string; expiresAt: number; operator: OperatorView }> {
    const at = this.deps.clock.now().getTime();
    const op = await this.deps.store.operators.findByCertSpki(spkiSha256);
    const reason = !op ? "unknown-certificate" : op.disabled ? "disabled" : undefined;
    if (reason) {
      this.deps.refusals.record({
        actor: op ? `operator:${op.id}` : "unknown", action: "operator.sign-in-refused", subjectType: "operator", subjectId: op?.id ?? spkiSha256,
        data: { reason, method: "certificate", ...(meta.ip ? { ip: meta.ip } : {}) },
      });
      throw new UkeyError("OPERATOR_SIGN_IN_FAILED");
    }
    return this.issue(op!, "cert", at, meta);
  }

  /**
   * Lifts every pause of an account's password sign-ins (all addresses),
   * audited as `operator.unlocked` by `actor`. Returns how many addresses were paused or counting failures.
   * @throws UkeyError RECORD_NOT_FOUND for an unknown account.
   */
  async unlock(id: string, actor: string): Promise<{ operator: OperatorView; clientsCleared: number }> {
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r) => {
      const op = await r.operators.get(id);
      if (!op) throw new UkeyError("RECORD_NOT_FOUND", { params: { record: `operator ${id}` } });
      const clientsCleared = await r.signInBackoffs.clearAccount(this.accountKey(id));
      await r.audit.append({ at, actor, action: "operator.unlocked", subjectType: "operator", subjectId: id, data: { clientsCleared } });
      return { operator: { ...operatorView(op), signInPaused: null }, clientsCleared };
    });
  }

  /**
   * The operator a bearer token belongs to, with the role the account has
   * now (a demoted or disabled operator loses rights at once).
   * @throws UkeyError SESSION_INVALID.
   */
  async authenticate(token: string): Promise<OperatorPrincipal> {
    const claims = verifySessionToken(this.deps.sessionKey, token, this.deps.clock.now().getTime());
    const op = await this.deps.store.operators.get(claims.sub);
    if (!op || op.disabled) throw new UkeyError("SESSION_INVALID", { detail: "the account is gone or disabled" });
    return { id: op.id, role: op.role, actor: `operator:${op.id}`, claims };
  }

  /** Every account, in id order, with the addresses its password sign-ins are paused for now. */
  async list(): Promise<OperatorView[]> {
    const at = this.deps.clock.now().getTime();
    const paused = new Map((await this.deps.store.signInBackoffs.paused(at)).map((p) => [p.account, { clients: p.clients, until: p.until }]));
    return (await this.deps.store.operators.list()).map((o) => ({ ...operatorView(o), signInPaused: paused.get(this.accountKey(o.id)) ?? null }));
  }

  /**
   * Changes an account's role or disabled flag.
   * @throws UkeyError RECORD_NOT_FOUND, REQUEST_INVALID.
   */
  async update(id: string, patch: { role?: OperatorRole; disabled?: boolean }, actor: string): Promise<OperatorView> {
    if (patch.role !== undefined && !operatorRoles.includes(patch.role)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `role must be one of ${operatorRoles.join(", ")}` } });
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r) => {
      await r.operators.update(id, patch, at);
      await r.audit.append({ at, actor, action: "operator.updated", subjectType: "operator", subjectId: id, data: { ...patch } });
      return operatorView((await r.operators.get(id))!);
    });
  }

  private async issue(op: OperatorRecord, amr: SessionClaims["amr"], at: number, meta: { ip?: string }) {
    const expiresAt = at + (this.deps.sessionTtlMs ?? SESSION_TTL_MS);
    const token = signSessionToken(this.deps.sessionKey, { sub: op.id, role: op.role, iat: at, exp: expiresAt, amr });
    await this.deps.store.audit.append({
      at, actor: `operator:${op.id}`, action: "operator.signed-in", subjectType: "operator", subjectId: op.id,
      data: { method: amr, expiresAt, ...(meta.ip ? { ip: meta.ip } : {}) },
    });
    return { token, expiresAt, operator: operatorView(op) };
  }

  /**
   * The key of an operator id typed at sign-in: a keyed hash (under the
   * session key every instance shares), so that the back-off table and the
   * audit never hold what was typed, which may be a password.
   */
  private accountKey(id: string): string {
    return createHmac("sha256", this.deps.sessionKey).update(`operator-sign-in-account:${id}`).digest("hex").slice(0, 40);
  }

  private pauseAfter(failures: number): number {
    const { afterFailures, firstPauseMs, maxPauseMs } = this.backOff;
    if (failures < afterFailures) return 0;
    return Math.min(maxPauseMs, firstPauseMs * 2 ** Math.min(30, failures - afterFailures));
  }

  private backedOff(until: number, at: number): UkeyError {
    return new UkeyError("OPERATOR_SIGN_IN_BACKED_OFF", { params: { until: new Date(until).toISOString(), retryAfterSeconds: Math.ceil((until - at) / 1000) } });
  }

  /** Counts a refused password sign-in: a known account by its id, any other id only by its keyed hash. */
  private refused(op: OperatorRecord | undefined, account: string, data: Record<string, unknown>): void {
    this.deps.refusals.record({
      actor: op ? `operator:${op.id}` : "unknown", action: "operator.sign-in-refused", subjectType: "operator", subjectId: op ? op.id : `id-hmac:${account}`,
      data: { method: "password", ...data },
    });
  }

  private async purgeNowAndThen(at: number): Promise<void> {
    if (at - this.lastPurge < PURGE_EVERY_MS && at >= this.lastPurge) return;
    this.lastPurge = at;
    await this.deps.store.signInBackoffs.purge(at - FORGET_FAILURES_MS);
  }
}

/** The account without any secret. */
export function operatorView(o: OperatorRecord): OperatorView {
  return { id: o.id, role: o.role, certificatePinned: o.certSpkiSha256 !== null, disabled: o.disabled, createdAt: o.createdAt, updatedAt: o.updatedAt };
}

/**
 * The OperatorService of a server context: session key
 * `<data-dir>/secrets/session-hmac.key` and TOTP sealing key
 * `<data-dir>/secrets/operator-totp.key`, each created (mode 0600) on first use;
 * password hashes wait in the context's one queue (`signInHashes`), whichever listener asks.
 * @throws UkeyError FILE_UNREADABLE when a key file cannot be read or made.
 */
export function operatorServiceFor(ctx: Pick<ServerContext, "store" | "clock" | "layout" | "config" | "refusals" | "signInHashes">): OperatorService {
  const files = raKeyFiles(ctx.layout);
  const s = ctx.config.signIn;
  return new OperatorService({
    store: ctx.store, clock: ctx.clock, issuer: `ukey-renew ${ctx.config.institution.name}`,
    sessionKey: readOrCreateKeyFile(files.sessionHmac), totpKey: readOrCreateKeyFile(files.operatorTotp), refusals: ctx.refusals,
    hashes: ctx.signInHashes,
    backOff: { afterFailures: s.operatorFailuresBeforePause, firstPauseMs: s.operatorFirstPauseSeconds * 1000, maxPauseMs: s.operatorMaxPauseSeconds * 1000 },
  });
}
