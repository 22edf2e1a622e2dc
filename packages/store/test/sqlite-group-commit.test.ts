import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, type HolderRecord } from "../src/index.js";

// Group commit on the embedded engine: transactions started together share
// one COMMIT, yet each one's failure stays its own.
const holder = (id: string): HolderRecord => ({
  id, kind: "person", name: id, idType: "resident-id", idHash: "h".repeat(64), idMasked: "1***1",
  phone: null, email: null, organisationId: null, createdAt: 1,
});

test("a body that throws rolls back only its own writes; the others in the same commit are kept", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-group-"));
  try {
    const store = await openStore({ dataDir: dir });
    const results = await Promise.allSettled([
      store.transaction((r) => r.holders.insert(holder("A"))),
      store.transaction(async (r) => { await r.holders.insert(holder("B")); throw new Error("B changes its mind"); }),
      store.transaction((r) => r.holders.insert(holder("C"))),
      store.transaction((r) => r.holders.insert(holder("A"))), // duplicate of the first, in the same commit
    ]);
    assert.deepEqual(results.map((x) => x.status), ["fulfilled", "rejected", "fulfilled", "rejected"]);
    assert.ok(await store.holders.get("A"));
    assert.equal(await store.holders.get("B"), undefined);
    assert.ok(await store.holders.get("C"));
    await store.close();
    const reopened = await openStore({ dataDir: dir });
    assert.deepEqual((await reopened.holders.list()).map((h) => h.id).sort(), ["A", "C"]);
    await reopened.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a transaction that ends inside a body (as SQLite ends one on SQLITE_FULL) fails the whole commit and keeps nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-group-ended-"));
  try {
    const store = await openStore({ dataDir: dir });
    const results = await Promise.allSettled([
      store.transaction((r) => r.holders.insert(holder("A"))),
      // What SQLite does by itself on some errors: the whole transaction of the batch is rolled back.
      store.db.transaction(async (tx) => { await tx.run("ROLLBACK"); }),
      store.transaction((r) => r.holders.insert(holder("C"))),
    ]);
    assert.deepEqual(results.map((x) => x.status), ["rejected", "rejected", "rejected"], "none of the commit is reported written");
    assert.equal(await store.holders.get("A"), undefined);
    assert.equal(await store.holders.get("C"), undefined, "nothing after the end runs in a transaction of its own");
    await store.transaction((r) => r.holders.insert(holder("D")));
    await store.close();
    const reopened = await openStore({ dataDir: dir });
    assert.deepEqual((await reopened.holders.list()).map((h) => h.id), ["D"]);
    await reopened.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("audit appends in one commit chain through one head; a body that rolls back takes its entries and its head with it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-group-audit-"));
  try {
    const store = await openStore({ dataDir: dir });
    await store.audit.append({ at: 1, actor: "t", action: "before", subjectType: "t", subjectId: "0" });
    const entry = (n: number) => ({ at: n, actor: "t", action: `a${n}`, subjectType: "t", subjectId: String(n) });
    const results = await Promise.allSettled([
      store.transaction((r) => r.audit.append(entry(1))),
      store.transaction(async (r) => { await r.audit.appendMany([entry(2), entry(3)]); throw new Error("rolls back"); }),
      store.transaction((r) => r.audit.appendMany([entry(4), entry(5)])),
      store.audit.append(entry(6)),
      store.transaction(async (r) => { await r.audit.append(entry(7)); await r.holders.insert(holder("X")); await r.holders.insert(holder("X")); }),
      store.transaction((r) => r.audit.append(entry(8))),
    ]);
    assert.deepEqual(results.map((x) => x.status), ["fulfilled", "rejected", "fulfilled", "fulfilled", "rejected", "fulfilled"]);
    const list = await store.audit.list(1, 100);
    assert.deepEqual(list.map((e) => [e.seq, e.action]), [[1, "before"], [2, "a1"], [3, "a4"], [4, "a5"], [5, "a6"], [6, "a8"]]);
    const head = (await store.db.query<{ seq: number; hash: string }>("SELECT seq, hash FROM audit_head WHERE id = 1"))[0]!;
    assert.equal(Number(head.seq), 6, "the head row was written once, with the last entry of the commit");
    assert.equal(head.hash, list.at(-1)!.hash);
    assert.deepEqual(await store.audit.verify(), { ok: true, entries: 6, head: head.hash });
    await store.close();
    const reopened = await openStore({ dataDir: dir });
    assert.equal((await reopened.audit.verify()).ok, true);
    await reopened.audit.append(entry(9));
    assert.equal((await reopened.audit.list(7, 1))[0]!.prevHash, head.hash, "the next commit links to the head written");
    await reopened.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("rows come back as plain objects keyed by column name, whatever the names", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-rows-"));
  try {
    const store = await openStore({ dataDir: dir });
    const rows = await store.db.query<Record<string, unknown>>(
      `SELECT 1 AS a, 'x' AS "b c", NULL AS "__proto__", X'0102' AS "it's ""q""", 2 AS a2, 3 AS a`);
    assert.equal(rows.length, 1);
    const r = rows[0]!;
    assert.equal(Object.getPrototypeOf(r), Object.prototype, "a column named __proto__ is a property, not the prototype");
    assert.ok(Object.hasOwn(r, "__proto__"));
    assert.deepEqual(Object.keys(r), ["a", "b c", "__proto__", `it's "q"`, "a2"]);
    assert.equal(r.a, 3, "a later duplicate name wins, as in better-sqlite3's own rows");
    assert.deepEqual(r[`it's "q"`], Buffer.from([1, 2]));
    assert.deepEqual(await store.db.query("SELECT 1 AS one WHERE 0"), []);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
