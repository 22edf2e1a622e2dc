import { UkeyError, formatPolicyDate } from "@ukey/policy";
import type { TokenInfo } from "../keys/key-store.js";
import type { Prompter } from "../prompter.js";
import type { FlowContext } from "./flow-types.js";
import { login, report, resolveToken } from "./token-access.js";

/** Asks for a new PIN twice. @throws UkeyError PIN_CONFIRMATION_MISMATCH. */
async function newPinTwice(p: Prompter, token: TokenInfo, reason: string): Promise<string> {
  const first = await p.pin({ tokenSerial: token.serial, tokenLabel: token.label, reason, newPin: true });
  const again = await p.pin({ tokenSerial: token.serial, tokenLabel: token.label, reason: `${reason}-again`, newPin: true });
  if (first !== again) throw new UkeyError("PIN_CONFIRMATION_MISMATCH");
  return first;
}

/**
 * Initialises a token (the forgotten or locked PIN path): shows what will
 * be lost and asks to go on, then the SO PIN and the new user PIN twice;
 * wipes the token and sets the new PIN. Nothing changes before the holder
 * confirms and both PINs agree.
 * @throws UkeyError OPERATION_CANCELLED, PIN_CONFIRMATION_MISMATCH, PIN_TOO_WEAK, TOKEN_PIN_INCORRECT (the SO PIN), TOKEN_*.
 */
export async function initialiseFlow(ctx: FlowContext, request: { tokenSerial: string; label?: string }): Promise<{ token: TokenInfo }> {
  const p = ctx.prompter;
  const token = await resolveToken(ctx.backend, request.tokenSerial);
  const certs = await ctx.backend.listCertificates(token.serial);
  const consequences = [
    ...certs.map((c) => `${c.subject} (${c.serialHex}, ${formatPolicyDate(c.notAfter)})`),
    "PIN / 用户密码",
  ];
  const go = await p.confirm({ question: `初始化 UKey ${token.label} (${token.serial})？其中的证书和密钥将被清除。/ Initialise the key ${token.label} (${token.serial})? Its certificates and keys are erased.`, consequences });
  if (!go) throw new UkeyError("OPERATION_CANCELLED");
  const soPin = await p.pin({ tokenSerial: token.serial, tokenLabel: token.label, reason: "initialise", so: true });
  const newPin = await newPinTwice(p, token, "initialise");
  report(p, "read-token", "正在初始化 UKey", "Initialising the key");
  const after = await ctx.backend.initToken(token.serial, soPin, newPin, request.label ?? token.label);
  report(p, "done", "初始化完成：请用参考号和授权码重新下载证书（ukey download）", "Initialised: download the certificate again with the reference number and authorization code (ukey download)");
  return { token: after };
}

/** Changes the user PIN: the current one, then the new one twice. @throws UkeyError TOKEN_PIN_INCORRECT, PIN_TOO_WEAK, PIN_CONFIRMATION_MISMATCH. */
export async function changePinFlow(ctx: FlowContext, request: { tokenSerial: string }): Promise<void> {
  const { session, pin } = await login(ctx.backend, ctx.prompter, request.tokenSerial, "change-pin");
  try {
    const newPin = await newPinTwice(ctx.prompter, session.token, "change-pin");
    await session.changePin(pin, newPin);
    report(ctx.prompter, "done", "PIN 已修改", "PIN changed");
  } finally {
    await session.close();
  }
}
