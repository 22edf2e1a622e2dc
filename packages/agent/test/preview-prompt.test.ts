import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { isUkeyError } from "@ukey/policy";
import type { CertificatePreview } from "../src/prompter.js";
import { TerminalPrompter } from "../src/terminal-prompter.js";

// Issue 16 (seed 004 §3.5): `ukey renew` shows what it will renew and asks y/N at a terminal, No by default.
const preview: CertificatePreview = {
  kind: "renew",
  current: { serialHex: "7a3f00c1d2e3f4a5", subject: "C=CN, O=示例银行, CN=张三, serialNumber=H1", notBefore: "2021-12-03T16:00:00.000Z", notAfter: "2026-12-03T15:59:59.000Z", algorithm: "p256" },
  next: { subject: "C=CN, O=示例银行, CN=张三, serialNumber=H1", notBefore: "2026-12-04T02:00:00.000Z", notAfter: "2031-12-03T02:00:00.000Z", algorithm: "p256", pair: true, profile: { zh: "个人证书", en: "Personal certificate" } },
};

function terminal(tty: boolean, lines: string[]) {
  const stdin = Object.assign(new PassThrough(), { isTTY: tty });
  let err = "";
  const p = new TerminalPrompter({ stdin, err: (t) => { err += t; } }, "zh");
  for (const l of lines) stdin.write(`${l}\n`);
  return { p, stdin, err: () => err };
}

for (const [answer, want] of [["y", true], ["是", true], ["", false], ["n", false], ["yes please", false]] as const) {
  test(`at a terminal, "${answer}" answers ${want}`, async () => {
    const t = terminal(true, [answer]);
    assert.equal(await t.p.confirm({ question: "q", consequences: [], preview }), want);
    t.p.close();
    const out = t.err();
    assert.match(out, /将要更新的证书：\n {2}姓名 张三 · 单位 示例银行 · 证件 H1\n {2}序列号尾号 D2E3 F4A5\n {2}有效期 2021-12-04 至 2026-12-03/);
    assert.match(out, /更新后的新证书：[\s\S]*证书类型 个人证书[\s\S]*有效期 2026-12-04 至 2031-12-03/, "dates in China time");
    assert.match(out, /同时签发加密证书一张/, "a pair says both certificates");
    assert.match(out, /确认更新？\[y\/N\] $/);
  });
}

test("without a terminal and without --yes: CONFIRMATION_REQUIRED, after showing the preview", async () => {
  const t = terminal(false, ["y"]);
  await assert.rejects(t.p.confirm({ question: "q", consequences: [], preview }), (e) => isUkeyError(e, "CONFIRMATION_REQUIRED"));
  t.p.close();
  assert.match(t.err(), /将要更新的证书/);
});

test("--yes shows the preview and goes on without reading", async () => {
  const stdin = Object.assign(new PassThrough(), { isTTY: false });
  let err = "";
  const p = new TerminalPrompter({ stdin, err: (x) => { err += x; } }, "en", {}, true);
  assert.equal(await p.confirm({ question: "q", consequences: [], preview: { ...preview, kind: "download", current: undefined } }), true);
  assert.match(err, /The certificate to download onto the key:\n {2}Name 张三 · Organisation 示例银行 · ID H1/);
  assert.doesNotMatch(err, /\[y\/N\]/);
});
