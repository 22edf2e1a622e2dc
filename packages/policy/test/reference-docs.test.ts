import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  errorCodes, keyVendorTableMarkers, legacyErrors, referenceDocsCommand, renderErrorsMarkdown,
  renderKeyVendorTableMarkdown, replaceGeneratedSection, defaultKeyVendors, type LegacyErrorEntry,
} from "../src/index.js";

const docs = resolve(import.meta.dirname, "../../../docs");
const stale = `is stale: run ${referenceDocsCommand} and commit the result`;

test("docs/errors.md is what the catalogue and the legacy table render to now", () => {
  assert.equal(readFileSync(resolve(docs, "errors.md"), "utf8"), renderErrorsMarkdown(), `docs/errors.md ${stale}`);
});

test("the default table in docs/key-vendors.md is what defaultKeyVendors renders to now", () => {
  const doc = readFileSync(resolve(docs, "key-vendors.md"), "utf8");
  assert.equal(replaceGeneratedSection(doc, keyVendorTableMarkers, renderKeyVendorTableMarkdown()), doc, `docs/key-vendors.md ${stale}`);
});

test("the errors document lists every code and every legacy entry, one table row each", () => {
  const md = renderErrorsMarkdown();
  const rows = md.split("\n").filter((l) => l.startsWith("| "));
  for (const code of errorCodes) assert.equal(rows.filter((r) => r.startsWith(`| \`${code}\` |`)).length, 1, code);
  for (const l of legacyErrors) assert.ok(rows.some((r) => r.includes(l.legacyMessage) && r.includes(l.section)), l.legacyMessage);
  // a header for each table (separators start "|---"), one row per code and per legacy entry
  assert.equal(rows.length, 1 + errorCodes.length + 1 + legacyErrors.length);
});

test("a pipe inside a value does not break the table", () => {
  const entry: LegacyErrorEntry = {
    source: "test", section: "1", legacyMessage: "甲|乙", meaningZh: "含竖线", meaningEn: "a | b", ours: ["TOKEN_NOT_PRESENT"],
  };
  const row = renderErrorsMarkdown([entry]).split("\n").find((l) => l.includes("甲"))!;
  assert.match(row, /甲\\\|乙/);
  assert.equal(row.split(/(?<!\\)\|/).length - 2, 7, "seven cells");
});

test("the key vendor table renders each entry's match, vendor and guidance", () => {
  const md = renderKeyVendorTableMarkdown();
  for (const e of defaultKeyVendors) assert.ok(md.includes(`| \`${e.id}\` |`), e.id);
  assert.match(md, /serialPattern: `\^21\\d\+\$`/);
  assert.match(md, /1\. Switch the UKey off first/);
});

test("replacing the generated section needs both markers, in order", () => {
  const { begin, end } = keyVendorTableMarkers;
  assert.equal(replaceGeneratedSection(`a\n${begin}\nold\n${end}\nb`, keyVendorTableMarkers, "new"), `a\n${begin}\nnew\n${end}\nb`);
  assert.throws(() => replaceGeneratedSection("no markers", keyVendorTableMarkers, "x"), /not found/);
  assert.throws(() => replaceGeneratedSection(`${end}\n${begin}`, keyVendorTableMarkers, "x"), /not found/);
});
