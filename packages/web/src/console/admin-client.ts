import { fetchJson } from "../shared/http.js";
import { ProblemError } from "../shared/problem.js";

const KEY = "ukey.adminToken";

/** The signed-in operator's bearer token, kept for this browser tab only. */
export function adminToken(): string | null {
  try { return sessionStorage.getItem(KEY); } catch { return null; }
}
export function setAdminToken(v: string | null): void {
  try { if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY); } catch { /* tab-only anyway */ }
}

const listeners = new Set<() => void>();
/** Called when the server says the session is gone (expired, forged, operator disabled). */
export function onSignedOut(f: () => void): () => void {
  listeners.add(f);
  return () => { listeners.delete(f); };
}

/** One admin API call (/api/v1/admin/...); SESSION_INVALID signs the console out. Throws ProblemError. */
export async function admin<T>(method: "GET" | "POST" | "PATCH", path: string, json?: unknown): Promise<T> {
  const token = adminToken();
  try {
    return await fetchJson<T>(`/api/v1/admin${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {}, ...(json !== undefined ? { json } : {}) });
  } catch (e) {
    if (e instanceof ProblemError && e.problem.code === "SESSION_INVALID") {
      setAdminToken(null);
      for (const f of listeners) f();
    }
    throw e;
  }
}

export interface Holder { id: string; kind: string; name: string; idType: string; idMasked: string; phone: string | null; email: string | null; organisationId: string | null; createdAt: number }
export interface Certificate {
  serial: string; certId: string; subjectDn: string; issuerDn: string; notBefore: number; notAfter: number; status: string;
  revocationReason: string | null; revokedAt: number | null; holderId: string; profileId: string; kind: string; tokenSerial: string | null; pem?: string;
  /** A signing + encryption pair's half: its role, the other certificate, the encryption key's escrow (no key material). */
  pair?: { role: "signing" | "encryption"; otherSerial: string; escrowId: string };
  /** In lists: while failed orders pause its online renewal, when the pause ends. */
  renewalLockedUntil?: number | null;
}
export interface Operator { id: string; role: string; certificatePinned: boolean; disabled: boolean; createdAt: number; updatedAt: number; signInPaused?: { clients: number; until: number } | null }
export interface Enrolment { id: string; holderId: string; profileId: string; referenceNumber: string; expiresAt: number; attempts: number; maxAttempts: number; status: string; createdAt: number }
export interface KmcEscrow { id: string; holderId: string; algorithm: string; spkiSha256: string; masterKeyId: string; createdAt: number }
export interface KeyRecovery {
  id: string; holderId: string; profileId: string; escrowIds: string[]; reason: string; status: "pending" | "released" | "rejected" | "delivered";
  requestedBy: string; requestedAt: number; expiresAt: number; decidedBy: string | null; decidedAt: number | null; enrolmentId: string | null; expired: boolean;
}
export interface Order {
  id: string; certificateSerial: string | null; holderId: string; profileId: string; state: string; channel: string; newSerial: string | null; createdAt: number; updatedAt: number;
  /** In lists, for a failed order: while it still pauses its certificate's online renewal, when the pause ends. */
  renewalLockedUntil?: number | null;
  /** Verification progress; `failure` is the catalogue code an order failed on. */
  data?: { failure?: string; idAttempts?: number };
}
export interface OutboxMessage { id: string; channel: string; transport: string; recipient: string; purpose: string; holderId: string | null; redactedText: string; status: string; attempts: number; lastError: string | null; createdAt: number; sentAt: number | null }
export interface AuditEntry { seq: number; at: number; actor: string; action: string; subjectType: string; subjectId: string; data: Record<string, unknown>; hash: string }
export interface Expiries { from: number; weekMs: number; overdue: number; overdueSinceDays: number; total: number; weeks: { start: number; count: number }[] }
export interface ProfileView { id: string; name: { "zh-CN": string; en: string }; certificateKind: string; validityAnchor: string; validity: { days: number } | { years: number }; timelineSvg: string }

export const revocationReasons = ["unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold", "privilegeWithdrawn"] as const;
export const orderStates = ["created", "verified", "key-submitted", "issued", "installed", "completed", "failed", "cancelled", "expired"] as const;
export const certificateStatuses = ["active", "revoked", "superseded", "expired", "pending", "abandoned"] as const;
