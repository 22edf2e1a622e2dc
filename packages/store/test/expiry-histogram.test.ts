// The expiry histogram behind the operators' chart, on both engines: one
// aggregate query must give the same buckets on SQLite and PostgreSQL.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, type CertificateRecord, type Store } from "../src/index.js";
import { createTestDatabase } from "./support/postgres.js";

const T0 = Date.parse("2026-01-05T00:00:00Z");
const DAY = 86_400_000;
const WEEK = 7 * DAY;

function cert(holderId: string, notAfter: number, status: CertificateRecord["status"] = "active"): Omit<CertificateRecord, "imported"> {
  return {
    serial: randomBytes(16).toString("hex").replace(/^0+/, "1"), issuerKeyId: "aa11", issuerDn: "CN=Test CA", subjectDn: "CN=Zhang San",
    sans: [], notBefore: T0 - 1000 * DAY, notAfter, status, revocationReason: null, revokedAt: null, spkiSha256: randomBytes(32).toString("hex"),
    kind: "hardware", tokenSerial: null, holderId, profileId: "personal", der: Buffer.from([0x30, 0x00]), createdAt: T0, updatedAt: T0,
  };
}

const engines: { name: string; make: () => Promise<{ store: Store; dispose(): Promise<void> }> }[] = [
  {
    name: "SQLite", make: async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "ukey-hist-"));
      const store = await openStore({ dataDir });
      return { store, dispose: async () => { await store.close(); rmSync(dataDir, { recursive: true, force: true }); } };
    },
  },
  {
    name: "PostgreSQL", make: async () => {
      const db = await createTestDatabase();
      const store = await openStore({ databaseUrl: db.url });
      return { store, dispose: async () => { await store.close(); await db.drop(); } };
    },
  },
];

for (const engine of engines) {
  describe(`expiry histogram on ${engine.name}`, () => {
    let h: Awaited<ReturnType<(typeof engines)[number]["make"]>>;
    before(async () => {
      h = await engine.make();
      await h.store.holders.insert({
        id: "H1", kind: "person", name: "张三", idType: "resident-id", idHash: randomBytes(32).toString("hex"), idMasked: "1101**1234",
        phone: null, email: null, organisationId: null, createdAt: T0,
      });
      const rows = [
        cert("H1", T0 + 1 * DAY),            // week 0
        cert("H1", T0 + WEEK - 1),           // week 0, last millisecond
        cert("H1", T0 + WEEK),               // week 1
        cert("H1", T0 + 51 * WEEK + DAY),    // week 51
        cert("H1", T0 + 52 * WEEK),          // beyond the chart
        cert("H1", T0 - DAY, "expired"),     // overdue: expired, never renewed
        cert("H1", T0 - 2 * DAY),            // overdue: still marked active
        cert("H1", T0 - 400 * DAY, "expired"), // expired too long ago to be overdue
        cert("H1", T0 + 2 * DAY, "superseded"), // renewed: not counted
        cert("H1", T0 + 2 * DAY, "revoked"),    // revoked: not counted
      ];
      for (const r of rows) await h.store.certificates.insertImported(r);
    });
    after(async () => h.dispose());

    test("counts live certificates per week and the overdue ones", async () => {
      const r = await h.store.certificates.expiryHistogram({ from: T0, bucketMs: WEEK, buckets: 52, overdueSinceMs: 365 * DAY });
      assert.equal(r.counts.length, 52);
      assert.equal(r.overdue, 2);
      assert.equal(r.counts[0], 2);
      assert.equal(r.counts[1], 1);
      assert.equal(r.counts[51], 1);
      assert.equal(r.counts.reduce((a, b) => a + b, 0), 4);
    });

    test("an empty range gives zeros", async () => {
      const r = await h.store.certificates.expiryHistogram({ from: T0 + 1000 * WEEK, bucketMs: WEEK, buckets: 4, overdueSinceMs: DAY });
      assert.deepEqual(r, { overdue: 0, counts: [0, 0, 0, 0] });
    });
  });
}
