import { test } from "node:test";
import assert from "node:assert/strict";
import { isUkeyError } from "@ukey/policy";
import { openStore, toNumbered } from "../src/index.js";

test("an unreachable PostgreSQL is reported as DATABASE_UNAVAILABLE", async () => {
  await assert.rejects(openStore({ databaseUrl: "postgres://postgres@127.0.0.1:1/none" }), (e: unknown) => {
    assert.ok(isUkeyError(e, "DATABASE_UNAVAILABLE"), String(e));
    return true;
  });
});

test("placeholders are numbered outside quoted text only", () => {
  const cases: [string, string][] = [
    ["SELECT ? , ?", "SELECT $1 , $2"],
    ["SELECT '?' , ?", "SELECT '?' , $1"],
    ["SELECT 'it''s ?', \"a?\", ?", "SELECT 'it''s ?', \"a?\", $1"],
    ["LIKE ? ESCAPE '\\' AND x = ?", "LIKE $1 ESCAPE '\\' AND x = $2"],
  ];
  for (const [sql, want] of cases) assert.equal(toNumbered(sql), want, sql);
});
