import { formatPolicyDate } from "./policy.js";

/** A date as holders read it: the CST calendar day, YYYY-MM-DD. */
export function day(t: string | number | Date | undefined | null): string {
  if (t === undefined || t === null || t === "") return "—";
  const ms = typeof t === "string" ? Date.parse(t) : t instanceof Date ? t.getTime() : t;
  return Number.isFinite(ms) ? formatPolicyDate(ms) : "—";
}

/** Date and time in CST, YYYY-MM-DD HH:MM. */
export function dayTime(t: string | number | undefined | null): string {
  if (t === undefined || t === null) return "—";
  const ms = typeof t === "string" ? Date.parse(t) : t;
  if (!Number.isFinite(ms)) return "—";
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 16).replace("T", " ");
}
