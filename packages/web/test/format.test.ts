import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { subjectName } from "../src/shared/format.js";

// Issue 16 (10): a holder knows a certificate by its name, not its raw subject.
test("subjectName: the common name, with the organisation, from the DN forms the agent and the server write", () => {
  const cases: [string, string][] = [
    ["C=CN, O=示例银行, CN=张三", "张三 · 示例银行"],
    ["CN=李四,O=Example Bank,C=CN", "李四 · Example Bank"],
    ["/C=CN/O=Earlier CA/CN=H1", "H1 · Earlier CA"],
    ["C=CN, OU=个人, CN=王五", "王五"],
    ["CN=Escaped\\, Name, O=Org", "Escaped, Name · Org"],
    ["C=CN, O=No Common Name", "C=CN, O=No Common Name"],
  ];
  for (const [dn, want] of cases) assert.equal(subjectName(dn), want, dn);
});

test("issue 16 (10): the PIN pop-up opens at the size docs/agent-local-api.md gives", () => {
  const features = (text: string) => /window\.open\([^)]*"ukey-pin", "([^"]+)"\)/.exec(text)?.[1];
  const page = features(readFileSync(resolve(import.meta.dirname, "../src/portal/operation-page.tsx"), "utf8"));
  const docs = features(readFileSync(resolve(import.meta.dirname, "../../../docs/agent-local-api.md"), "utf8"));
  assert.ok(page && docs, "both name the window's features");
  assert.equal(page, docs);
});
