import { createPublicKey } from "node:crypto";
import { UkeyError, defaultKeyVendors, isUkeyError, type KeyVendorTable } from "@ukey/policy";
import type { KeyStoreBackend, TokenInfo, TokenSession } from "../keys/key-store.js";
import { vendorOf } from "../keys/token-vendor.js";
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

/** What login needs beyond the token: the key vendor table (default: the built-in one). */
export interface LoginOptions {
  /** The institution's table (ServerClient.keyVendors), for the key's button timeout and whether it is supported (default: the backend's keyVendors, else the built-in one). */
  vendors?: KeyVendorTable;
}

/** Operations that make a new key on the token: refused on a key the vendor table marks unsupported. */
const makesKeys = new Set(["renew", "download"]);

/**
 * Logs in to a token with the PIN the holder gives; asks again (with the
 * tries left when the module tells) after a wrong PIN, at most three times.
 *
 * A key with its own PIN pad (TokenInfo.pin.keyPad) is asked with
 * `keyPad: true`: the prompter tells the holder to type the PIN on the key
 * and gives back "" (the PIN never passes through the computer). While an
 * SKF key waits for its OK button the holder is told to press it, with the
 * key's own timeout when the vendor table knows it.
 *
 * For "renew" and "download", a key the vendor table marks unsupported is
 * refused before anything is asked.
 * @throws UkeyError TOKEN_NOT_PRESENT, TOKEN_PIN_LOCKED, TOKEN_PIN_INCORRECT, TOKEN_UNSUPPORTED, TOKEN_CONFIRMATION_CANCELLED (cancelled on the PIN pad), and what the prompter throws.
 */
export async function openSession(backend: KeyStoreBackend, prompter: Prompter, tokenSerial: string, reason: string, opts: LoginOptions = {}): Promise<TokenSession> {
  return (await login(backend, prompter, tokenSerial, reason, opts)).session;
}

/** openSession, also returning the PIN that worked (for a PIN change, which needs the old one; "" on a PIN pad). */
export async function login(backend: KeyStoreBackend, prompter: Prompter, tokenSerial: string, reason: string, opts: LoginOptions = {}): Promise<{ session: TokenSession; pin: string }> {
  const token = await resolveToken(backend, tokenSerial);
  const vendor = vendorOf(token, opts.vendors ?? backend.keyVendors ?? defaultKeyVendors);
  if (vendor?.unsupported && makesKeys.has(reason)) {
    throw new UkeyError("TOKEN_UNSUPPORTED", { detail: `${vendor.id}: ${vendor.unsupported.en}` });
  }
  if (token.pin.locked) throw new UkeyError("TOKEN_PIN_LOCKED");
  const keyPad = token.pin.keyPad === true;
  let retry: { code: string; triesLeft?: number } | undefined;
  for (let attempt = 1; ; attempt++) {
    const pin = await prompter.pin({ tokenSerial, tokenLabel: token.label, reason, ...(keyPad ? { keyPad: true } : {}), ...(retry ? { retry } : {}) });
    try {
      if (keyPad) report(prompter, "key-pad", "请在 UKey 自带的键盘上输入 PIN，然后按确认键", "Type the PIN on the UKey's own keypad, then press OK");
      const session = await backend.open(tokenSerial, keyPad ? "" : pin);
      if (backend.kind === "skf") session.onDeviceConfirmation = () => prompter.progress(pressButton(vendor?.confirmationTimeoutSeconds));
      // The institution's SM2 values for a PKCS#11 key win over the built-in table's.
      if (backend.kind === "pkcs11" && opts.vendors) session.pkcs11Sm2 = vendor?.pkcs11Sm2;
      return { session, pin: keyPad ? "" : pin };
    } catch (e) {
      if (!isUkeyError(e, "TOKEN_PIN_INCORRECT", "PFX_PASSWORD_INCORRECT") || attempt >= 3) throw e;
      const triesLeft = e.params.triesLeft;
      retry = { code: e.code, ...(typeof triesLeft === "number" ? { triesLeft } : {}) };
    }
  }
}

/**
 * What the holder is told while the key waits for its OK button: with the
 * key's own timeout when known (the vendor table's confirmationTimeoutSeconds),
 * else that the key cancels by itself after a while.
 */
export function pressButton(timeoutSeconds?: number): ProgressEvent {
  return timeoutSeconds !== undefined
    ? { step: "press-button", zh: `请在 UKey 上按确认键（OK 键）：${timeoutSeconds} 秒内未按，UKey 会取消这次操作`, en: `Press OK on your UKey: if it is not pressed within ${timeoutSeconds} s, the UKey cancels the operation`, timeoutSeconds }
    : { step: "press-button", zh: "请在 UKey 上按确认键（OK 键）：长时间不按，UKey 会取消这次操作", en: "Press OK on your UKey: if it is not pressed for a while, the UKey cancels the operation" };
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
