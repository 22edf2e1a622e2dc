import { createHmac, timingSafeEqual } from "node:crypto";
import { UkeyError } from "@ukey/policy";
import type { OperatorRole } from "@ukey/store";

/** What an operator session token says. Times are epoch milliseconds. */
export interface SessionClaims {
  /** Operator id. */
  sub: string;
  role: OperatorRole;
  /** Issued at. */
  iat: number;
  /** Expires at. */
  exp: number;
  /** How the operator signed in. */
  amr: "pwd+otp" | "cert";
}

/** Default session lifetime: 30 minutes. */
export const SESSION_TTL_MS = 30 * 60_000;

const PREFIX = "uks1";

/**
 * Signs session claims: "uks1.<base64url JSON>.<base64url HMAC-SHA256>".
 * Stateless by design: any server instance holding the same key file
 * accepts the token, and nothing is kept in memory.
 */
export function signSessionToken(key: Buffer, claims: SessionClaims): string {
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  return `${PREFIX}.${body}.${mac(key, body)}`;
}

/**
 * Verifies a session token's signature and lifetime at `now`.
 * @throws UkeyError SESSION_INVALID when forged, malformed, not yet valid or expired.
 */
export function verifySessionToken(key: Buffer, token: string, now: number): SessionClaims {
  const invalid = (detail: string) => new UkeyError("SESSION_INVALID", { detail });
  const [prefix, body, sig, ...rest] = token.split(".");
  if (prefix !== PREFIX || !body || !sig || rest.length || token.length > 2048) throw invalid("malformed token");
  const expected = Buffer.from(mac(key, body));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw invalid("bad signature");
  let claims: SessionClaims;
  try {
    claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as SessionClaims;
  } catch {
    throw invalid("malformed token");
  }
  if (typeof claims.sub !== "string" || typeof claims.exp !== "number" || typeof claims.iat !== "number") throw invalid("malformed claims");
  // A minute of grace for clocks of instances that disagree slightly.
  if (claims.iat > now + 60_000) throw invalid("issued in the future");
  if (claims.exp <= now) throw invalid("expired");
  return claims;
}

function mac(key: Buffer, body: string): string {
  return createHmac("sha256", key).update(`${PREFIX}.${body}`).digest("base64url");
}
