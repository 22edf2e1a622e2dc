import { formatPolicyDate, keyAlgorithmLabel, shortSerial, subjectFields } from "@ukey/policy";
import type { CertificatePreview } from "../prompter.js";

// The preview in words for a terminal: small, so that the CLI's prompter loads it without the flows.

/** A subject in readable fields, one line: "姓名 张三 · 单位 示例银行 · 证件 H1". */
export function subjectLine(dn: string, lang: "zh" | "en"): string {
  const f = subjectFields(dn);
  const zh = lang === "zh";
  const parts = [
    f.name ? `${zh ? "姓名" : "Name"} ${f.name}` : "",
    f.organisation ? `${zh ? "单位" : "Organisation"} ${f.organisation}` : "",
    f.id ? `${zh ? "证件" : "ID"} ${f.id}` : "",
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : dn;
}

/** The preview as lines for a terminal, in the holder's language. */
export function previewText(p: CertificatePreview, lang: "zh" | "en"): string {
  const zh = lang === "zh";
  const range = (a: string, b: string) => `${formatPolicyDate(Date.parse(a))} ${zh ? "至" : "to"} ${formatPolicyDate(Date.parse(b))}`;
  const lines: string[] = [];
  if (p.current) {
    lines.push(zh ? "将要更新的证书：" : "The certificate to renew:");
    lines.push(`  ${subjectLine(p.current.subject, lang)}`);
    lines.push(`  ${zh ? "序列号尾号" : "Serial (last digits)"} ${shortSerial(p.current.serialHex)}`);
    lines.push(`  ${zh ? "有效期" : "Valid"} ${range(p.current.notBefore, p.current.notAfter)}`);
    if (p.current.algorithm) lines.push(`  ${zh ? "算法" : "Algorithm"} ${keyAlgorithmLabel(p.current.algorithm)}`);
  }
  lines.push(p.kind === "renew" ? (zh ? "更新后的新证书：" : "The new certificate:") : (zh ? "将要下载到 UKey 的证书：" : "The certificate to download onto the key:"));
  lines.push(`  ${subjectLine(p.next.subject, lang)}`);
  if (p.next.profile) lines.push(`  ${zh ? "证书类型" : "Kind"} ${zh ? p.next.profile.zh : p.next.profile.en}`);
  lines.push(`  ${zh ? "有效期" : "Valid"} ${range(p.next.notBefore, p.next.notAfter)}${zh ? "（以签发当天为准）" : " (counted from the day it is issued)"}`);
  if (p.next.algorithm) lines.push(`  ${zh ? "算法" : "Algorithm"} ${keyAlgorithmLabel(p.next.algorithm)}${zh ? "（新密钥在 UKey 中生成，私钥不会离开 UKey）" : " (a new key made on the key; the private key never leaves it)"}`);
  if (p.next.pair) lines.push(zh ? "  同时签发加密证书一张（加密密钥由密钥管理中心生成并托管），有效期相同" : "  With an encryption certificate of the same validity (its key made and escrowed by the key management centre)");
  return lines.join("\n");
}
