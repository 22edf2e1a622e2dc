import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import type { ErrorCode } from "@ukey/policy";

/** How long a challenge may be signed and sent back: 5 minutes. */
export const CHALLENGE_TTL_MS = 5 * 60_000;

/** How long an order credential authorizes the steps of its order: 2 hours from the proof that gave it. */
export const ORDER_CREDENTIAL_TTL_MS = 2 * 3_600_000;

/**
 * How long a credential still reads or repeats the last step of an order
 * that ended (completed, failed, cancelled): enough for an agent whose
 * answer was lost to ask again, no more.
 */
export const CLOSED_ORDER_GRACE_MS = 10 * 60_000;

/** The keys that may prove possession for an order: the certificate being renewed, or the order's new certificate once issued. */
export type PossessionSigner = "certificate" | "new-key";

/** The exact bytes a proof of possession signs: a fixed prefix, the order and the challenge, so a signature can be reused for nothing else. */
export function possessionMessage(orderId: string, challenge: string): Buffer {
  return Buffer.from(`ukey-renew possession v1\n${orderId}\n${challenge}`, "utf8");
}

const CHALLENGE_PREFIX = "c1";

/**
 * Challenges for proof of possession, made and checked without storing
 * them: "c1.<expiry ms>.<nonce>.<HMAC-SHA256>" under a key derived from the
 * data directory's ID key, so any instance checks what another made and an
 * unauthenticated request to start or resume an order writes nothing. A
 * challenge never replaces another (asking for one cannot spoil the
 * holder's); one that proved possession is recorded as used in its order.
 */
export class PossessionChallenges {
  private readonly key: Buffer;

  /** @param idKey the data directory's ID key (every instance has the same one). */
  constructor(idKey: Buffer, private readonly ttlMs = CHALLENGE_TTL_MS) {
    this.key = Buffer.from(hkdfSync("sha256", idKey, Buffer.alloc(0), "ukey-renew possession challenge v1", 32));
  }

  /** A new challenge for `orderId`, valid `ttlMs` from `at`. */
  mint(orderId: string, at: number): { value: string; expiresAt: number } {
    const expiresAt = at + this.ttlMs;
    const nonce = randomBytes(16).toString("base64url");
    return { value: `${CHALLENGE_PREFIX}.${expiresAt}.${nonce}.${this.mac(orderId, expiresAt, nonce)}`, expiresAt };
  }

  /** The challenge's nonce and expiry when this service made it for `orderId` and it has not expired at `at`; undefined otherwise. */
  check(orderId: string, value: string, at: number): { nonce: string; expiresAt: number } | undefined {
    const parts = value.split(".");
    if (parts.length !== 4 || parts[0] !== CHALLENGE_PREFIX || !/^[0-9]{1,15}$/.test(parts[1]!) || !/^[A-Za-z0-9_-]{22}$/.test(parts[2]!)) return undefined;
    const expiresAt = Number(parts[1]);
    const given = Buffer.from(parts[3]!, "utf8");
    const expected = Buffer.from(this.mac(orderId, expiresAt, parts[2]!), "utf8");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    if (expiresAt < at || expiresAt > at + this.ttlMs + 60_000) return undefined;
    return { nonce: parts[2]!, expiresAt };
  }

  private mac(orderId: string, expiresAt: number, nonce: string): string {
    return createHmac("sha256", this.key).update(`${orderId}\n${expiresAt}\n${nonce}`).digest("base64url");
  }
}

/** An order credential as the order stores it: never the credential, only its SHA-256. */
export interface StoredCredential {
  sha256: string;
  expiresAt: number;
}

const CREDENTIAL_PREFIX = "uko1.";

/**
 * A new order credential: "uko1." and 32 random bytes (base64url), sent
 * as `Authorization: Bearer` on every later step of its order. The order
 * keeps its SHA-256 and expiry; a newer proof of possession replaces it.
 */
export function mintOrderCredential(at: number, ttlMs = ORDER_CREDENTIAL_TTL_MS): { token: string; stored: StoredCredential } {
  const token = CREDENTIAL_PREFIX + randomBytes(32).toString("base64url");
  return { token, stored: { sha256: sha256Hex(token), expiresAt: at + ttlMs } };
}

/** Whether a presented value has the form of an order credential (checked before anything is read). */
export function looksLikeOrderCredential(value: string | undefined): value is string {
  return value !== undefined && value.length === CREDENTIAL_PREFIX.length + 43 && value.startsWith(CREDENTIAL_PREFIX) && /^[A-Za-z0-9_-]{43}$/.test(value.slice(CREDENTIAL_PREFIX.length));
}

/**
 * Checks a presented credential against an order's stored one at `at`.
 * `closedAt` is when the order ended, if it did: its credential then lasts
 * CLOSED_ORDER_GRACE_MS more at most. Returns the refusal's code, or
 * undefined when the credential authorizes the order.
 */
export function credentialRefusal(stored: StoredCredential | undefined, presented: string | undefined, at: number, closedAt?: number): ErrorCode | undefined {
  if (!looksLikeOrderCredential(presented)) return "ORDER_CREDENTIAL_REQUIRED";
  if (!stored) return "ORDER_CREDENTIAL_INVALID";
  const given = Buffer.from(sha256Hex(presented), "hex");
  const want = Buffer.from(stored.sha256, "hex");
  if (given.length !== want.length || !timingSafeEqual(given, want)) return "ORDER_CREDENTIAL_INVALID";
  if (stored.expiresAt < at) return "ORDER_CREDENTIAL_INVALID";
  if (closedAt !== undefined && closedAt + CLOSED_ORDER_GRACE_MS < at) return "ORDER_CREDENTIAL_INVALID";
  return undefined;
}

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
