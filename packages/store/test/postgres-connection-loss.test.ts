import { test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { isUkeyError } from "@ukey/policy";
import { openStore } from "../src/index.js";
import { createTestDatabase, postgresAdminUrl } from "./support/postgres.js";

// Issue 18, part 3: a connection whose server goes away while a transaction
// holds it (between two statements) is reported, not fatal. node-postgres
// emits 'error' on such a client, and pg-pool listens only while a client is
// idle: unhandled, it ended the whole server process during a failover.

test("a transaction's connection killed between two statements: DATABASE_UNAVAILABLE, nothing committed, and the next statement gets a fresh connection", async () => {
  const db = await createTestDatabase();
  const store = await openStore({ databaseUrl: db.url });
  const admin = new pg.Client({ connectionString: postgresAdminUrl() });
  await admin.connect();
  try {
    const before = await store.db.query<{ probes: number }>("SELECT probes FROM storage_probe WHERE id = 1");
    await assert.rejects(store.db.transaction(async (tx) => {
      await tx.run("UPDATE storage_probe SET probes = probes + 1 WHERE id = 1");
      const [me] = await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      await admin.query("SELECT pg_terminate_backend($1)", [me!.pid]);
      // The client learns of it while checked out, with no statement running: the 'error' event fires now.
      await new Promise((r) => setTimeout(r, 300));
      await tx.run("UPDATE storage_probe SET probes = probes + 1 WHERE id = 1");
    }), (e: unknown) => {
      assert.ok(isUkeyError(e, "DATABASE_UNAVAILABLE"), String(e));
      return true;
    });
    assert.deepEqual(await store.db.query("SELECT probes FROM storage_probe WHERE id = 1"), before, "the first update was not committed");
    await store.db.probeWrite();
    assert.equal((await store.db.query<{ probes: number }>("SELECT probes FROM storage_probe WHERE id = 1"))[0]!.probes, before[0]!.probes + 1);
  } finally {
    await admin.end();
    await store.close();
    await db.drop();
  }
});
