import type { CertificateProfile, Clock } from "@ukey/policy";
import type { Store } from "@ukey/store";

/**
 * Profile reads reused for a few seconds. Profiles change only when an
 * operator edits the configuration (synced at start) and are read on every
 * issuance and renewal step; every instance sees a change within `ttlMs`.
 * The same object is returned while it is cached, which also lets the CA
 * keep one certificate template per profile object.
 */
export class ProfileCache {
  private readonly entries = new Map<string, { at: number; profile: CertificateProfile | undefined }>();

  constructor(private readonly deps: { store: Pick<Store, "profiles">; clock: Clock; ttlMs?: number }) {}

  /** The profile, or undefined when there is none with that id. Default TTL 5000 ms. */
  async get(id: string): Promise<CertificateProfile | undefined> {
    const now = this.deps.clock.now().getTime();
    const hit = this.entries.get(id);
    if (hit && now >= hit.at && now - hit.at < (this.deps.ttlMs ?? 5000)) return hit.profile;
    const profile = (await this.deps.store.profiles.get(id))?.profile;
    this.entries.set(id, { at: now, profile });
    return profile;
  }

  /** Forgets every entry: the next read of each profile goes to the database (after a configuration reload). */
  clear(): void {
    this.entries.clear();
  }
}
