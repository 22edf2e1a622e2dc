import {
  describeRenewalReason, formatPolicyDate, policyDay, type PolicyLanguage, type RenewalEvaluation, type RenewalReasonCode,
} from "@ukey/policy";
import type { DeliveryChannel, OutgoingMessage } from "../delivery/index.js";

/** One certificate in a reminder. */
export interface ReminderItem {
  serial: string;
  subjectDn: string;
  notAfter: number;
  profileName: { "zh-CN": string; en: string };
  /** The web channel's evaluation now: the window sentence comes from it. */
  evaluation: RenewalEvaluation;
}

/** Most certificates listed one by one in a digest; the rest are counted. */
const DIGEST_LIST = { sms: 3, email: 20 } as const;

/**
 * The state of a certificate in words, with its CST date: "将于 2027-01-05
 * 到期，还剩 30 天" / "expires on 2027-01-05, in 30 days"; on the expiry day
 * "今天（2027-01-05）到期" / "expires today, 2027-01-05"; after it "已于
 * 2027-01-05 到期，已过期 3 天" / "expired on 2027-01-05, 3 days ago".
 */
export function expiryWords(notAfter: number, now: number, lang: PolicyLanguage): string {
  const days = policyDay(notAfter) - policyDay(now);
  const date = formatPolicyDate(notAfter);
  if (lang === "zh-CN") {
    if (days > 0) return `将于 ${date} 到期，还剩 ${days} 天`;
    if (days === 0) return `今天（${date}）到期`;
    return `已于 ${date} 到期，已过期 ${-days} 天`;
  }
  if (days > 0) return `expires on ${date}, in ${days} day${days === 1 ? "" : "s"}`;
  if (days === 0) return `expires today, ${date}`;
  return `expired on ${date}, ${-days} day${days === -1 ? "" : "s"} ago`;
}

/** What the holder can do now, as one sentence from the evaluation: the window, or where else to go. */
export function windowWords(e: RenewalEvaluation, lang: PolicyLanguage): string {
  const order: RenewalReasonCode[] = ["window-open", "window-not-yet-open", "other-channel-open", "other-channel-later", "counter-required"];
  const r = order.map((c) => e.reasons.find((x) => x.code === c)).find((x) => x !== undefined);
  return r ? describeRenewalReason(r, lang) : "";
}

/** The last six hex digits of a serial: enough for a holder to tell two keys apart, nothing to misuse. */
export function serialTail(serial: string): string {
  return serial.slice(-6).toUpperCase();
}

function commonName(dn: string): string {
  const m = /(?:^|,)\s*CN=((?:\\,|[^,])+)/.exec(dn);
  return m ? m[1]!.replace(/\\,/g, ",").trim() : dn;
}

/**
 * A reminder message in zh-CN then en. One certificate to its own holder:
 * what, its state and dates in words, the window, and the renewal link.
 * A digest (several certificates, or any sent to an organisation): how
 * many, the first few listed with their state, and the link to the
 * organisation's list. Reminders carry no secret, so the redacted text is
 * the text.
 */
export function composeReminder(m: {
  institution: string;
  publicUrl: string;
  channel: DeliveryChannel;
  to: string;
  recipientId: string;
  recipientName: string;
  digest: boolean;
  items: readonly ReminderItem[];
  now: number;
}): OutgoingMessage {
  const base = m.publicUrl.replace(/\/+$/, "");
  let zh: string;
  let en: string;
  if (!m.digest && m.items.length === 1) {
    const it = m.items[0]!;
    const link = `${base}/#/renew`;
    zh = `【${m.institution}】您的${it.profileName["zh-CN"]}（序列号尾号 ${serialTail(it.serial)}）${expiryWords(it.notAfter, m.now, "zh-CN")}。${windowWords(it.evaluation, "zh-CN")}更新请访问 ${link}`;
    en = `Your ${it.profileName.en} (serial ending ${serialTail(it.serial)}) ${expiryWords(it.notAfter, m.now, "en")}. ${windowWords(it.evaluation, "en")} Renew at ${link}`;
  } else {
    const link = `${base}/#/org`;
    const shown = m.items.slice(0, DIGEST_LIST[m.channel]);
    const more = m.items.length - shown.length;
    const listZh = shown.map((it, i) => `${i + 1}) ${commonName(it.subjectDn)}（尾号 ${serialTail(it.serial)}）${expiryWords(it.notAfter, m.now, "zh-CN")}`).join("；");
    const listEn = shown.map((it, i) => `${i + 1}) ${commonName(it.subjectDn)} (ending ${serialTail(it.serial)}) ${expiryWords(it.notAfter, m.now, "en")}`).join("; ");
    zh = `【${m.institution}】${m.recipientName}：有 ${m.items.length} 张证书需要更新：${listZh}${more > 0 ? `；另有 ${more} 张` : ""}。请访问 ${link} 查看全部并办理。`;
    en = `${m.recipientName}: ${m.items.length} certificate${m.items.length === 1 ? "" : "s"} to renew: ${listEn}${more > 0 ? `; and ${more} more` : ""}. See them all and renew at ${link}`;
  }
  const text = `${zh}\n${en}`;
  return {
    channel: m.channel, to: m.to, subject: { "zh-CN": "证书到期提醒", en: "Certificate expiry reminder" },
    text, redactedText: text, purpose: "reminder", holderId: m.recipientId,
  };
}
