import { endOfPolicyDay, formatPolicyDate, policyDay, reminderThresholds, startOfPolicyDay, type CertificateProfile } from "@ukey/policy";
import type { Repositories, Store } from "@ukey/store";

/** A scan that finds the scan mark far behind (a server down for months) looks back at most this many days. */
export const MAX_CATCH_UP_DAYS = 31;

/** One profile's threshold and the expiry range (CST days) whose certificates reach it during the scanned days. */
export interface ThresholdRange {
  profileId: string;
  threshold: number;
  /** First and last CST expiry day, inclusive. */
  fromDay: number;
  toDay: number;
}

/**
 * The expiry days whose certificates reach each threshold during the CST
 * days [fromDay, today], and have not yet reached the next (later, smaller)
 * threshold by today: a certificate gets the reminder of the last threshold
 * it has reached, never one it has already passed. A certificate whose
 * expiry day is E reaches threshold t on day E - t, so the range for t is
 * E in [fromDay + t, today + t], cut at E > today + next. Pure.
 */
export function thresholdRanges(profiles: readonly Pick<CertificateProfile, "id" | "renewal">[], fromDay: number, today: number): ThresholdRange[] {
  const out: ThresholdRange[] = [];
  for (const p of profiles) {
    const ts = reminderThresholds(p);
    ts.forEach((t, i) => {
      const next = ts[i + 1];
      const lo = Math.max(fromDay + t, next === undefined ? -Infinity : today + next + 1);
      const hi = today + t;
      if (lo <= hi) out.push({ profileId: p.id, threshold: t, fromDay: lo, toDay: hi });
    });
  }
  return out;
}

/** What one scan did. */
export interface ScanResult {
  /** The CST days scanned, inclusive. */
  fromDay: number;
  toDay: number;
  /** Certificates looked at (reaching a threshold), and reminders new in this scan. */
  found: number;
  enqueued: number;
}

/**
 * Finds the certificates that reached a reminder threshold since the last
 * scan and enqueues one reminder for each (certificate, threshold); a
 * reminder that exists is left alone, so scans may repeat and several
 * instances may scan at once. The days scanned run from the scan mark (the
 * last day scanned, scanned again so that certificates added later that day
 * are found) to today, at most MAX_CATCH_UP_DAYS back; the first scan of a
 * database scans today only. Certificates stream in keyset pages: memory
 * stays flat however many are due. One audit entry (`reminder.scheduled`)
 * records a scan that enqueued anything.
 */
export async function scanReminders(
  deps: { store: Pick<Store, "reminders" | "profiles" | "transaction">; pageSize?: number },
  now: number,
): Promise<ScanResult> {
  const today = policyDay(now);
  const mark = await deps.store.reminders.scanMark();
  const fromDay = Math.max(Math.min(mark ?? today, today), today - MAX_CATCH_UP_DAYS);
  const profiles = (await deps.store.profiles.list()).map((r) => r.profile);
  let found = 0;
  let enqueued = 0;
  const counts: Record<string, number> = {};
  for (const r of thresholdRanges(profiles, fromDay, today)) {
    const pages = deps.store.reminders.scan({
      profileId: r.profileId,
      notAfterFrom: startOfPolicyDay(r.fromDay).getTime(),
      notAfterTo: endOfPolicyDay(r.toDay).getTime(),
      ...(deps.pageSize ? { pageSize: deps.pageSize } : {}),
    });
    for await (const page of pages) {
      found += page.length;
      const added = await deps.store.reminders.enqueue(r.threshold, page, now);
      enqueued += added;
      if (added) counts[`${r.profileId} ${r.threshold}`] = (counts[`${r.profileId} ${r.threshold}`] ?? 0) + added;
    }
  }
  await deps.store.transaction(async (tx: Repositories) => {
    await tx.reminders.setScanMark(today, now);
    if (enqueued > 0) {
      await tx.audit.append({
        at: now, actor: "system", action: "reminder.scheduled", subjectType: "reminders", subjectId: "*",
        data: { fromDay: dayText(fromDay), toDay: dayText(today), enqueued, byProfileAndThreshold: counts },
      });
    }
  });
  return { fromDay, toDay: today, found, enqueued };
}

function dayText(day: number): string {
  return formatPolicyDate(startOfPolicyDay(day));
}
