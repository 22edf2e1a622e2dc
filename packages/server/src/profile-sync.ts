import { canonicalJson, type Repositories } from "@ukey/store";
import type { CertificateProfile } from "@ukey/policy";

/**
 * Makes the database's profiles match the configuration: a new or changed
 * profile is written with an audit entry (old and new), an unchanged one is
 * left alone, so that several instances starting with the same
 * configuration write nothing. Profiles no longer configured stay in the
 * database: certificates issued under them still name them.
 */
export async function syncProfiles(r: Pick<Repositories, "profiles" | "audit">, profiles: readonly CertificateProfile[], at: number, actor: string): Promise<string[]> {
  const changed: string[] = [];
  for (const p of profiles) {
    const existing = await r.profiles.get(p.id);
    if (existing && canonicalJson(existing.profile) === canonicalJson(p)) continue;
    await r.profiles.put(p, at);
    await r.audit.append({
      at, actor, action: existing ? "profile.updated" : "profile.created", subjectType: "profile", subjectId: p.id,
      data: existing ? { before: existing.profile as unknown as Record<string, unknown>, after: p as unknown as Record<string, unknown> } : { after: p as unknown as Record<string, unknown> },
    });
    changed.push(p.id);
  }
  return changed;
}
