import { UkeyError, type Clock } from "@ukey/policy";
import type { Store } from "@ukey/store";

/**
 * Lifts the pause that failed renewal orders put on a certificate's online
 * renewal (RENEWAL_LOCKED): the store's `lastFailedAt` stops counting the
 * failures up to now, so the order service needs no change, and a failure
 * after the unlock pauses the renewal again as before.
 */
export class RenewalUnlockService {
  constructor(private readonly deps: { store: Pick<Store, "transaction">; clock: Clock }) {}

  /**
   * Unlocks the renewal of certificate `serial` (normalised hex), audited as
   * `certificate.renewal-unlocked` by `actor`. `lastFailureAt` is the failure
   * that no longer counts (null when none did).
   * @throws UkeyError CERT_NOT_FOUND.
   */
  async unlock(serial: string, actor: string): Promise<{ serial: string; unlockedAt: number; lastFailureAt: number | null }> {
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r) => {
      if (!(await r.certificates.get(serial))) throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
      const lastFailureAt = (await r.orders.lastFailedAt(serial)) ?? null;
      await r.orders.unlockRenewal(serial, at);
      await r.audit.append({ at, actor, action: "certificate.renewal-unlocked", subjectType: "certificate", subjectId: serial, data: { lastFailureAt } });
      return { serial, unlockedAt: at, lastFailureAt };
    });
  }
}
