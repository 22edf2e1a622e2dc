import { test } from "node:test";
import assert from "node:assert/strict";
import { catalogue, errorCodes, UkeyError, describeError } from "../src/index.js";

test("every catalogue entry has zh-CN and en text and remedies", () => {
  assert.ok(errorCodes.length > 20);
  for (const code of errorCodes) {
    const entry = catalogue[code];
    assert.match(code, /^[A-Z][A-Z0-9_]+$/, code);
    for (const field of ["zh", "en", "remedyZh", "remedyEn"] as const) {
      assert.ok(entry[field].trim().length > 3, `${code}.${field}`);
    }
    assert.match(entry.zh, /[\u4e00-\u9fff]/, `${code}.zh is Chinese`);
    assert.match(entry.remedyZh, /[\u4e00-\u9fff]/, `${code}.remedyZh is Chinese`);
    assert.doesNotMatch(entry.en, /[\u4e00-\u9fff]/, `${code}.en is not Chinese`);
  }
});

test("placeholders are filled from params and left visible when missing", () => {
  const err = new UkeyError("IMPORT_ROW_INVALID", { params: { file: "h.csv", line: 3, reason: "empty name" } });
  const p = err.toProblem();
  assert.equal(p.message.en, "Import file h.csv, line 3: empty name");
  assert.match(p.message["zh-CN"], /第 3 行/);
  assert.equal(err.kind, "invalid");
  assert.equal(describeError("CERT_NOT_FOUND").message.en, "No certificate with serial {serial}.");
});

test("a problem carries the params its texts use, and no other", () => {
  const p = new UkeyError("RENEWAL_NOT_YET_OPEN", { params: { opensAt: "2027-01-05", secret: "110101199003077777" } }).toProblem();
  const used = describeError("RENEWAL_NOT_YET_OPEN", { opensAt: "x" }).message.en.includes("x");
  assert.ok(used, "RENEWAL_NOT_YET_OPEN names the date it opens");
  assert.deepEqual(p.params, { opensAt: "2027-01-05" });
  assert.equal(new UkeyError("INTERNAL", { params: { any: "thing" } }).toProblem().params, undefined);
});

test("internal errors never show their detail to users", () => {
  const err = new UkeyError("INTERNAL", { detail: "stack secrets" });
  assert.equal(err.toProblem().detail, undefined);
  assert.equal(new UkeyError("PEM_MALFORMED", { params: { reason: "x" }, detail: "d" }).toProblem().detail, "d");
});

test("a time in a message reads as China's wall-clock time, the params keep the instant for programs", () => {
  // 22:57 UTC on 3 December is 06:57 on 4 December in Beijing: the day a holder sees must be the Chinese one.
  const p = new UkeyError("RENEWAL_LOCKED", { params: { until: "2026-12-03T22:57:12.849Z" } }).toProblem();
  assert.match(p.message["zh-CN"], /至 2026-12-04 06:57（北京时间） ?恢复/);
  assert.match(p.message.en, /until 2026-12-04 06:57 China time \(UTC\+8\)/);
  assert.doesNotMatch(p.message["zh-CN"] + p.message.en, /T22:57|Z\b/);
  assert.deepEqual(p.params, { until: "2026-12-03T22:57:12.849Z" });
  // Days, serials and other values read as they are.
  assert.match(new UkeyError("RENEWAL_NOT_YET_OPEN", { params: { opensAt: "2027-01-05" } }).toProblem().message.en, /opens on 2027-01-05\./);
  assert.match(new UkeyError("CERT_NOT_FOUND", { params: { serial: "2026" } }).toProblem().message.en, /serial 2026\./);
});
