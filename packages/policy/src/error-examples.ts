import type { ErrorCode } from "./error-catalogue.js";
import { describeError, type ErrorProblem } from "./errors.js";

type Example = string | number | { "zh-CN": string; en: string };

/**
 * A plausible value for every parameter the catalogue's texts use, in each
 * language where it is words: help pages and `ukey explain` show a code's
 * message with these instead of a bare placeholder or an ellipsis
 * ("证书还不能更新：在线更新将于 2027-03-01 开放。"). error-examples.test.ts
 * fails when a catalogue text uses a parameter that has none.
 */
export const exampleErrorParams: Readonly<Record<string, Example>> = Object.freeze({
  algorithm: "RSA 1024", allowed: "P-256, RSA 2048", attempts: 5, channel: { "zh-CN": "手机银行", en: "mobile" },
  closedAt: "2027-03-01", container: "ukey-renew.0193a5c2-7d1e-7f00-8a11-2c3d4e5f6a7b", count: 2, current: 4, dir: "/var/lib/ukey-renew", enrolment: "enr-1a2b3c", expected: "C=CN, O=示例银行, CN=张三",
  expiredAt: "2026-12-04T02:00:00.000Z", fields: "listen.port, ca.crlShards", file: "ukey-agent-0.1.0-x64.msi", found: 15, function: "SKF_ImportECCKeyPair", holder: "C0001", host: "0.0.0.0", hosts: "db1.internal:5432, db2.internal:5432", id: "01",
  issuer: "C=CN, O=示例银行, CN=示例 CA", keyId: "3f2a9b1c", label: "ca-signing", limit: 16384, line: 12, mechanism: "SM3withSM2 (0x80000003)", module: "/usr/lib/libukey.so",
  next: { "zh-CN": "证明持有当前证书", en: "proof of possession" }, nextUpdate: "2027-12-04T00:00:00.000Z", notAfter: "2027-03-01", number: 3, offered: "P-256", opensAt: "2027-03-01",
  operator: "olga", order: "ord-7k2m9q", origin: "https://pki.example.cn", path: "/var/lib/ukey-renew/ca/ca.key",
  platform: "linux-x64", port: 8443, profile: "personal", profiles: "personal-dual", reason: { "zh-CN": "格式不正确", en: "not well formed" },
  record: { "zh-CN": "持有人 C0001", en: "holder C0001" }, recovery: "rec-4d5e6f", requested: "C=CN, CN=李四", required: "1.2.0",
  requirement: { "zh-CN": "短信验证码", en: "a one-time code" }, revokedAt: "2026-12-01T02:00:00.000Z", role: { "zh-CN": "审计员", en: "auditor" },
  seconds: 30, seq: 128, serial: "7a3f00c1d2e3", serials: "7a3f00c1d2e3, 5b2e11a0c4d7", server: "https://pki.example.cn",
  state: { "zh-CN": "已签发", en: "issued" }, status: { "zh-CN": "已使用", en: "used" }, supported: 14, thisUpdate: "2026-12-04T00:00:00.000Z", token: "PF20FA000123",
  triesLeft: 3, type: "text/plain", until: "2026-12-05T02:00:00.000Z", variable: "UKEY_CA_PASSPHRASE_FILE", version: "0.1.0",
  where: { "zh-CN": "请求正文", en: "the request body" },
});

/** The parameter names the catalogue's texts use that have no example (none, when the table is complete). */
export function missingExampleParams(texts: readonly string[]): string[] {
  const names = new Set(texts.flatMap((t) => [...t.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!)));
  return [...names].filter((n) => !(n in exampleErrorParams)).sort();
}

/** A code's message and remedy as help shows it, each language with its own example values. Throws nothing. */
export function describeErrorExample(code: ErrorCode): ErrorProblem {
  const params = (lang: "zh-CN" | "en") => Object.fromEntries(Object.entries(exampleErrorParams).map(([k, v]) => [k, typeof v === "object" ? v[lang] : v]));
  const zh = describeError(code, params("zh-CN"));
  const en = describeError(code, params("en"));
  return { code, kind: zh.kind, message: { "zh-CN": zh.message["zh-CN"], en: en.message.en }, remedy: { "zh-CN": zh.remedy["zh-CN"], en: en.remedy.en } };
}
