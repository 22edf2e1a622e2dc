import { test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { LATEST_SCHEMA_VERSION } from "@ukey/store";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { runUkeyServer, startUkeyServer, tempDir } from "./support/fixtures.js";

// Issue 18, part 4: an upgrade on a running PostgreSQL deployment. An
// instance of this release serves; a newer release migrates the shared
// database (here its migration is applied as that release would: one
// transaction with its DDL and its schema_version row). The old instance
// then refuses cleanly with DATABASE_SCHEMA_NEWER (503, so that a load
// balancer moves clients to the upgraded instances), on its requests, its
// /readyz and its control socket, and a start of the old release is
// refused with nothing changed. /healthz still answers: restarting the old
// process would not help.

test("PostgreSQL: an old instance still running after a newer release migrated the database refuses with DATABASE_SCHEMA_NEWER", async () => {
  const t = tempDir();
  const db = await createTestDatabase();
  const client = new pg.Client({ connectionString: db.url });
  try {
    const pass = t.write("ca-passphrase", "correct horse battery staple\n");
    const env = { UKEY_CA_PASSPHRASE_FILE: pass, UKEY_DATABASE_URL: db.url };
    const dataDir = t.path("data");
    const init = runUkeyServer(["init", "--data-dir", dataDir, "--json"], env);
    assert.equal(init.status, 0, init.stdout + init.stderr);
    const old = await startUkeyServer(dataDir, env);
    let log = "";
    old.child.stdout!.on("data", (d) => { log += String(d); });
    try {
      assert.equal((await fetch(`${old.url}/readyz`)).status, 200);
      assert.equal((await fetch(`${old.url}/ca/issuing.pem`)).status, 200);

      // The newer release's migration.
      await client.connect();
      await client.query("BEGIN");
      await client.query("ALTER TABLE holders ADD COLUMN upgrade_marker TEXT");
      await client.query("INSERT INTO schema_version (version, name, applied_at) VALUES ($1, 'a newer release', $2)", [LATEST_SCHEMA_VERSION + 1, Date.now()]);
      await client.query("COMMIT");

      // The old instance reads the version at most every 2 s: its readiness turns 503 within that.
      const deadline = Date.now() + 30_000;
      let ready: Response;
      for (;;) {
        ready = await fetch(`${old.url}/readyz`);
        if (ready.status !== 200 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(ready.status, 503);
      const problem = await ready.json() as { code: string; message: { en: string } };
      assert.equal(problem.code, "DATABASE_SCHEMA_NEWER");
      assert.match(problem.message.en, new RegExp(`version ${LATEST_SCHEMA_VERSION + 1} is newer than this program supports \\(${LATEST_SCHEMA_VERSION}\\)`));
      // Every other route too, and the operator commands sent to it.
      const ca = await fetch(`${old.url}/ca/issuing.pem`);
      assert.equal(ca.status, 503);
      assert.equal((await ca.json() as { code: string }).code, "DATABASE_SCHEMA_NEWER");
      const verify = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], {});
      assert.equal(verify.status, 1, verify.stdout + verify.stderr);
      assert.equal(verify.json<{ error: { code: string } }>().error.code, "DATABASE_SCHEMA_NEWER");
      // Alive, so that it is replaced by an upgrade, not restarted in a loop.
      assert.equal((await fetch(`${old.url}/healthz`)).status, 200);
      assert.match(log, /"code":"DATABASE_SCHEMA_NEWER"[^\n]*stopped its background jobs/);
    } finally {
      await old.stop();
    }

    // The old release cannot start on the migrated database, and changes nothing.
    const before = (await client.query("SELECT COUNT(*)::int AS n FROM audit_log")).rows[0] as { n: number };
    const again = runUkeyServer(["start", "--data-dir", dataDir, "--port", "0", "--json"], env);
    assert.equal(again.status, 1, again.stdout + again.stderr);
    assert.equal(again.json<{ error: { code: string } }>().error.code, "DATABASE_SCHEMA_NEWER");
    const after = (await client.query("SELECT COUNT(*)::int AS n FROM audit_log")).rows[0] as { n: number };
    assert.equal(after.n, before.n);
    const versions = (await client.query("SELECT MAX(version) AS v FROM schema_version")).rows[0] as { v: number };
    assert.equal(Number(versions.v), LATEST_SCHEMA_VERSION + 1);
  } finally {
    await client.end().catch(() => undefined);
    await db.drop();
    t.cleanup();
  }
});
