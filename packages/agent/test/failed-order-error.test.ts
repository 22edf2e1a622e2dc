import { test } from "node:test";
import assert from "node:assert/strict";
import { failedOrderError } from "../src/flows/renew-flow.js";

// Issue 16 (3): a failed order resumed by `ukey renew` or the portal names what ended it.
const cases = [
  {
    name: "wrong ID numbers: IDENTITY_ATTEMPTS_EXCEEDED with how many and until when, in China time",
    order: { failure: "IDENTITY_MISMATCH", failedAttempts: 5, failedUntil: "2026-12-04T18:46:54.413Z" },
    code: "IDENTITY_ATTEMPTS_EXCEEDED", zh: /连续 5 次.*暂停至 2026-12-05 02:46（北京时间）/,
  },
  { name: "wrong one-time codes: CODE_ATTEMPTS_EXCEEDED", order: { failure: "CODE_ATTEMPTS_EXCEEDED", failedAttempts: 5 }, code: "CODE_ATTEMPTS_EXCEEDED", zh: /该码已作废/ },
] as const;

for (const c of cases) {
  test(c.name, () => {
    const e = failedOrderError(c.order);
    assert.equal(e.code, c.code);
    const zh = e.toProblem().message["zh-CN"];
    assert.match(zh, c.zh);
    assert.doesNotMatch(zh, /\{\w+\}/, "no placeholder left");
  });
}
