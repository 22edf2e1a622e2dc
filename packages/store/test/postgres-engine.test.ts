import { test } from "node:test";
import assert from "node:assert/strict";
import { isUkeyError } from "@ukey/policy";
import { LATEST_SCHEMA_VERSION, migrations, openStore, toNumbered } from "../src/index.js";
import { createTestDatabase } from "./support/postgres.js";

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

test("several servers opening a fresh database at once migrate it exactly once", async () => {
  const db = await createTestDatabase();
  try {
    const stores = await Promise.all(Array.from({ length: 4 }, () => openStore({ databaseUrl: db.url })));
    try {
      const rows = await stores[0]!.db.query<{ version: number }>("SELECT version FROM schema_version ORDER BY version");
      // Each migration this code knows, once (numbers may have gaps while branches that each add one are merged).
      assert.deepEqual(rows.map((r) => r.version), [0, ...migrations.map((m) => m.version)]);
      assert.equal(rows.at(-1)!.version, LATEST_SCHEMA_VERSION);
      const head = await stores[1]!.db.query<{ seq: number }>("SELECT seq FROM audit_head");
      assert.deepEqual(head, [{ seq: 0 }]);
    } finally {
      for (const s of stores) await s.close();
    }
  } finally {
    await db.drop();
  }
});
