import { test } from "node:test";
import assert from "node:assert/strict";
import {
  catalogue, errorCodes, legacyErrors, lookupError, normaliseSearchText, type ErrorCode, type LegacyErrorEntry,
} from "../src/index.js";

const label = (e: LegacyErrorEntry) => `${e.source} ${e.section} ${e.legacyCode ?? ""} ${e.legacyMessage}`;
const found = (query: string, entry: LegacyErrorEntry) => lookupError(query).some((r) => r.legacy === entry);

test("every legacy entry maps to codes that exist, once each, with text in both languages", () => {
  for (const e of legacyErrors) {
    assert.ok(e.ours.length > 0, label(e));
    assert.equal(new Set(e.ours).size, e.ours.length, `duplicate code in ${label(e)}`);
    for (const code of e.ours) assert.ok(code in catalogue, `${code} of ${label(e)} is not in the catalogue`);
    assert.match(e.legacyMessage, /[\u4e00-\u9fff]/, `${label(e)}: legacy message is Chinese`);
    assert.match(e.meaningZh, /[\u4e00-\u9fff]/, `${label(e)}: meaningZh`);
    assert.doesNotMatch(e.meaningEn, /[\u4e00-\u9fff]/, `${label(e)}: meaningEn has no Chinese`);
    assert.match(e.source, /^00[0-4] /, label(e));
  }
});

test("the table covers every error the seeds list", () => {
  const codes = legacyErrors.flatMap((e) => (e.legacyCode ? [e.legacyCode] : []));
  assert.deepEqual(codes.sort(), ["0116", "0124", "9002", "HTTP 403.7"]);
  const sections = (seed: string) => legacyErrors.filter((e) => e.source.startsWith(seed)).map((e) => e.section);
  // Seed 003: nine numbered cases, case 1 with two messages, cases 2 and 4 sharing one.
  assert.deepEqual(sections("003"), ["case 1", "case 1", "case 2", "case 3", "case 4", "case 5", "case 6", "case 7", "case 8", "case 9"]);
  assert.deepEqual(sections("004"), ["5.1", "5.2", "5.3", "5.4", "5.5", "5.6"]);
  for (const s of ["3.1", "3.2", "3.3", "3.4", "3.5"]) assert.ok(sections("000").includes(s), `seed 000 section ${s}`);
});

test("every legacy entry is found by its code and by its message, whole or in part", () => {
  for (const e of legacyErrors) {
    if (e.legacyCode) assert.ok(found(e.legacyCode, e), `code: ${label(e)}`);
    assert.ok(found(e.legacyMessage, e), `whole message: ${label(e)}`);
    // A fragment from inside the message, as a holder would remember it.
    const n = [...normaliseSearchText(e.legacyMessage)];
    const fragment = n.slice(1, Math.min(n.length - 1, 9)).join("");
    assert.ok(fragment.length >= 3, `fragment of ${label(e)}`);
    assert.ok(found(fragment, e), `fragment "${fragment}": ${label(e)}`);
    for (const v of e.variants ?? []) assert.ok(found(v, e), `variant "${v}": ${label(e)}`);
  }
});

// What holders type, and the entry or code that must come first.
const queries: { name: string; query: string; first: { legacyCode?: string; section?: string; code?: ErrorCode }; match: string }[] = [
  { name: "legacy code 0116", query: "0116", first: { legacyCode: "0116" }, match: "legacy-code" },
  { name: "legacy code 9002", query: "9002", first: { legacyCode: "9002" }, match: "legacy-code" },
  { name: "HTTP 403.7 as printed", query: "HTTP 403.7", first: { legacyCode: "HTTP 403.7" }, match: "legacy-code" },
  { name: "403.7 without HTTP", query: "403.7", first: { legacyCode: "HTTP 403.7" }, match: "legacy-code" },
  { name: "403 alone", query: "403", first: { legacyCode: "HTTP 403.7" }, match: "legacy-code" },
  { name: "code and message pasted together", query: "0124生成密钥对失败", first: { legacyCode: "0124" }, match: "legacy-code" },
  { name: "full-width digits", query: "０１２４", first: { legacyCode: "0124" }, match: "legacy-code" },
  { name: "message of 0124", query: "生成密钥对失败", first: { legacyCode: "0124" }, match: "legacy-message" },
  { name: "memory insufficient, fragment", query: "内存不足", first: { section: "3.5" }, match: "legacy-message" },
  { name: "memory insufficient, half-width comma and space", query: "可用内存不足, 无法完成该命令", first: { section: "3.5" }, match: "legacy-message" },
  { name: "certificate does not exist", query: "证书不存在", first: { section: "5.5" }, match: "legacy-message" },
  { name: "stale session", query: "已经注销或未登录", first: { section: "5.6" }, match: "legacy-message" },
  { name: "storage full of seed 003", query: "存储空间已满", first: { section: "case 3" }, match: "legacy-message" },
  { name: "our code, exact", query: "TOKEN_PIN_LOCKED", first: { code: "TOKEN_PIN_LOCKED" }, match: "code" },
  { name: "our code, lower case with spaces", query: "token not present", first: { code: "TOKEN_NOT_PRESENT" }, match: "code" },
  { name: "our code, part of it", query: "pin locked", first: { code: "TOKEN_PIN_LOCKED" }, match: "code-partial" },
  { name: "words of our English text", query: "Bluetooth mode", first: { code: "TOKEN_NOT_PRESENT" }, match: "text" },
  { name: "words apart, in another order", query: "ukey 不识别", first: { section: "3.1" }, match: "legacy-message" },
  { name: "characters spread out: a particle dropped", query: "忘记密码", first: { section: "2.2" }, match: "legacy-message" },
  { name: "our message before our remedy", query: "授权码", first: { code: "CODE_INVALID" }, match: "text" },
  { name: "our message, spread out", query: "验证码错误", first: { code: "CODE_INVALID" }, match: "text" },
  { name: "our message, holder's word for the PIN", query: "密码错误", first: { code: "TOKEN_PIN_INCORRECT" }, match: "text" },
];

for (const q of queries) {
  test(`lookup: ${q.name}`, () => {
    const results = lookupError(q.query);
    assert.ok(results.length > 0, q.query);
    const r = results[0]!;
    assert.equal(r.match, q.match);
    if (q.first.legacyCode) assert.equal(r.legacy?.legacyCode, q.first.legacyCode);
    if (q.first.section) assert.equal(r.legacy?.section, q.first.section);
    if (q.first.code) assert.equal(r.ours[0]!.code, q.first.code);
    assert.ok(r.ours.length > 0);
  });
}

test("\"storage full\" finds the server's STORAGE_FULL (the exact code) and then the UKey's TOKEN_STORAGE_FULL", () => {
  const results = lookupError("storage full");
  assert.deepEqual(results.slice(0, 2).map((r) => [r.ours[0]!.code, r.match]), [["STORAGE_FULL", "code"], ["TOKEN_STORAGE_FULL", "code-partial"]]);
});

test("a legacy result carries describeError output for each of our codes", () => {
  const [r] = lookupError("0116");
  assert.deepEqual(r!.ours.map((o) => o.code), r!.legacy!.ours);
  const open = r!.ours.find((o) => o.code === "RENEWAL_NOT_YET_OPEN")!;
  assert.equal(open.kind, "conflict");
  assert.match(open.message["zh-CN"], /开放/);
  assert.match(open.remedy.en, /\{opensAt\}/, "placeholders stay visible without params");
});

test("results are ranked: exact code, legacy code, partial code, message, text", () => {
  const order = ["code", "legacy-code", "code-partial", "legacy-message", "text"];
  for (const q of ["PIN", "TOKEN_PIN", "证书", "UKey", "0116", "CERT_EXPIRED", "失败"]) {
    const ranks = lookupError(q).map((r) => order.indexOf(r.match));
    assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b), q);
  }
  const pin = lookupError("TOKEN_PIN");
  assert.deepEqual(pin.slice(0, 3).map((r) => r.ours[0]!.code), ["TOKEN_PIN_INCORRECT", "TOKEN_PIN_LOCKED", "TOKEN_PIN_PROMPT_FAILED"]);
  const exact = lookupError("CERT_EXPIRED");
  assert.equal(exact[0]!.match, "code");
  assert.equal(exact[0]!.ours[0]!.code, "CERT_EXPIRED");
  // A fuller match of a message ranks before a looser one.
  const full = lookupError("Pfx 签名证书制作失败!");
  assert.equal(full[0]!.legacy?.section, "case 8");
});

test("entries sharing one message are all returned (seed 003 cases 2 and 4)", () => {
  const sections = lookupError("产生申请书失败！").map((r) => r.legacy?.section);
  assert.deepEqual(sections, ["case 2", "case 4"]);
});

test("a legacy entry appears once, under its best match", () => {
  for (const q of ["0124生成密钥对失败", "HTTP 403.7 禁止访问:要求客户证书"]) {
    const entries = lookupError(q).map((r) => r.legacy).filter((l) => l !== undefined);
    assert.equal(new Set(entries).size, entries.length, q);
  }
});

test("spread-out characters must stay close together", () => {
  // 证 … 满 occur in that order in many long texts, but never close.
  assert.deepEqual(lookupError("证满"), []);
  assert.ok(!lookupError("密码失败").some((r) => r.ours.some((o) => o.code === "TOKEN_PIN_INCORRECT")));
});

test("queries that match nothing return []", () => {
  for (const q of ["", "   ", "，。！", "xyzzy", "01245", "9", "紫", "(.*)", "HTTP 500"]) {
    assert.deepEqual(lookupError(q), [], JSON.stringify(q));
  }
});

test("every code of the catalogue is found by itself, first", () => {
  for (const code of errorCodes) {
    const [r] = lookupError(code.toLowerCase());
    assert.equal(r?.match, "code", code);
    assert.equal(r?.ours[0]!.code, code);
  }
});
