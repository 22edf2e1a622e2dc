import { createPublicKey } from "node:crypto";
import { UkeyError, isUkeyError } from "@ukey/policy";
import type { KeyStoreBackend, TokenInfo, TokenSession } from "../keys/key-store.js";
import type { Prompter, ProgressEvent } from "../prompter.js";

/**
 * The token a command works on: the one named, or the only one present.
 * @throws UkeyError TOKEN_NOT_PRESENT (none, or not the one named), TOKEN_MULTIPLE_PRESENT (several and none named; the serials are in the message's params).
 */
export async function resolveToken(backend: KeyStoreBackend, serial?: string): Promise<TokenInfo> {
  const tokens = await backend.listTokens();
  if (serial !== undefined) {
    const t = tokens.find((x) => x.serial === serial.trim());
    if (!t) throw new UkeyError("TOKEN_NOT_PRESENT", { detail: `no token with serial ${serial}; present: ${tokens.map((x) => x.serial).join(", ") || "none"}` });
    return t;
  }
  if (tokens.length === 0) throw new UkeyError("TOKEN_NOT_PRESENT");
  if (tokens.length > 1) {
    throw new UkeyError("TOKEN_MULTIPLE_PRESENT", { params: { count: tokens.length }, detail: `serials: ${tokens.map((x) => `${x.serial} (${x.label})`).join(", ")}` });
  }
  return tokens[0]!;
}

/**
 * Logs in to a token with the PIN the holder gives; asks again (with the
 * tries left when the module tells) after a wrong PIN, at most three times.
 * @throws UkeyError TOKEN_NOT_PRESENT, TOKEN_PIN_LOCKED, TOKEN_PIN_INCORRECT, and what the prompter throws.
 */
export async function openSession(backend: KeyStoreBackend, prompter: Prompter, tokenSerial: string, reason: string): Promise<TokenSession> {
  return (await login(backend, prompter, tokenSerial, reason)).session;
}

/** openSession, also returning the PIN that worked (for a PIN change, which needs the old one). */
export async function login(backend: KeyStoreBackend, prompter: Prompter, tokenSerial: string, reason: string): Promise<{ session: TokenSession; pin: string }> {
  const token = await resolveToken(backend, tokenSerial);
  if (token.pin.locked) throw new UkeyError("TOKEN_PIN_LOCKED");
  let retry: { code: string; triesLeft?: number } | undefined;
  for (let attempt = 1; ; attempt++) {
    const pin = await prompter.pin({ tokenSerial, tokenLabel: token.label, reason, ...(retry ? { retry } : {}) });
    try {
      const session = await backend.open(tokenSerial, pin);
      if (backend.kind === "skf") session.onDeviceConfirmation = () => report(prompter, "press-button", "请在 UKey 上按确认键", "Press OK on your UKey");
      return { session, pin };
    } catch (e) {
      if (!isUkeyError(e, "TOKEN_PIN_INCORRECT", "PFX_PASSWORD_INCORRECT") || attempt >= 3) throw e;
      const triesLeft = e.params.triesLeft;
      retry = { code: e.code, ...(typeof triesLeft === "number" ? { triesLeft } : {}) };
    }
  }
}

/** Serials compared as the server and the token write them (leading zeros and case aside). */
export function sameSerial(a: string, b: string): boolean {
  const n = (s: string) => s.toLowerCase().replace(/[^0-9a-f]/g, "").replace(/^0+/, "");
  return n(a) === n(b);
}

/** SPKIs compared after one normalising round trip (a module may encode curve parameters differently). */
export function sameSpki(a: Uint8Array, b: Uint8Array): boolean {
  const norm = (x: Uint8Array) => {
    try {
      return createPublicKey({ key: Buffer.from(x), format: "der", type: "spki" }).export({ type: "spki", format: "der" });
    } catch {
      return Buffer.from(x);
    }
  };
  return norm(a).equals(norm(b));
}

/** Progress in both languages. */
export function report(prompter: Pick<Prompter, "progress">, step: ProgressEvent["step"], zh: string, en: string): void {
  prompter.progress({ step, zh, en });
}
