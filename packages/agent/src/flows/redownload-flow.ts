import { UkeyError, isUkeyError } from "@ukey/policy";
import { ServerClient, type RedownloadAuthorization } from "../server-client.js";
import type { FlowContext } from "./flow-types.js";
import { report } from "./token-access.js";

/**
 * Self-service re-download (docs/enrolment.md) at the terminal: asks the ID
 * number, has the SMS code sent to the phone on record, asks it (again after
 * a wrong one, a new one on "resend"), and answers the two codes of the
 * certificate to download, for `downloadFlow`. `certSerial` chooses when
 * several certificates may be downloaded again.
 * @throws UkeyError CERT_CHOICE_REQUIRED (several, none chosen), CERT_NOT_FOUND (the chosen one is not among them),
 *   CODE_ATTEMPTS_EXCEEDED, CODE_GUESSES_EXHAUSTED, CODE_DAILY_LIMIT, REDOWNLOAD_NOT_AVAILABLE, and the server's errors.
 */
export async function selfServiceAuthorizationFlow(ctx: Pick<FlowContext, "server" | "prompter">, request: { customerNumber: string; certSerial?: string }): Promise<RedownloadAuthorization> {
  const client = new ServerClient(ctx.server);
  const p = ctx.prompter;
  report(p, "verify-identity", "请输入登记的证件号码", "Enter the ID number on record");
  const idNumber = (await p.idNumber({ idType: "resident-id" })).trim();
  let started = await client.redownloadStart(request.customerNumber.trim(), idNumber);
  let retry: { code: string } | undefined;
  for (let attempt = 1; attempt <= 12; attempt++) {
    report(p, "verify-code", `验证码已发送到 ${started.sentTo}`, `A code was sent to ${started.sentTo}`);
    const answer = await p.oneTimeCode({
      channel: "sms", maskedTo: started.sentTo, expiresAt: new Date(started.expiresAt), resendAfter: new Date(started.resendAt), ...(retry ? { retry } : {}),
    });
    if (answer === "resend") {
      try {
        started = await client.redownloadStart(request.customerNumber.trim(), idNumber);
        retry = undefined;
      } catch (e) {
        if (!isUkeyError(e, "CODE_RESEND_TOO_SOON")) throw e;
        retry = { code: e.code };
      }
      continue;
    }
    let auths: RedownloadAuthorization[];
    try {
      auths = await client.redownloadVerify(started.challengeId, answer.trim());
    } catch (e) {
      if (isUkeyError(e, "SMS_CODE_INVALID")) { retry = { code: e.code }; continue; }
      throw e;
    }
    const wanted = request.certSerial?.toLowerCase().replace(/^0+/, "");
    const chosen = wanted ? auths.find((a) => a.certificate.serial.toLowerCase().replace(/^0+/, "") === wanted) : auths.length === 1 ? auths[0] : undefined;
    if (chosen) return chosen;
    if (wanted) throw new UkeyError("CERT_NOT_FOUND", { params: { serial: request.certSerial! } });
    throw new UkeyError("CERT_CHOICE_REQUIRED", { params: { serials: auths.map((a) => a.certificate.serial).join(", ") } });
  }
  throw new UkeyError("CODE_ATTEMPTS_EXCEEDED");
}
