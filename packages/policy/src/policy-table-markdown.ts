import { renewalChannels, type CertificateProfile } from "./certificate-profile.js";
import { channelNames } from "./renewal-policy.js";

const signed = (d: number) => (d > 0 ? `+${d}` : d < 0 ? `−${-d}` : "0");

/**
 * A profile's values as a Markdown table (field, value, meaning for the
 * holder, in zh-CN and en), the one docs/policies.md shows per preset.
 * Day counts are relative to the CST day of expiry. Pure; throws nothing.
 */
export function renderPolicyTableMarkdown(p: Omit<CertificateProfile, "id">): string {
  const rows: Array<[string, string, string]> = [];
  const v = p.validity;
  const validity = "days" in v ? `${v.days} days` : `${v.years} years`;
  rows.push(["validity", `\`${JSON.stringify(v)}\``, `新证书有效期 ${"days" in v ? `${v.days} 天` : `${v.years} 年`} / a new certificate lasts ${validity}`]);
  rows.push(["validityAnchor", `\`${p.validityAnchor}\``, p.validityAnchor === "issuance"
    ? "从更新当天起算 / counted from the day of renewal"
    : "从旧证书到期日顺延（旧证书已过期则从当天起） / added to the old certificate's expiry (from today if it has expired)"]);
  for (const c of renewalChannels) {
    const w = p.renewal.windows[c];
    rows.push([`renewal.windows.${c}`, w ? `\`${JSON.stringify(w)}\`` : "`null`", w
      ? `${channelNames[c]["zh-CN"]}：到期日 ${signed(-w.opensDaysBefore)} 天 至 ${signed(w.closesDaysAfter)} 天（含） / ${channelNames[c].en}: from day ${signed(-w.opensDaysBefore)} to day ${signed(w.closesDaysAfter)} inclusive`
      : `${channelNames[c]["zh-CN"]}：不提供在线更新 / ${channelNames[c].en}: not offered online`]);
  }
  rows.push(["renewal.noticeDaysBefore", `\`${p.renewal.noticeDaysBefore}\``, `到期前 ${p.renewal.noticeDaysBefore} 天起提醒 / holders are warned from day ${signed(-p.renewal.noticeDaysBefore)}`]);
  rows.push(["renewal.stepUp", `\`${JSON.stringify(p.renewal.stepUp)}\``, p.renewal.stepUp
    ? `过期超过 ${p.renewal.stepUp.afterDaysExpired} 天需加强身份验证（第 ${signed(p.renewal.stepUp.afterDaysExpired + 1)} 天起） / an extra identity check from day ${signed(p.renewal.stepUp.afterDaysExpired + 1)}`
    : "无 / none"]);
  rows.push(["renewal.loginWhenExpired", `\`${p.renewal.loginWhenExpired}\``, p.renewal.loginWhenExpired
    ? "过期后仍可登录以办理更新 / an expired certificate may still sign in"
    : "过期后不能登录 / an expired certificate cannot sign in"]);
  rows.push(["renewal.onCompletion", `\`${p.renewal.onCompletion}\``, p.renewal.onCompletion === "revoke-superseded"
    ? "更新完成后旧证书注销（原因：被取代） / the old certificate is revoked as superseded"
    : "旧证书保留至自然到期 / the old certificate stays valid until it expires"]);
  rows.push(["selfServiceRedownload", `\`${p.selfServiceRedownload === true}\``, p.selfServiceRedownload
    ? "密钥初始化后，持有人可凭证件号码和短信验证码自助重新下载有效证书 / after initialising the key, the holder downloads a valid certificate again with the ID number and an SMS code"
    : "重新下载需机构发放参考号和授权码 / downloading again needs the institution's reference number and authorization code"]);
  rows.push(["keyAlgorithms", `\`${p.keyAlgorithms.join(", ")}\``, "新密钥可用的算法 / algorithms allowed for the new key"]);
  rows.push(["verification", `ID ${p.verification.idNumber ? "✓" : "—"}, code ${p.verification.oneTimeCode ?? "—"}`,
    `持有证明（总是）${p.verification.idNumber ? "、证件号码" : ""}${p.verification.oneTimeCode ? `、${p.verification.oneTimeCode === "sms" ? "短信" : "邮件"}验证码` : ""} / proof of possession (always)${p.verification.idNumber ? ", ID number" : ""}${p.verification.oneTimeCode ? `, one-time code by ${p.verification.oneTimeCode === "sms" ? "SMS" : "e-mail"}` : ""}`]);
  rows.push(["certificateKind", `\`${p.certificateKind}\``, p.certificateKind === "hardware" ? "UKey 硬件证书 / on a hardware key" : "文件证书（PKCS#12） / a PKCS#12 file"]);
  rows.push(["keyUsage, extKeyUsage", `\`${p.keyUsage.join(", ")}\`; \`${p.extKeyUsage.join(", ")}\``, "证书用途 / what the certificate may be used for"]);
  return ["| field | value | 含义 / meaning |", "|---|---|---|", ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n") + "\n";
}
