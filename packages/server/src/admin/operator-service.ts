import { UkeyError, type Clock } from "@ukey/policy";
import type { OperatorRecord, OperatorRole, Store } from "@ukey/store";
import type { ServerContext } from "../server-context.js";
import {
  checkPasswordStrength, hashPassword, matchTotp, newTotpSecret, openTotpSecret, sealTotpSecret, totpUri, verifyPassword,
} from "./operator-credentials.js";
import { raKeyFiles, readOrCreateKeyFile } from "./secret-key-file.js";
import { SESSION_TTL_MS, signSessionToken, verifySessionToken, type SessionClaims } from "./session-token.js";

/** The roles, weakest first. */
export const operatorRoles: readonly OperatorRole[] = ["auditor", "operator", "admin"];

/** Failed sign-ins in a row that lock an account. */
export const SIGN_IN_LOCK_AFTER = 5;
/** How long a lock lasts: 15 minutes. */
export const SIGN_IN_LOCK_MS = 15 * 60_000;

/** An operator as the API shows it: no hash, no sealed secret, no TOTP step. */
export interface OperatorView {
  id: string;
  role: OperatorRole;
  certificatePinned: boolean;
  disabled: boolean;
  lockedUntil: number | null;
  createdAt: number;
  updatedAt: number;
}

/** A signed-in operator, as routes see it. */
export interface OperatorPrincipal {
  id: string;
  role: OperatorRole;
  /** "operator:<id>", the audit log's actor. */
  actor: string;
  claims: SessionClaims;
}

type OperatorStore = Pick<Store, "transaction" | "operators" | "audit">;

/** True when `role` may do what `required` may. */
export function roleAllows(role: OperatorRole, required: OperatorRole): boolean {
  return operatorRoles.indexOf(role) >= operatorRoles.indexOf(required);
}

/**
 * Operator accounts and sign-in. A password (scrypt) and a TOTP code
 * (RFC 6238) are both required; five failures in a row lock the account for
 * 15 minutes, and a TOTP step is accepted once (the database compares and
 * sets, so two instances cannot both accept it). A good sign-in gives a
 * stateless HMAC-signed session token (default 30 minutes). Every sign-in,
 * good or refused, is in the audit log, never with a secret.
 */
export class OperatorService {
  constructor(private readonly deps: { store: OperatorStore; clock: Clock; sessionKey: Buffer; totpKey: Buffer; issuer: string; sessionTtlMs?: number }) {}

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
   * Signs in with password and TOTP code.
   * @throws UkeyError OPERATOR_SIGN_IN_FAILED (unknown or disabled account, wrong password, wrong or replayed code),
   *   OPERATOR_LOCKED (locked now, or this failure locked it).
   */
  async signIn(id: string, password: string, totpCode: string, meta: { ip?: string } = {}): Promise<{ token: string; expiresAt: number; operator: OperatorView }> {
    const now = this.deps.clock.now();
    const at = now.getTime();
    const op = await this.deps.store.operators.get(id);
    const refuse = async (reason: string, error: UkeyError, counted: boolean): Promise<never> => {
      let after = op;
      if (counted && op) after = await this.deps.store.operators.recordFailure(op.id, at, SIGN_IN_LOCK_AFTER, at + SIGN_IN_LOCK_MS);
      const lockedNow = counted && after?.lockedUntil != null && after.lockedUntil > at;
      await this.deps.store.audit.append({
        at, actor: `operator:${id.slice(0, 64)}`, action: "operator.sign-in-refused", subjectType: "operator", subjectId: id.slice(0, 64),
        data: { reason, ...(after ? { failedAttempts: after.failedAttempts } : {}), ...(lockedNow ? { lockedUntil: after!.lockedUntil } : {}), ...(meta.ip ? { ip: meta.ip } : {}) },
      });
      throw lockedNow ? lockedError(after!.lockedUntil!) : error;
    };
    const failed = new UkeyError("OPERATOR_SIGN_IN_FAILED");
    if (op && op.lockedUntil !== null && op.lockedUntil > at) return refuse("locked", lockedError(op.lockedUntil), false);
    // The hash is computed for unknown accounts too, so that timing does not tell which exist.
    const passwordOk = await verifyPassword(password, op?.passwordHash);
    if (!op) return refuse("unknown-account", failed, false);
    if (op.disabled) return refuse("disabled", failed, false);
    const step = matchTotp(openTotpSecret(this.deps.totpKey, op.id, op.totpSealed), totpCode, now);
    if (!passwordOk) return refuse("wrong-password", failed, true);
    if (step === null) return refuse("wrong-totp", failed, true);
    if (!(await this.deps.store.operators.acceptSignIn(op.id, step, at))) return refuse("totp-replayed", failed, true);
    return this.issue(op, "pwd+otp", at, meta);
  }

  /**
   * Signs in with a verified client certificate whose SubjectPublicKeyInfo
   * hash is pinned on an account (the TLS port only: the caller must have
   * checked the chain).
   * @throws UkeyError OPERATOR_SIGN_IN_FAILED, OPERATOR_LOCKED.
   */
  async signInWithCertificate(spkiSha256: string, meta: { ip?: string } = {}): Promise<{ token: string; expiresAt: number; operator: OperatorView }> {
    const at = this.deps.clock.now().getTime();
    const op = await this.deps.store.operators.findByCertSpki(spkiSha256);
    const reason = !op ? "unknown-certificate" : op.disabled ? "disabled" : op.lockedUntil !== null && op.lockedUntil > at ? "locked" : undefined;
    if (reason) {
      await this.deps.store.audit.append({
        at, actor: op ? `operator:${op.id}` : "unknown", action: "operator.sign-in-refused", subjectType: "operator", subjectId: op?.id ?? spkiSha256,
        data: { reason, method: "certificate", ...(meta.ip ? { ip: meta.ip } : {}) },
      });
      throw reason === "locked" ? lockedError(op!.lockedUntil!) : new UkeyError("OPERATOR_SIGN_IN_FAILED");
    }
    return this.issue(op!, "cert", at, meta);
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

  /** Every account, in id order. */
  async list(): Promise<OperatorView[]> {
    return (await this.deps.store.operators.list()).map(operatorView);
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
    return { token, expiresAt, operator: operatorView({ ...op, failedAttempts: 0, lockedUntil: null }) };
  }
}

function lockedError(until: number): UkeyError {
  return new UkeyError("OPERATOR_LOCKED", { params: { until: new Date(until).toISOString() } });
}

/** The account without any secret. */
export function operatorView(o: OperatorRecord): OperatorView {
  return { id: o.id, role: o.role, certificatePinned: o.certSpkiSha256 !== null, disabled: o.disabled, lockedUntil: o.lockedUntil, createdAt: o.createdAt, updatedAt: o.updatedAt };
}

/**
 * The OperatorService of a server context: session key
 * `<data-dir>/secrets/session-hmac.key` and TOTP sealing key
 * `<data-dir>/secrets/operator-totp.key`, each created (mode 0600) on first use.
 * @throws UkeyError FILE_UNREADABLE when a key file cannot be read or made.
 */
export function operatorServiceFor(ctx: Pick<ServerContext, "store" | "clock" | "layout" | "config">): OperatorService {
  const files = raKeyFiles(ctx.layout);
  return new OperatorService({
    store: ctx.store, clock: ctx.clock, issuer: `ukey-renew ${ctx.config.institution.name}`,
    sessionKey: readOrCreateKeyFile(files.sessionHmac), totpKey: readOrCreateKeyFile(files.operatorTotp),
  });
}
