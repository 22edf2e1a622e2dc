import { randomUUID } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { KmcRecoveryRecord, KmcRecoveryStatus, OperatorRole, Repositories, Store } from "@ukey/store";
import { operatorRoles, roleAllows, type OperatorPrincipal } from "../admin/operator-service.js";
import type { CreatedEnrolment, EnrolmentService } from "../enrolment-service.js";

const DAY = 86_400_000;

/** How long a request waits for its second person before it can no longer be approved: 7 days. */
export const KEY_RECOVERY_TTL_MS = 7 * DAY;

/** The weakest role that may open a recovery request. */
export const RECOVERY_REQUESTER_ROLE: OperatorRole = "operator";
/** The weakest role that may approve one (always a different person from the requester). */
export const RECOVERY_APPROVER_ROLE: OperatorRole = "auditor";

/** A recovery request as operators see it, with whether it is past its time. */
export type KeyRecoveryView = KmcRecoveryRecord & { expired: boolean };

/** What `approve` returns: the two codes of the download that carries the keys, in this answer only. */
export interface ApprovedRecovery {
  recovery: KeyRecoveryView;
  referenceNumber: string;
  authorizationCode: string;
}

/** Who acts: a signed-in operator (the admin API's principal). */
export type RecoveryActor = Pick<OperatorPrincipal, "id" | "role" | "actor">;

type RecoveryStore = Pick<Store, "transaction" | "kmcRecoveries">;

/**
 * Key recovery under dual control (as Dogtag's KRA and EJBCA's key
 * recovery): one person opens a request to recover a holder's escrowed
 * encryption keys, a different person approves it, and only then do the
 * keys go out, enveloped for the holder's new signing key through a
 * two-code download (recovered-key-delivery.ts).
 *
 * The rule, checked here and not only in the routes:
 * - opening needs the role operator or admin (RECOVERY_REQUESTER_ROLE);
 * - approving needs any operator role (auditor, operator, admin) and a
 *   person other than the requester: nobody approves their own request,
 *   so no single account can recover a key;
 * - a request is decided once (approved or rejected, compare-and-set) and
 *   only while pending and not expired (KEY_RECOVERY_TTL_MS);
 * - rejecting needs no second person (it can only stop a recovery).
 *
 * Approval creates the enrolment (reference number + authorization code,
 * EnrolmentService) whose download carries the keys; the codes are in the
 * approval's answer only. Every request, approval, rejection and refused
 * attempt is in the audit log (kmc.recovery-requested, -approved,
 * -rejected, -refused), never with key material or codes.
 */
export class KeyRecoveryService {
  private readonly ttlMs: number;

  constructor(private readonly deps: {
    store: RecoveryStore & Pick<Store, "holders" | "profiles" | "kmcEscrows">;
    clock: Clock;
    enrolments: Pick<EnrolmentService, "create" | "revoke">;
    ttlMs?: number;
  }) {
    this.ttlMs = deps.ttlMs ?? KEY_RECOVERY_TTL_MS;
  }

  /**
   * Opens a request to recover `escrowIds` (default: every escrow of the
   * holder) for `holderId`, delivered by a download under `profileId`.
   * @throws UkeyError ROLE_FORBIDDEN (an auditor), REQUEST_INVALID (reason empty or over 500 characters),
   *   HOLDER_NOT_FOUND, PROFILE_NOT_FOUND, KMC_RECOVERY_NOTHING_TO_RECOVER (no escrow, or one not the holder's).
   */
  async open(o: { holderId: string; profileId: string; escrowIds?: string[]; reason: string }, by: RecoveryActor): Promise<KeyRecoveryView> {
    const at = this.deps.clock.now().getTime();
    if (!roleAllows(by.role, RECOVERY_REQUESTER_ROLE)) {
      await this.refused(by, "unknown", "role", { role: by.role });
      throw new UkeyError("ROLE_FORBIDDEN", { params: { role: by.role, required: rolesFrom(RECOVERY_REQUESTER_ROLE) } });
    }
    const reason = o.reason.trim();
    if (reason.length < 1 || reason.length > 500) throw new UkeyError("REQUEST_INVALID", { params: { reason: "the reason must be 1 to 500 characters" } });
    const record = await this.deps.store.transaction(async (r) => {
      if (!(await r.holders.get(o.holderId))) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: o.holderId } });
      if (!(await r.profiles.get(o.profileId))) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: o.profileId } });
      const escrows = (await r.kmcEscrows.listByHolder(o.holderId)).map((e) => e.id);
      const nothing = (why: string) => new UkeyError("KMC_RECOVERY_NOTHING_TO_RECOVER", { params: { holder: o.holderId, reason: why } });
      if (escrows.length === 0) throw nothing("the key management centre holds no escrowed key of this holder");
      let chosen = escrows;
      if (o.escrowIds !== undefined) {
        const foreign = o.escrowIds.find((id) => !escrows.includes(id));
        if (foreign !== undefined) throw nothing(`escrow ${foreign} is not one of this holder's`);
        chosen = escrows.filter((id) => o.escrowIds!.includes(id));
        if (chosen.length === 0) throw nothing("no escrow was chosen");
      }
      const rec: KmcRecoveryRecord = {
        id: `rec-${randomUUID()}`, holderId: o.holderId, profileId: o.profileId, escrowIds: chosen, reason, status: "pending",
        requestedBy: by.id, requestedAt: at, expiresAt: at + this.ttlMs, decidedBy: null, decidedAt: null, enrolmentId: null,
        deliveredSpkiSha256: null, deliveredAt: null, updatedAt: at,
      };
      await r.kmcRecoveries.insert(rec);
      await r.audit.append({
        at, actor: by.actor, action: "kmc.recovery-requested", subjectType: "kmc-recovery", subjectId: rec.id,
        data: { holderId: rec.holderId, profileId: rec.profileId, escrowIds: rec.escrowIds, reason, expiresAt: rec.expiresAt },
      });
      return rec;
    });
    return this.view(record, at);
  }

  /**
   * The second person's approval: makes the enrolment whose two codes
   * download the keys, and returns the codes (this answer only).
   * @throws UkeyError KMC_RECOVERY_NOT_FOUND, KMC_RECOVERY_SAME_PERSON (the requester), KMC_RECOVERY_NOT_PENDING
   *   (already approved, rejected or delivered), KMC_RECOVERY_EXPIRED, and what EnrolmentService.create throws.
   *   Each refusal is audited as kmc.recovery-refused and changes nothing else.
   */
  async approve(id: string, by: RecoveryActor): Promise<ApprovedRecovery> {
    // Checked before the enrolment is made, so that a refused approval leaves no codes behind...
    const first = await this.decidable(id, by);
    let created: CreatedEnrolment | undefined;
    try {
      created = await this.deps.enrolments.create({ holderId: first.holderId, profileId: first.profileId, actor: by.actor });
      const enrolment = created;
      const at = this.deps.clock.now().getTime();
      const outcome = await this.deps.store.transaction(async (r) => {
        // ...and again under the row's lock: of two racing decisions one wins.
        const refusal = await this.check(r, id, by, at);
        if ("error" in refusal) return refusal;
        const rec = refusal.ok;
        const patch = { decidedBy: by.id, decidedAt: at, enrolmentId: enrolment.enrolment.id };
        if (!(await r.kmcRecoveries.transition(id, "pending", "released", patch, at))) {
          return { error: new UkeyError("KMC_RECOVERY_NOT_PENDING", { params: { recovery: id, status: "decided" } }), reason: "not-pending-decided" };
        }
        await r.audit.append({
          at, actor: by.actor, action: "kmc.recovery-approved", subjectType: "kmc-recovery", subjectId: id,
          data: { holderId: rec.holderId, escrowIds: rec.escrowIds, requestedBy: rec.requestedBy, enrolmentId: enrolment.enrolment.id, referenceNumber: enrolment.referenceNumber },
        });
        return { ok: { ...rec, ...patch, status: "released" as const, updatedAt: at } };
      });
      if ("error" in outcome) {
        await this.refused(by, id, outcome.reason);
        throw outcome.error;
      }
      return { recovery: this.view(outcome.ok, at), referenceNumber: enrolment.referenceNumber, authorizationCode: enrolment.authorizationCode };
    } catch (e) {
      // The codes were never shown: withdraw them so that they can never work.
      if (created) await this.deps.enrolments.revoke(created.enrolment.id, by.actor).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Rejects a pending request (anyone signed in, the requester included: it can only stop a recovery).
   * @throws UkeyError KMC_RECOVERY_NOT_FOUND, KMC_RECOVERY_NOT_PENDING, REQUEST_INVALID (note over 500 characters).
   */
  async reject(id: string, by: RecoveryActor, note = ""): Promise<KeyRecoveryView> {
    if (note.length > 500) throw new UkeyError("REQUEST_INVALID", { params: { reason: "the note must be at most 500 characters" } });
    const at = this.deps.clock.now().getTime();
    const outcome = await this.deps.store.transaction(async (r) => {
      const rec = await r.kmcRecoveries.lock(id);
      if (!rec) return { error: new UkeyError("KMC_RECOVERY_NOT_FOUND", { params: { recovery: id } }) };
      const patch = { decidedBy: by.id, decidedAt: at };
      if (rec.status !== "pending" || !(await r.kmcRecoveries.transition(id, "pending", "rejected", patch, at))) {
        return { error: new UkeyError("KMC_RECOVERY_NOT_PENDING", { params: { recovery: id, status: rec.status } }) };
      }
      await r.audit.append({
        at, actor: by.actor, action: "kmc.recovery-rejected", subjectType: "kmc-recovery", subjectId: id,
        data: { holderId: rec.holderId, requestedBy: rec.requestedBy, ...(note ? { note } : {}) },
      });
      return { ok: { ...rec, ...patch, status: "rejected" as const, updatedAt: at } };
    });
    if ("error" in outcome) {
      await this.refused(by, id, "reject-not-pending");
      throw outcome.error;
    }
    return this.view(outcome.ok, at);
  }

  /** Newest first (limit default 100, at most 1000), by status and holder. */
  async list(q: { status?: KmcRecoveryStatus; holderId?: string; limit?: number; offset?: number } = {}): Promise<KeyRecoveryView[]> {
    const at = this.deps.clock.now().getTime();
    return (await this.deps.store.kmcRecoveries.list(q)).map((r) => this.view(r, at));
  }

  /**
   * One request.
   * @throws UkeyError KMC_RECOVERY_NOT_FOUND.
   */
  async get(id: string): Promise<KeyRecoveryView> {
    const r = await this.deps.store.kmcRecoveries.get(id);
    if (!r) throw new UkeyError("KMC_RECOVERY_NOT_FOUND", { params: { recovery: id } });
    return this.view(r, this.deps.clock.now().getTime());
  }

  private view(r: KmcRecoveryRecord, at: number): KeyRecoveryView {
    return { ...r, expired: r.status === "pending" && r.expiresAt <= at };
  }

  /** The rule of an approval by `by` of request `id`, read under the row's lock in `r`. */
  private async check(r: Repositories, id: string, by: RecoveryActor, at: number): Promise<{ error: UkeyError; reason: string } | { ok: KmcRecoveryRecord }> {
    const rec = await r.kmcRecoveries.lock(id);
    if (!rec) return { error: new UkeyError("KMC_RECOVERY_NOT_FOUND", { params: { recovery: id } }), reason: "not-found" };
    if (rec.status !== "pending") return { error: new UkeyError("KMC_RECOVERY_NOT_PENDING", { params: { recovery: id, status: rec.status } }), reason: `not-pending-${rec.status}` };
    if (rec.expiresAt <= at) return { error: new UkeyError("KMC_RECOVERY_EXPIRED", { params: { recovery: id, expiredAt: new Date(rec.expiresAt).toISOString() } }), reason: "expired" };
    if (rec.requestedBy === by.id) return { error: new UkeyError("KMC_RECOVERY_SAME_PERSON", { params: { operator: by.id } }), reason: "same-person" };
    if (!roleAllows(by.role, RECOVERY_APPROVER_ROLE)) {
      return { error: new UkeyError("ROLE_FORBIDDEN", { params: { role: by.role, required: rolesFrom(RECOVERY_APPROVER_ROLE) } }), reason: "role" };
    }
    return { ok: rec };
  }

  /** `check` in a transaction of its own; a refusal is audited, then thrown. */
  private async decidable(id: string, by: RecoveryActor): Promise<KmcRecoveryRecord> {
    const at = this.deps.clock.now().getTime();
    const outcome = await this.deps.store.transaction((r) => this.check(r, id, by, at));
    if ("error" in outcome) {
      await this.refused(by, id, outcome.reason);
      throw outcome.error;
    }
    return outcome.ok;
  }

  private async refused(by: RecoveryActor, id: string, reason: string, data: Record<string, unknown> = {}): Promise<void> {
    await this.deps.store.transaction(async (r) => {
      await r.audit.append({
        at: this.deps.clock.now().getTime(), actor: by.actor, action: "kmc.recovery-refused", subjectType: "kmc-recovery", subjectId: id,
        data: { reason, role: by.role, ...data },
      });
    });
  }
}

function rolesFrom(required: OperatorRole): string {
  return operatorRoles.filter((r) => roleAllows(r, required)).join(", ");
}
