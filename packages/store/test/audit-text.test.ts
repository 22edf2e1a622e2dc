import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { isUkeyError } from "@ukey/policy";
import { canonicalJson, openStore, type Store } from "../src/index.js";
import { createTestDatabase } from "./support/postgres.js";

// Property, on both engines: every audit entry the log accepts is stored as
// it was hashed (read back, its text and data are what was given) and the
// chain verifies; an entry with text an engine cannot keep (an unpaired
// surrogate anywhere, NUL in a text column) is refused with
// RECORD_TEXT_MALFORMED and nothing is written.
const engines: Array<[string, () => Promise<{ store: Store; dispose(): Promise<void> }>]> = [
  ["SQLite", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ukey-audit-text-"));
    const store = await openStore({ dataDir: dir });
    return { store, dispose: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
  }],
  ["PostgreSQL", async () => {
    const db = await createTestDatabase();
    const store = await openStore({ databaseUrl: db.url });
    return { store, dispose: async () => { await store.close(); await db.drop(); } };
  }],
];

const column = (s: string) => s.isWellFormed() && !s.includes("\0");
const wellFormed = (v: unknown): boolean => typeof v === "string" ? v.isWellFormed()
  : Array.isArray(v) ? v.every(wellFormed)
  : v !== null && typeof v === "object" ? Object.entries(v).every(([k, x]) => k.isWellFormed() && wellFormed(x)) : true;

// Any UTF-16 text, short enough for many runs, with unpaired surrogates and NUL often enough that both outcomes come up.
const unit = fc.oneof(
  { weight: 60, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff", "\u0000") },
);
const text = fc.string({ unit, maxLength: 12 });
const entry = fc.record({
  actor: text, action: text, subjectType: text, subjectId: text,
  data: fc.dictionary(text, fc.jsonValue({ stringUnit: unit, maxDepth: 2 }), { maxKeys: 4 }),
});

for (const [engine, open] of engines) {
  test(`${engine}: every audit entry the log accepts reads back as hashed and verifies; text it cannot keep is refused, nothing written`, async () => {
    const { store, dispose } = await open();
    try {
      let appended = 0;
      let refused = 0;
      await fc.assert(fc.asyncProperty(entry, async (e) => {
        const input = { at: 1_800_000_000_000 + appended, ...e };
        const keepable = column(e.actor) && column(e.action) && column(e.subjectType) && column(e.subjectId) && wellFormed(e.data);
        if (!keepable) {
          await assert.rejects(store.audit.append(input), (err: unknown) => isUkeyError(err, "RECORD_TEXT_MALFORMED"));
          assert.deepEqual(await store.audit.list(appended + 1), [], "nothing written");
          refused += 1;
          return;
        }
        const stored = await store.audit.append(input);
        appended += 1;
        const [back] = await store.audit.list(stored.seq, 1);
        assert.deepEqual([back!.actor, back!.action, back!.subjectType, back!.subjectId], [e.actor, e.action, e.subjectType, e.subjectId]);
        assert.equal(canonicalJson(back!.data), canonicalJson(e.data));
        assert.equal(back!.hash, stored.hash);
      }), { numRuns: engine === "SQLite" ? 300 : 150 });
      assert.ok(appended > 10 && refused > 10, `both kinds of entry were tried (${appended} kept, ${refused} refused)`);
      const v = await store.audit.verify();
      assert.deepEqual(v, { ok: true, entries: appended, head: v.ok ? v.head : "" });
    } finally {
      await dispose();
    }
  });
}
