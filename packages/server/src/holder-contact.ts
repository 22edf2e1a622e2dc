/** Phone "15900000005" → "159*****005"; shown so the holder knows where a code went (seed 000 shows 15*****5). */
export function maskPhone(phone: string): string {
  const d = phone.replace(/\D/g, "");
  if (d.length < 7) return "*".repeat(d.length);
  return `${d.slice(0, 3)}${"*".repeat(d.length - 6)}${d.slice(-3)}`;
}

/** E-mail "zhangsan@example.com" → "z*******@example.com". */
export function maskEmail(email: string): string {
  const [local = "", domain = ""] = email.split("@");
  return `${local.slice(0, 1)}${"*".repeat(Math.max(1, local.length - 1))}@${domain}`;
}
