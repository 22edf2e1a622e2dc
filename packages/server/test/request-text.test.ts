import { test } from "node:test";
import assert from "node:assert/strict";
import { systemClock } from "@ukey/policy";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { buildApp } from "../src/app.js";
import { unstorableTextAt } from "../src/request-text.js";
import { openServerContext } from "../src/server-context.js";
import { runUkeyServer, tempDir } from "./support/fixtures.js";

// Regression: a JSON-escaped unpaired surrogate in the admin sign-in's
// operatorId reached the audit log, which stored U+FFFD in its place, so
// that `ukey-server audit verify` failed at that entry on both engines.
// Now the edge refuses it, and the log still verifies.
for (const engine of ["sqlite", "postgres"] as const) {
  test(`${engine}: an unpaired surrogate in the admin sign-in is refused, and the audit log verifies afterwards`, async () => {
    const t = tempDir();
    const db = engine === "postgres" ? await createTestDatabase() : undefined;
    try {
      const env = { UKEY_CA_PASSPHRASE_FILE: t.write("ca-passphrase", "correct horse battery staple\n"), ...(db ? { UKEY_DATABASE_URL: db.url } : {}) };
      const dataDir = t.path("data");
      const init = runUkeyServer(["init", "--data-dir", dataDir, "--json"], env);
      assert.equal(init.status, 0, init.stdout + init.stderr);
      const ctx = await openServerContext(dataDir, env, systemClock);
      assert.equal(ctx.store.db.engine, engine);
      const app = await buildApp(ctx);
      try {
        const signIn = (operatorId: string) => app.inject({
          method: "POST", url: "/api/v1/admin/sign-in", headers: { "content-type": "application/json" },
          payload: `{"operatorId":${operatorId},"password":"a long enough password","totp":"123456"}`,
        });
        const bad = await signIn(String.raw`"\ud800"`);
        assert.equal(bad.statusCode, 400, bad.body);
        assert.equal(bad.headers["content-type"], "application/problem+json; charset=utf-8");
        assert.equal((bad.json() as { code: string }).code, "REQUEST_TEXT_MALFORMED");
        // An ordinary failed sign-in is audited on the same path, so the log has something to verify.
        const unknown = await signIn(JSON.stringify("nobody"));
        assert.equal(unknown.statusCode, 401, unknown.body);
        // Refusals are counted per window; an id that names no account is audited only as its keyed hash.
        await ctx.refusals.flush();
        const v = await ctx.store.audit.verify();
        assert.equal(v.ok, true, JSON.stringify(v));
        const entries = await ctx.store.audit.list(1, 1000);
        assert.ok(entries.some((e) => e.action === "operator.sign-in-refused" && e.subjectId.startsWith("id-hmac:")), "the refused sign-in of a known-good id is audited");
        assert.ok(entries.every((e) => !`${e.actor}${e.subjectId}${JSON.stringify(e.data)}`.includes("\ufffd")), "no replacement character stored");
      } finally {
        await app.close();
        await ctx.close();
      }
    } finally {
      await db?.drop();
      t.cleanup();
    }
  });
}

test("the walk of request text names where an unpaired surrogate or NUL is", () => {
  const cases: Array<[unknown, string | undefined]> = [
    [{ a: "fine", b: ["ok", { c: "中文😀" }] }, undefined],
    ["\ud800", "$"],
    [{ id: "x\u0000y" }, "$.id"],
    [{ list: ["a", "b", "\udfff"] }, "$.list[2]"],
    [{ "\udc00": 1 }, "$ (a key)"],
    [{ deep: { "k\u0000": 1 } }, "$.deep (a key)"],
  ];
  for (const [value, at] of cases) assert.equal(unstorableTextAt(value), at, JSON.stringify(value));
});
