import { formatPolicyDate } from "./policy.js";

/** A date as holders read it: the CST calendar day, YYYY-MM-DD. */
export function day(t: string | number | Date | undefined | null): string {
  if (t === undefined || t === null || t === "") return "—";
  const ms = typeof t === "string" ? Date.parse(t) : t instanceof Date ? t.getTime() : t;
  return Number.isFinite(ms) ? formatPolicyDate(ms) : "—";
}

/**
 * The name a holder knows a certificate by: the common name of its subject
 * ("CN=张三, O=…" → "张三"), with the organisation when there is one; the
 * whole subject when it has no common name.
 */
export function subjectName(dn: string): string {
  const attr = (name: string) => new RegExp(`(?:^|,\\s*|/)${name}=((?:\\\\.|[^,/])+)`).exec(dn)?.[1]?.replace(/\\(.)/g, "$1").trim();
  const cn = attr("CN");
  if (!cn) return dn;
  const o = attr("O");
  return o && o !== cn ? `${cn} · ${o}` : cn;
}

/** Date and time in CST, YYYY-MM-DD HH:MM. */
export function dayTime(t: string | number | undefined | null): string {
  if (t === undefined || t === null) return "—";
  const ms = typeof t === "string" ? Date.parse(t) : t;
  if (!Number.isFinite(ms)) return "—";
  return new Date(ms + 8 * 3_600_000).toISOString().slice(0, 16).replace("T", " ");
}
