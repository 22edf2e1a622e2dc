import { createHash } from "node:crypto";
import { UkeyError, type Clock } from "@ukey/policy";
import type { EnrolmentRecord, KmcRecoveryRecord, Store } from "@ukey/store";
import { escrowAad } from "./key-management-centre.js";
import type { KmcMasterKey } from "./kmc-master-key.js";
import { envelopeKey, envelopeRecipientOf, escrowAlgorithm, type EnvelopeFormat, type EscrowAlgorithm } from "./key-envelope.js";

/** One recovered encryption key, only as an envelope for the holder's new signing key. */
export interface RecoveredKey {
  escrowId: string;
  algorithm: EscrowAlgorithm;
  /** DER SubjectPublicKeyInfo of the recovered key pair (what its old encryption certificate certifies). */
  spki: Buffer;
  /** For the holder's new signing key, or for its own recipient key when the download gave them (docs/envelopes.md): an ENVELOPEDKEYBLOB (SM2) or a CMS EnvelopedData (RSA). */
  envelope: Buffer;
  /** DER SubjectPublicKeyInfo of the key the envelope is for, when it is a recipient key and not the signing key. */
  recipientSpki?: Buffer;
  envelopeFormat: EnvelopeFormat;
}

/** The keys of one released recovery, in escrow order. */
export interface RecoveredKeys {
  recoveryId: string;
  keys: RecoveredKey[];
}

/**
 * What a two-code download calls to carry recovered keys: only after the
 * reference number and authorization code were checked (a VerifiedEnrolment
 * from EnrolmentService.verify, or the used enrolment of a lost answer whose
 * right codes verify answered with CODE_ALREADY_USED), with the SPKI of the
 * new signing key of the download's verified CSR.
 */
export interface RecoveredKeySource {
  /**
   * The recovered keys of the approved recovery that made `enrolment`, each
   * enveloped for `holderSigningSpki`; undefined when the enrolment carries
   * no recovery (an ordinary download). The first call binds the recovery to
   * that signing key (status delivered, audited kmc.recovery-delivered); a
   * later call with the same key envelopes them again (a lost answer), with
   * another key it is refused. With `recipientSpkis` (one per escrowed key, in escrow order, each already proven by
   * the caller: recovered-key-recipients.ts), key i is enveloped for recipient i instead of the signing key.
   * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED (the signing key is neither SM2 nor RSA, or of another family than a
   *   recovered key), KMC_RECOVERY_OTHER_KEY,
   *   KMC_ESCROW_UNREADABLE (an escrow not under this master key), KMC_RECOVERY_NOT_PENDING (rejected meanwhile),
   *   KMC_RECOVERY_RECIPIENT_INVALID (not one recipient per escrowed key). Nothing changes when it throws.
   */
  envelopesFor(enrolment: Pick<EnrolmentRecord, "id">, holderSigningSpki: Buffer, actor: string, recipientSpkis?: readonly Buffer[]): Promise<RecoveredKeys | undefined>;
}

/**
 * The key management centre's side of a recovery's release: escrowed
 * private keys unwrapped under the master key, each enveloped for the
 * holder's new signing key (key-envelope.ts), and zeroed. No clear
 * key leaves this call, and none is stored or logged.
 */
export class RecoveredKeyDelivery implements RecoveredKeySource {
  constructor(private readonly deps: {
    store: Pick<Store, "transaction" | "kmcRecoveries" | "kmcEscrows">;
    masterKey: KmcMasterKey;
    clock: Clock;
  }) {}

  async envelopesFor(enrolment: Pick<EnrolmentRecord, "id">, holderSigningSpki: Buffer, actor: string, recipientSpkis?: readonly Buffer[]): Promise<RecoveredKeys | undefined> {
    const rec = await this.deps.store.kmcRecoveries.getByEnrolment(enrolment.id);
    if (!rec) return undefined;
    if (recipientSpkis && recipientSpkis.length !== rec.escrowIds.length) {
      throw new UkeyError("KMC_RECOVERY_RECIPIENT_INVALID", { params: { count: rec.escrowIds.length }, detail: `${recipientSpkis.length} recipient key(s)` });
    }
    const spkiSha256 = createHash("sha256").update(holderSigningSpki).digest("hex");
    try {
      this.deliverable(rec, spkiSha256);
    } catch (e) {
      await this.deps.store.transaction((r) => r.audit.append({
        at: this.deps.clock.now().getTime(), actor, action: "kmc.recovery-refused", subjectType: "kmc-recovery", subjectId: rec.id,
        data: { reason: rec.status === "delivered" ? "delivered-to-another-key" : `not-released-${rec.status}`, signingSpkiSha256: spkiSha256 },
      }));
      throw e;
    }
    envelopeRecipientOf(holderSigningSpki);
    for (const r of recipientSpkis ?? []) envelopeRecipientOf(r);
    // Every envelope is made before anything is recorded: a key that does not open leaves the recovery as it was.
    const keys: RecoveredKey[] = [];
    for (const [i, escrowId] of rec.escrowIds.entries()) {
      const recipient = recipientSpkis?.[i];
      const escrow = await this.deps.store.kmcEscrows.get(escrowId);
      if (!escrow || escrow.holderId !== rec.holderId) throw new UkeyError("KMC_ESCROW_UNREADABLE", { params: { keyId: this.deps.masterKey.id }, detail: `escrow ${escrowId} is missing` });
      const algorithm = escrowAlgorithm(escrow.algorithm, this.deps.masterKey.id);
      const secret = await this.deps.masterKey.unwrap(escrow.wrappedKey, escrowAad(escrow.id, escrow.holderId, escrow.spki));
      try {
        const { envelope, envelopeFormat } = envelopeKey({ algorithm, spki: escrow.spki, secret }, recipient ?? holderSigningSpki);
        keys.push({ escrowId, algorithm, spki: escrow.spki, envelope, envelopeFormat, ...(recipient ? { recipientSpki: recipient } : {}) });
      } finally {
        secret.fill(0);
      }
    }
    const at = this.deps.clock.now().getTime();
    await this.deps.store.transaction(async (r) => {
      const now = await r.kmcRecoveries.lock(rec.id);
      if (!now) throw new UkeyError("KMC_RECOVERY_NOT_FOUND", { params: { recovery: rec.id } });
      this.deliverable(now, spkiSha256);
      const first = now.status === "released";
      if (first && !(await r.kmcRecoveries.transition(rec.id, "released", "delivered", { deliveredSpkiSha256: spkiSha256, deliveredAt: at }, at))) {
        throw new UkeyError("KMC_RECOVERY_NOT_PENDING", { params: { recovery: rec.id, status: "changed" } });
      }
      await r.audit.append({
        at, actor, action: "kmc.recovery-delivered", subjectType: "kmc-recovery", subjectId: rec.id,
        data: { holderId: rec.holderId, enrolmentId: enrolment.id, escrowIds: rec.escrowIds, signingSpkiSha256: spkiSha256, again: !first,
          ...(recipientSpkis ? { recipientSpkiSha256: recipientSpkis.map((r) => createHash("sha256").update(r).digest("hex")) } : {}) },
      });
    });
    return { recoveryId: rec.id, keys };
  }

  /** Released, or delivered to this very key. */
  private deliverable(rec: KmcRecoveryRecord, spkiSha256: string): void {
    if (rec.status === "delivered" && rec.deliveredSpkiSha256 !== spkiSha256) throw new UkeyError("KMC_RECOVERY_OTHER_KEY");
    if (rec.status !== "released" && rec.status !== "delivered") throw new UkeyError("KMC_RECOVERY_NOT_PENDING", { params: { recovery: rec.id, status: rec.status } });
  }
}
