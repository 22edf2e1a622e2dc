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
