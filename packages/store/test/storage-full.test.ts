import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, statSync } from "node:fs";
import { isUkeyError } from "@ukey/policy";
import { checkpointPagesFor, openStore, sqliteFile, storageFull, type HolderRecord, type SqliteDatabase, type Store } from "../src/index.js";
import { createTestDatabase } from "./support/postgres.js";
import { mountSmallVolume } from "./support/small-volume.js";

const holder = (id: string): HolderRecord => ({
  id, kind: "person", name: `Holder ${id}`, idType: "resident-id", idHash: "h".repeat(64), idMasked: "1***1",
  phone: null, email: null, organisationId: null, createdAt: 1,
});

describe("what counts as storage full", () => {
  const cases: Array<[string, unknown, boolean]> = [
    ["SQLite's SQLITE_FULL", { code: "SQLITE_FULL", message: "database or disk is full" }, true],
    ["an extended SQLITE_FULL code", { code: "SQLITE_FULL_SOMETHING" }, true],
    ["ENOSPC from a file write", { code: "ENOSPC", message: "no space left on device" }, true],
    ["EDQUOT from a file write", { code: "EDQUOT" }, true],
    ["PostgreSQL 53100 disk_full", { code: "53100", message: "could not extend file" }, true],
    ["PostgreSQL 53200 out_of_memory", { code: "53200" }, true],
    ["PostgreSQL 53300 too_many_connections", { code: "53300" }, true],
    ["a unique violation", { code: "23505" }, false],
    ["SQLITE_IOERR", { code: "SQLITE_IOERR" }, false],
    ["a connection refused", { code: "ECONNREFUSED" }, false],
    ["no code at all", new Error("boom"), false],
    ["not an object", "SQLITE_FULL", false],
  ];
  for (const [name, e, full] of cases) {
    test(`${full ? "recognises" : "does not take"} ${name}`, () => {
      assert.equal(storageFull(e) !== undefined, full);
    });
  }
});

describe("checkpoints on a small volume", () => {
  const cases: Array<[string, number, number]> = [
    ["a large volume keeps ~80 MB of WAL between checkpoints", 50 * 2 ** 30, 20_000],
    ["a 64 MB volume checkpoints every ~8 MB", 64 * 2 ** 20, 2048],
    ["a 4 MB volume checkpoints every 512 KB", 4 * 2 ** 20, 128],
    ["a full volume checkpoints at the smallest threshold", 0, 64],
  ];
  for (const [name, free, pages] of cases) {
    test(name, () => assert.equal(checkpointPagesFor(free, 4096), pages));
  }
});

describe("SQLite on a small filesystem that fills up", () => {
  const volume = mountSmallVolume(12);
  after(() => volume.unmount());

  test("writes fail with STORAGE_FULL, the WAL stays small, and writes work again once space is freed", async () => {
    const dataDir = `${volume.dir}/data`;
    let store: Store = await openStore({ dataDir });
    const db = store.db as SqliteDatabase;
    const file = sqliteFile(dataDir);
    // Half the volume goes to something else (logs, a backup) that will be removed later.
    const filler = volume.fill("filler", 6 * 2 ** 20);
    const written: string[] = [];
    const refusals: unknown[] = [];
    let maxWal = 0;
    const pad = "x".repeat(1500);
    for (let round = 0; refusals.length < 40 && round < 2000; round++) {
      const ids = Array.from({ length: 8 }, (_, i) => `r${round}-${i}`);
      const outcomes = await Promise.allSettled(ids.map((id) => store.transaction(async (r) => {
        await r.holders.insert(holder(id));
        await r.audit.append({ at: round, actor: "test", action: "holder.created", subjectType: "holder", subjectId: id, data: { pad } });
      })));
      outcomes.forEach((o, i) => { if (o.status === "fulfilled") written.push(ids[i]!); else refusals.push(o.reason); });
      maxWal = Math.max(maxWal, statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    }
    assert.ok(written.length > 100, `${written.length} written before the volume filled`);
    assert.ok(refusals.length >= 40, "the volume filled up");
    for (const e of refusals) assert.ok(isUkeyError(e, "STORAGE_FULL"), `refused with ${String(e)}`);
    assert.ok(isUkeyError(db.health.failing, "STORAGE_FULL"), "the database knows its last write failed for lack of space");
    // The checkpoints kept the WAL to a fraction of the volume and moved what it held into the database file.
    assert.ok(maxWal <= 3 * 2 ** 20, `the WAL grew to ${maxWal} bytes`);
    assert.ok(statSync(file).size > 2 ** 20, `the database file holds the data (${statSync(file).size} bytes)`);
    await assert.rejects(db.probeWrite(), (e: unknown) => isUkeyError(e, "STORAGE_FULL"));

    rmSync(filler);
    await db.probeWrite();
    assert.equal(db.health.failing, undefined, "a probe write succeeds once space is freed");
    for (let i = 0; i < 50; i++) {
      const id = `after-${i}`;
      await store.transaction(async (r) => {
        await r.holders.insert(holder(id));
        await r.audit.append({ at: 5000 + i, actor: "test", action: "holder.created", subjectType: "holder", subjectId: id, data: { pad } });
      });
      written.push(id);
    }
    await store.close();

    store = await openStore({ dataDir });
    try {
      const missing = [];
      for (const id of written) if (!(await store.holders.get(id))) missing.push(id);
      assert.deepEqual(missing, [], "every write reported committed is there");
      const audit = await store.audit.verify();
      assert.equal(audit.ok, true, JSON.stringify(audit));
      assert.equal(audit.ok && audit.entries, written.length);
    } finally {
      await store.close();
    }
  });
});

test("PostgreSQL: disk_full (53100) becomes STORAGE_FULL, and a committed write clears it", async () => {
  const pg = await createTestDatabase();
  try {
    const store = await openStore({ databaseUrl: pg.url });
    try {
      const raise = "DO $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$";
      await assert.rejects(store.db.run(raise), (e: unknown) => isUkeyError(e, "STORAGE_FULL") && /53100/.test(String(e.params.reason)));
      await assert.rejects(store.db.transaction(async (tx) => { await tx.run(raise); }), (e: unknown) => isUkeyError(e, "STORAGE_FULL"));
      assert.ok(isUkeyError(store.db.health.failing, "STORAGE_FULL"));
      assert.equal(store.db.health.failures, 2);
      await store.db.probeWrite();
      assert.equal(store.db.health.failing, undefined);
    } finally {
      await store.close();
    }
  } finally {
    await pg.drop();
  }
});
