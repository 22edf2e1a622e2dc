import { test } from "node:test";
import assert from "node:assert/strict";
import { catalogue, errorCodes } from "../src/error-catalogue.js";
import { describeErrorExample, missingExampleParams } from "../src/error-examples.js";

// Issue 16: help pages and `ukey explain` show every code's message with example values: no {placeholder}, no ellipsis.
test("every parameter the catalogue's texts use has an example", () => {
  assert.deepEqual(missingExampleParams(Object.values(catalogue).flatMap((e) => [e.zh, e.en, e.remedyZh, e.remedyEn])), []);
});

test("every catalogue message and remedy rendered with the examples: no raw placeholder, no ellipsis", () => {
  for (const code of errorCodes) {
    const p = describeErrorExample(code);
    for (const text of [p.message["zh-CN"], p.message.en, p.remedy["zh-CN"], p.remedy.en]) {
      assert.doesNotMatch(text, /\{\w+\}|…/, `${code}: ${text}`);
    }
  }
  assert.equal(describeErrorExample("RENEWAL_NOT_YET_OPEN").message["zh-CN"], "证书还不能更新：在线更新将于 2027-03-01 开放。");
  assert.match(describeErrorExample("RENEWAL_LOCKED").message["zh-CN"], /2026-12-05 10:00（北京时间）/, "instants in China time");
  assert.match(describeErrorExample("ROLE_FORBIDDEN").message["zh-CN"], /审计员/, "words in the page's language");
});
