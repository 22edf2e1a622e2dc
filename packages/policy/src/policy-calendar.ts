/**
 * The one calendar of renewal policy. Every "day" a profile counts (window
 * opening and closing, notice, step-up, days to expiry) is a calendar day in
 * China Standard Time, because that is the day printed on the holder's
 * screen and in the published guides ("到期前90天", "到期后300天"). CST is
 * UTC+8 all year (Asia/Shanghai has had no daylight saving since 1991), so a
 * fixed offset is exact and needs no time-zone database.
 */

/** The time zone renewal days are counted in (IANA name, for display and documents). */
export const POLICY_TIME_ZONE = "Asia/Shanghai";

/** Offset of China Standard Time from UTC in milliseconds (UTC+8, no DST). */
export const POLICY_UTC_OFFSET_MS = 8 * 3_600_000;

/** Milliseconds in one policy day (no DST, so always 24 hours). */
export const DAY_MS = 86_400_000;

/** A point in time as a Date or as epoch milliseconds (the store keeps Millis). */
export type Instant = Date | number;

/** Epoch milliseconds of an Instant. */
export function millis(t: Instant): number {
  return typeof t === "number" ? t : t.getTime();
}

/**
 * The CST calendar day of `t` as a day number (days since 1970-01-01 CST).
 * Day numbers make "N days before" plain integer arithmetic.
 */
export function policyDay(t: Instant): number {
  return Math.floor((millis(t) + POLICY_UTC_OFFSET_MS) / DAY_MS);
}

/** 00:00:00.000 CST of a policy day, as a Date. */
export function startOfPolicyDay(day: number): Date {
  return new Date(day * DAY_MS - POLICY_UTC_OFFSET_MS);
}

/** 23:59:59.999 CST of a policy day, as a Date: the last instant that still belongs to it. */
export function endOfPolicyDay(day: number): Date {
  return new Date((day + 1) * DAY_MS - POLICY_UTC_OFFSET_MS - 1);
}

/** The CST calendar date of `t` as YYYY-MM-DD (what holders read). */
export function formatPolicyDate(t: Instant): string {
  return new Date(policyDay(t) * DAY_MS).toISOString().slice(0, 10);
}

/**
 * `t` moved by whole calendar years in CST, keeping the CST wall-clock time.
 * 29 February moves to 28 February in a common year (the certificate must
 * not outlive the promised years by a day).
 */
export function addPolicyYears(t: Instant, years: number): Date {
  const local = new Date(millis(t) + POLICY_UTC_OFFSET_MS);
  const y = local.getUTCFullYear() + years;
  const m = local.getUTCMonth();
  const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  const d = Math.min(local.getUTCDate(), lastDay);
  const moved = Date.UTC(y, m, d, local.getUTCHours(), local.getUTCMinutes(), local.getUTCSeconds(), local.getUTCMilliseconds());
  return new Date(moved - POLICY_UTC_OFFSET_MS);
}
