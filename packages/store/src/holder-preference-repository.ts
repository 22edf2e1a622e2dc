import { UkeyError } from "@ukey/policy";
import type { Executor } from "./executor.js";
import { foreignKeyViolation } from "./sql-errors.js";
import type { Millis } from "./types.js";

/** Which channels a holder wants reminders on. Without a stored choice both are on. */
export interface HolderPreferences {
  holderId: string;
  smsReminders: boolean;
  emailReminders: boolean;
  /** null while the holder never chose (the defaults apply). */
  updatedAt: Millis | null;
}

export interface HolderPreferenceRepository {
  /** The holder's choice, or the defaults (both on, updatedAt null). */
  get(holderId: string): Promise<HolderPreferences>;
  /** Several holders' choices at once, defaults for those who never chose. */
  getMany(holderIds: readonly string[]): Promise<Map<string, HolderPreferences>>;
  /** Inserts or replaces. Throws UkeyError HOLDER_NOT_FOUND for an unknown holder. */
  put(p: Omit<HolderPreferences, "updatedAt">, at: Millis): Promise<HolderPreferences>;
}

interface PreferenceRow { holder_id: string; sms_reminders: number | string; email_reminders: number | string; updated_at: number | string }

const defaults = (holderId: string): HolderPreferences => ({ holderId, smsReminders: true, emailReminders: true, updatedAt: null });

function toPreferences(r: PreferenceRow): HolderPreferences {
  return { holderId: r.holder_id, smsReminders: Number(r.sms_reminders) === 1, emailReminders: Number(r.email_reminders) === 1, updatedAt: Number(r.updated_at) };
}

/** Holders' reminder opt-outs, one row per holder who chose. */
export function holderPreferenceRepository(x: Executor): HolderPreferenceRepository {
  return {
    async get(holderId) {
      const rows = await x.sql.query<PreferenceRow>("SELECT holder_id, sms_reminders, email_reminders, updated_at FROM holder_preferences WHERE holder_id = ?", [holderId]);
      return rows[0] ? toPreferences(rows[0]) : defaults(holderId);
    },
    async getMany(holderIds) {
      const out = new Map<string, HolderPreferences>();
      for (const id of holderIds) out.set(id, defaults(id));
      for (let i = 0; i < holderIds.length; i += 500) {
        const chunk = holderIds.slice(i, i + 500);
        const rows = await x.sql.query<PreferenceRow>(
          `SELECT holder_id, sms_reminders, email_reminders, updated_at FROM holder_preferences WHERE holder_id IN (${chunk.map(() => "?").join(", ")})`, chunk);
        for (const r of rows) out.set(r.holder_id, toPreferences(r));
      }
      return out;
    },
    async put(p, at) {
      try {
        await x.atomic((tx) => tx.run(
          `INSERT INTO holder_preferences (holder_id, sms_reminders, email_reminders, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (holder_id) DO UPDATE SET sms_reminders = excluded.sms_reminders, email_reminders = excluded.email_reminders,
             updated_at = excluded.updated_at`,
          [p.holderId, p.smsReminders ? 1 : 0, p.emailReminders ? 1 : 0, at]));
      } catch (e) {
        if (foreignKeyViolation(e)) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: p.holderId }, cause: e });
        throw e;
      }
      return { ...p, updatedAt: at };
    },
  };
}
