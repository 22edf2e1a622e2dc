import { createHmac, timingSafeEqual } from "node:crypto";
import { join } from "node:path";
import { UkeyError } from "@ukey/policy";
import type { HolderKind } from "@ukey/store";
import type { DataDirLayout } from "../data-dir.js";

/** What a holder session token says. Times are epoch milliseconds. */
export interface HolderSessionClaims {
  /** Holder id (customer number). */
  sub: string;
  kind: HolderKind;
  iat: number;
  exp: number;
}

/** A holder session lasts 30 minutes from its last use (each answer carries a renewed token). */
export const HOLDER_SESSION_TTL_MS = 30 * 60_000;

const PREFIX = "ukh1";

/** The key file of holder session tokens, next to the RA's other keys; every instance needs the same one. */
export function holderSessionKeyFile(layout: Pick<DataDirLayout, "dir">): string {
  return join(layout.dir, "secrets", "holder-session-hmac.key");
}

/**
 * Signs holder session claims: "ukh1.<base64url JSON>.<base64url HMAC-SHA256>".
 * Stateless, like the operators' tokens, but under its own key and prefix,
 * so that neither kind of token is ever accepted as the other.
 */
export function signHolderSession(key: Buffer, claims: HolderSessionClaims): string {
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  return `${PREFIX}.${body}.${mac(key, body)}`;
}

/**
 * Verifies a holder session token at `now`.
 * @throws UkeyError HOLDER_SIGN_IN_REQUIRED when missing, forged or malformed;
 *   SESSION_EXPIRED when it ran out (its remedy: a renewal in progress is not lost).
 */
export function verifyHolderSession(key: Buffer, token: string | undefined, now: number): HolderSessionClaims {
  const refused = (detail: string) => new UkeyError("HOLDER_SIGN_IN_REQUIRED", { detail });
  if (!token) throw refused("no Authorization: Bearer token");
  const [prefix, body, sig, ...rest] = token.split(".");
  if (prefix !== PREFIX || !body || !sig || rest.length || token.length > 2048) throw refused("malformed token");
  const expected = Buffer.from(mac(key, body));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) throw refused("bad signature");
  let claims: HolderSessionClaims;
  try {
    claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as HolderSessionClaims;
  } catch {
    throw refused("malformed token");
  }
  if (typeof claims.sub !== "string" || typeof claims.exp !== "number" || typeof claims.iat !== "number") throw refused("malformed claims");
  if (claims.iat > now + 60_000) throw refused("issued in the future");
  if (claims.exp <= now) throw new UkeyError("SESSION_EXPIRED", { detail: "holder session expired" });
  return claims;
}

function mac(key: Buffer, body: string): string {
  return createHmac("sha256", key).update(`${PREFIX}.${body}`).digest("base64url");
}
