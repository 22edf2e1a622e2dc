import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isUkeyError } from "@ukey/policy";
import {
  LATEST_SCHEMA_VERSION, migrate, openDatabase, openStore, readCaBinding, sqliteFile, storeOn, writeCaBinding,
  type CaBinding, type Database, type OpenStoreOptions,
} from "../src/index.js";
import { createTestDatabase } from "./support/postgres.js";

// Every open of an initialised CA names the CA (openStore's `ca`): the
// database must serve it. Refusals change nothing; a database of an earlier
// release (schema 7) that holds this CA's data is adopted once, with an
// audit entry.
const ours: CaBinding = { issuingKeyId: "a1".repeat(20), issuingCertSha256: "c1".repeat(32) };
const theirs: CaBinding = { issuingKeyId: "b2".repeat(20), issuingCertSha256: "d2".repeat(32) };
const mismatch = (reason: RegExp) => (e: unknown) => isUkeyError(e, "DATABASE_CA_MISMATCH") && reason.test(String(e.params.reason))
  && e.params.keyId === ours.issuingKeyId;

interface Engine {
  name: string;
  /** A fresh, empty database. */
  fresh(): Promise<OpenStoreOptions>;
  /** What can be compared before and after a refusal: the file's bytes, or the tables and their row counts. */
  snapshot(o: OpenStoreOptions): Promise<string>;
  cleanup(): Promise<void>;
}

const made: Array<() => Promise<void>> = [];
after(async () => { for (const m of made) await m(); });

const sqlite: Engine = {
  name: "SQLite",
  async fresh() {
    const dir = mkdtempSync(join(tmpdir(), "ukey-binding-"));
    made.push(async () => rmSync(dir, { recursive: true, force: true }));
    return { dataDir: dir };
  },
  async snapshot(o) {
    const dir = join(o.dataDir!, "db");
    const files = existsSync(dir) ? readdirSync(dir).sort() : [];
    const file = sqliteFile(o.dataDir!);
    return JSON.stringify({ files, sha: existsSync(file) ? createHash("sha256").update(readFileSync(file)).digest("hex") : null });
  },
  async cleanup() {},
};

const postgres: Engine = {
  name: "PostgreSQL",
  async fresh() {
    const pg = await createTestDatabase();
    made.push(() => pg.drop());
    return { databaseUrl: pg.url };
  },
  async snapshot(o) {
    const db = await openDatabase(o);
    try {
      const tables = await db.query<{ t: string }>("SELECT table_name AS t FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name");
      const counts: Record<string, number> = {};
      for (const { t } of tables) counts[t] = Number((await db.query<{ n: number }>(`SELECT COUNT(*) AS n FROM ${t}`))[0]!.n);
      const head = tables.some((r) => r.t === "audit_head") ? await db.query("SELECT seq, hash FROM audit_head") : [];
      return JSON.stringify({ counts, head });
    } finally {
      await db.close();
    }
  },
  async cleanup() {},
};

/** A database as `ukey-server init` leaves it for `binding`. */
async function initialised(o: OpenStoreOptions, binding: CaBinding): Promise<void> {
  const store = await openStore(o);
  try {
    await store.db.transaction(async (tx) => { await writeCaBinding(tx, binding, "init", 1); });
    await store.issuers.put({ keyId: binding.issuingKeyId, subjectDn: "CN=Issuing", der: Buffer.from([1]), role: "issuing", createdAt: 1 });
    await store.audit.append({ at: 1, actor: "cli", action: "ca.initialised", subjectType: "ca", subjectId: binding.issuingKeyId });
  } finally {
    await store.close();
  }
}

type Schema7Data = "issuer" | "certificate" | "crl" | "audit" | "nothing" | "another CA";

/** A database of the release before schema 8 holding `what` of our CA (or of another, or nothing). */
async function schema7(o: OpenStoreOptions, what: Schema7Data): Promise<void> {
  const db: Database = await openDatabase(o);
  try {
    await migrate(db, 1, 7);
    const s = storeOn(db);
    await s.holders.insert({ id: "H1", kind: "person", name: "H", idType: "resident-id", idHash: "h", idMasked: "1*1", phone: null, email: null, organisationId: null, createdAt: 1 });
    const keyId = what === "another CA" ? theirs.issuingKeyId : ours.issuingKeyId;
    if (what === "issuer" || what === "another CA") await s.issuers.put({ keyId, subjectDn: "CN=Issuing", der: Buffer.from([1]), role: "issuing", createdAt: 1 });
    if (what === "certificate") {
      await s.certificates.insertIntent({
        serial: "0a", issuerKeyId: keyId, issuerDn: "CN=Issuing", subjectDn: "CN=H", sans: [], notBefore: 1, notAfter: 2, spkiSha256: "s",
        kind: "hardware", tokenSerial: null, holderId: "H1", profileId: "personal", createdAt: 1, updatedAt: 1,
      });
    }
    if (what === "crl") await s.crls.nextNumber(keyId, 1);
    if (what === "audit") await s.audit.append({ at: 1, actor: "cli", action: "ca.initialised", subjectType: "ca", subjectId: keyId });
    await s.audit.append({ at: 2, actor: "cli", action: "holder.created", subjectType: "holder", subjectId: "H1" });
  } finally {
    await db.close();
  }
}

for (const engine of [sqlite, postgres]) {
  describe(`${engine.name}: the CA a database serves`, () => {
    test("opens a database bound to this CA", async () => {
      const o = await engine.fresh();
      await initialised(o, ours);
      const store = await openStore({ ...o, ca: ours });
      try {
        assert.deepEqual(await readCaBinding(store.db), { ...ours, how: "init", boundAt: 1 });
      } finally {
        await store.close();
      }
    });

    test("refuses another CA's database and changes nothing", async () => {
      const o = await engine.fresh();
      await initialised(o, theirs);
      const before = await engine.snapshot(o);
      await assert.rejects(openStore({ ...o, ca: ours }), mismatch(new RegExp(`another CA \\(issuing key id ${theirs.issuingKeyId}\\)`)));
      assert.equal(await engine.snapshot(o), before);
    });

    test("refuses a database bound to another certificate of the same key", async () => {
      const o = await engine.fresh();
      await initialised(o, { ...ours, issuingCertSha256: "ee".repeat(32) });
      await assert.rejects(openStore({ ...o, ca: ours }), mismatch(/another certificate of this key/));
    });

    test("refuses an empty database and creates no schema in it", async () => {
      const o = await engine.fresh();
      if (engine === sqlite) {
        // An empty database file, as SQLite would make one (not a missing or 0-byte file: those are refused before opening).
        const db = await openDatabase(o);
        await db.close();
      }
      const before = await engine.snapshot(o);
      await assert.rejects(openStore({ ...o, ca: ours }), mismatch(/the database is empty/));
      assert.equal(await engine.snapshot(o), before);
    });

    const adopted: Schema7Data[] = ["issuer", "certificate", "crl", "audit"];
    for (const what of adopted) {
      test(`adopts a schema-7 database holding this CA's ${what}, with one audit entry`, async () => {
        const o = await engine.fresh();
        await schema7(o, what);
        for (let open = 0; open < 2; open++) {
          const store = await openStore({ ...o, ca: ours, clock: { now: () => new Date(1000) } });
          try {
            const v = await store.db.query<{ v: number }>("SELECT MAX(version) AS v FROM schema_version");
            assert.equal(Number(v[0]!.v), LATEST_SCHEMA_VERSION);
            assert.deepEqual(await readCaBinding(store.db), { ...ours, how: "adopted", boundAt: 1000 });
            const entries = await store.audit.list(1, 100);
            const adoptions = entries.filter((e) => e.action === "database.adopted");
            assert.equal(adoptions.length, 1, "adopted once, whatever the number of opens");
            assert.equal(adoptions[0]!.subjectId, ours.issuingKeyId);
            assert.equal(adoptions[0]!.data.schemaVersion, 7);
            assert.equal(adoptions[0]!.data[{ issuer: "issuerRecorded", certificate: "certificates", crl: "crlNumber", audit: "initialisedEntry" }[what as "issuer"]], true);
            assert.equal((await store.audit.verify()).ok, true);
          } finally {
            await store.close();
          }
        }
      });
    }

    const refused: Array<[Schema7Data, RegExp]> = [["nothing", /holds nothing of this CA/], ["another CA", /another CA \(issuing key id b2/]];
    for (const [what, reason] of refused) {
      test(`refuses a schema-7 database holding ${what === "nothing" ? "nothing of this CA" : "another CA's data"}, and leaves it at schema 7`, async () => {
        const o = await engine.fresh();
        await schema7(o, what);
        const before = await engine.snapshot(o);
        await assert.rejects(openStore({ ...o, ca: ours }), mismatch(reason));
        assert.equal(await engine.snapshot(o), before);
        const db = await openDatabase(o);
        try {
          assert.equal(Number((await db.query<{ v: number }>("SELECT MAX(version) AS v FROM schema_version"))[0]!.v), 7);
        } finally {
          await db.close();
        }
      });
    }

    // One process holds an embedded database; several instances share one PostgreSQL.
    if (engine === postgres) test("several instances opening a schema-7 database at once adopt it once", async () => {
      const o = await engine.fresh();
      await schema7(o, "issuer");
      const stores = await Promise.all([0, 1, 2].map(() => openStore({ ...o, ca: ours })));
      try {
        const entries = await stores[0]!.audit.list(1, 100);
        assert.equal(entries.filter((e) => e.action === "database.adopted").length, 1);
        assert.equal((await stores[0]!.audit.verify()).ok, true);
      } finally {
        for (const s of stores) await s.close();
      }
    });
  });
}

describe("SQLite: a missing or emptied database file", () => {
  test("refuses a deleted database file and creates nothing", async () => {
    const o = await sqlite.fresh();
    await initialised(o, ours);
    rmSync(sqliteFile(o.dataDir!));
    await assert.rejects(openStore({ ...o, ca: ours }), mismatch(/db\/ukey.sqlite is missing/));
    assert.equal(existsSync(sqliteFile(o.dataDir!)), false);
    assert.deepEqual(readdirSync(join(o.dataDir!, "db")), []);
  });

  test("refuses a deleted db directory and creates nothing", async () => {
    const o = await sqlite.fresh();
    await initialised(o, ours);
    rmSync(join(o.dataDir!, "db"), { recursive: true });
    await assert.rejects(openStore({ ...o, ca: ours }), mismatch(/is missing/));
    assert.equal(existsSync(join(o.dataDir!, "db")), false);
  });

  test("refuses a database file truncated to 0 bytes and leaves it empty", async () => {
    const o = await sqlite.fresh();
    await initialised(o, ours);
    truncateSync(sqliteFile(o.dataDir!), 0);
    await assert.rejects(openStore({ ...o, ca: ours }), mismatch(/is empty \(0 bytes\)/));
    assert.equal(readFileSync(sqliteFile(o.dataDir!)).length, 0);
    assert.deepEqual(readdirSync(join(o.dataDir!, "db")), ["ukey.sqlite"]);
  });
});
