import { UkeyError } from "@ukey/policy";

/**
 * The user PIN rule of the field (seed 000: "6 位以上数字或字母"): at least
 * 6 characters, ASCII letters or digits only. Applied to every new PIN
 * before anything is changed; throws PIN_TOO_WEAK. The PIN is never part
 * of the error.
 */
export function checkNewUserPin(pin: string): void {
  if (typeof pin !== "string" || !/^[A-Za-z0-9]{6,}$/.test(pin)) throw new UkeyError("PIN_TOO_WEAK");
}
