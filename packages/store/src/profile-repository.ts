import type { CertificateProfile } from "@ukey/policy";
import type { Executor } from "./executor.js";
import type { ProfileRecord, ProfileRepository } from "./types.js";

interface ProfileRow { id: string; body: string; updated_at: number | string }

function toProfile(r: ProfileRow): ProfileRecord {
  return { id: r.id, profile: JSON.parse(r.body) as CertificateProfile, updatedAt: Number(r.updated_at) };
}

/** Certificate profiles, stored as their JSON body keyed by profile id. */
export function profileRepository(x: Executor): ProfileRepository {
  return {
    async put(p, at) {
      await x.sql.run(
        `INSERT INTO certificate_profiles (id, body, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
        [p.id, JSON.stringify(p), at]);
    },
    async get(id) {
      const rows = await x.sql.query<ProfileRow>("SELECT id, body, updated_at FROM certificate_profiles WHERE id = ?", [id]);
      return rows[0] && toProfile(rows[0]);
    },
    async list() {
      const rows = await x.sql.query<ProfileRow>("SELECT id, body, updated_at FROM certificate_profiles ORDER BY id");
      return rows.map(toProfile);
    },
  };
}
