import { createCipheriv, createDecipheriv, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { Secret, TOTP } from "otpauth";
import { UkeyError } from "@ukey/policy";

/**
 * scrypt cost for operator passwords: N = 2^15, r = 8, p = 1 (about 32 MiB
 * and 50-100 ms per check), the parameters OWASP gives for scrypt. Stored
 * with every hash, so raising them later leaves old hashes readable.
 */
export const operatorScryptParams = { N: 2 ** 15, r: 8, p: 1 } as const;

const KEY_LENGTH = 32;

function scryptAsync(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r };
  return new Promise((resolve, reject) => scrypt(password.normalize("NFC"), salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key))));
}

/**
 * Checks an operator password's strength: at least 12 characters and not
 * one character repeated.
 * @throws UkeyError OPERATOR_PASSWORD_WEAK.
 */
export function checkPasswordStrength(password: string): void {
  if ([...password].length < 12) throw new UkeyError("OPERATOR_PASSWORD_WEAK", { params: { reason: "fewer than 12 characters" } });
  if (new Set(password).size < 4) throw new UkeyError("OPERATOR_PASSWORD_WEAK", { params: { reason: "too few different characters" } });
  if (password.length > 1024) throw new UkeyError("OPERATOR_PASSWORD_WEAK", { params: { reason: "longer than 1024 characters" } });
}

/** Hashes a password with scrypt and a fresh 16-byte salt: "scrypt$N$r$p$salt$hash" (base64url). */
export async function hashPassword(password: string, params: { N: number; r: number; p: number } = operatorScryptParams): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, params);
  return ["scrypt", params.N, params.r, params.p, salt.toString("base64url"), key.toString("base64url")].join("$");
}

/**
 * True when `password` matches `stored` (compared in constant time). A
 * malformed stored hash never matches. Pass `undefined` for an unknown
 * account: a hash is still computed, so that the answer takes as long
 * either way and does not tell which accounts exist.
 */
export async function verifyPassword(password: string, stored: string | undefined): Promise<boolean> {
  const parts = (stored ?? "").split("$");
  const [tag, n, r, p, salt, hash] = parts;
  const ok = parts.length === 6 && tag === "scrypt" && [n, r, p].every((v) => /^[0-9]{1,7}$/.test(v!));
  const params = ok ? { N: Number(n), r: Number(r), p: Number(p) } : operatorScryptParams;
  const expected = ok ? Buffer.from(hash!, "base64url") : Buffer.alloc(KEY_LENGTH);
  const key = await scryptAsync(password, ok ? Buffer.from(salt!, "base64url") : Buffer.alloc(16), params);
  return ok && expected.length === key.length && timingSafeEqual(expected, key);
}

/** A new random TOTP secret (160 bits, as RFC 4226 recommends), base32. */
export function newTotpSecret(): string {
  return new Secret({ size: 20 }).base32;
}

/** The otpauth:// URI an authenticator app scans (SHA-1, 6 digits, 30 s: what every app supports). */
export function totpUri(secretBase32: string, account: string, issuer: string): string {
  return totpOf(secretBase32, account, issuer).toString();
}

function totpOf(secretBase32: string, label = "operator", issuer = "ukey-renew"): TOTP {
  return new TOTP({ issuer, label, algorithm: "SHA1", digits: 6, period: 30, secret: Secret.fromBase32(secretBase32) });
}

/**
 * Checks a 6-digit TOTP code (RFC 6238, 30 s steps) at `at`, allowing one
 * step either side for clock drift. Returns the time step the code belongs
 * to (so the caller can refuse a step used before), or null when it does
 * not match.
 */
export function matchTotp(secretBase32: string, code: string, at: Date): number | null {
  if (!/^[0-9]{6}$/.test(code)) return null;
  const totp = totpOf(secretBase32);
  const delta = totp.validate({ token: code, timestamp: at.getTime(), window: 1 });
  return delta === null ? null : totp.counter({ timestamp: at.getTime() }) + delta;
}

/** The code of the step containing `at` (for tests and enrolling an authenticator). */
export function totpCodeAt(secretBase32: string, at: Date): string {
  return totpOf(secretBase32).generate({ timestamp: at.getTime() });
}

/**
 * Seals a TOTP secret with AES-256-GCM under `key` (32 bytes), bound to the
 * operator's id so a sealed value copied onto another account does not open:
 * "v1$iv$tag$ciphertext" (base64url).
 */
export function sealTotpSecret(key: Buffer, operatorId: string, secretBase32: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key.subarray(0, 32), iv);
  cipher.setAAD(Buffer.from(`operator-totp:${operatorId}`));
  const ct = Buffer.concat([cipher.update(secretBase32, "utf8"), cipher.final()]);
  return ["v1", iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), ct.toString("base64url")].join("$");
}

/**
 * Opens a sealed TOTP secret.
 * @throws UkeyError INTERNAL when it was sealed under another key or for another operator, or changed.
 */
export function openTotpSecret(key: Buffer, operatorId: string, sealed: string): string {
  const [v, iv, tag, ct] = sealed.split("$");
  try {
    if (v !== "v1" || !iv || !tag || ct === undefined) throw new Error("not a sealed TOTP secret");
    const decipher = createDecipheriv("aes-256-gcm", key.subarray(0, 32), Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(`operator-totp:${operatorId}`));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ct, "base64url")), decipher.final()]).toString("utf8");
  } catch (cause) {
    throw new UkeyError("INTERNAL", { detail: `the TOTP secret of operator ${operatorId} cannot be opened with this data directory's key`, cause });
  }
}
