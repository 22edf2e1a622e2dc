import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  LATEST_SCHEMA_VERSION, migrate, openDatabase, openStore, storeOn,
  type CertificateRecord, type Database, type HolderRecord,
} from "../src/index.js";
import { isUkeyError } from "@ukey/policy";
import { createTestDatabase } from "./support/postgres.js";

// A database written by the previous release (schema 6, with holders,
// certificates and an audit chain) opened by this one: migration 7 keeps
// every row and the chain, and leaves the indexes it says.
const holder: HolderRecord = {
  id: "U1", kind: "person", name: "Upgrade Holder", idType: "resident-id", idHash: "h".repeat(64), idMasked: "1***1",
  phone: null, email: null, organisationId: null, createdAt: 1,
};
const cert = (serial: string, status: CertificateRecord["status"]): Parameters<Database["run"]>[1] => [
  serial, "k1", "CN=CA", "CN=U1", "[]", 1, 2, status, null, null, "s".repeat(64), "hardware", null, "U1", "personal", Buffer.from([1, 2]), 1, 1, 1,
];

async function fillSchema6(db: Database): Promise<void> {
  await migrate(db, 1, 6);
  const s = storeOn(db);
  await s.holders.insert(holder);
  for (const [serial, status] of [["0a", "active"], ["0b", "revoked"], ["0c", "pending"]] as const) {
    await db.run(`INSERT INTO certificates (serial, issuer_key_id, issuer_dn, subject_dn, sans, not_before, not_after, status, revocation_reason,
      revoked_at, spki_sha256, kind, token_serial, holder_id, profile_id, der, imported, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, cert(serial, status));
  }
  for (let i = 0; i < 25; i++) await s.audit.append({ at: 10 + i, actor: "t", action: `a${i}`, subjectType: "certificate", subjectId: i % 2 ? "0a" : "0b", data: { i } });
}

async function indexes(db: Database): Promise<string[]> {
  const rows = db.engine === "sqlite"
    ? await db.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('certificates', 'audit_log', 'renewal_orders') AND name NOT LIKE 'sqlite_%'")
    : await db.query<{ name: string }>("SELECT indexname AS name FROM pg_indexes WHERE tablename IN ('certificates', 'audit_log', 'renewal_orders')");
  return rows.map((r) => r.name).sort();
}

async function checkUpgraded(db: Database): Promise<void> {
  const s = storeOn(db);
  const rows = await db.query<{ version: number }>("SELECT MAX(version) AS version FROM schema_version");
  assert.equal(Number(rows[0]!.version), LATEST_SCHEMA_VERSION);
  const verified = await s.audit.verify();
  assert.equal(verified.ok, true, JSON.stringify(verified));
  assert.equal(verified.ok && verified.entries, 25, "every audit entry kept, chain intact");
  const entries = await s.audit.list(1, 100);
  assert.deepEqual(entries.map((e) => e.seq), Array.from({ length: 25 }, (_, i) => i + 1));
  assert.deepEqual(entries[7]!.data, { i: 7 });
  // The chain goes on from the kept head.
  const next = await s.audit.append({ at: 99, actor: "t", action: "after", subjectType: "t", subjectId: "x" });
  assert.deepEqual([next.seq, next.prevHash], [26, entries.at(-1)!.hash]);
  assert.equal((await s.audit.verify()).ok, true);
  // Certificates still found by holder and by status.
  assert.deepEqual((await s.certificates.search({ holderId: "U1" })).map((c) => c.serial).sort(), ["0a", "0b", "0c"]);
  assert.deepEqual((await s.certificates.search({ status: "revoked" })).map((c) => c.serial), ["0b"]);
  assert.deepEqual(await s.certificates.countByStatus(), { active: 1, revoked: 1, pending: 1 });
  const idx = await indexes(db);
  for (const gone of ["certificates_holder", "certificates_status", "certificates_spki", "certificates_issuer_serial", "renewal_orders_certificate"]) assert.ok(!idx.includes(gone), `${gone} dropped`);
  for (const kept of ["audit_log_subject", "certificates_holder_profile", "certificates_pending", "certificates_revoked_issuer_serial",
    "renewal_orders_certificate_serial", "renewal_orders_one_open"]) {
    assert.ok(idx.includes(kept), `${kept} there: ${idx}`);
  }
  // The CRL's walk still finds the revoked certificate by issuer, through the partial index.
  assert.deepEqual(await s.certificates.revocationStamp("k1"), { count: 0, latestAt: null }, "0b was inserted revoked without a time");
  assert.equal(await s.certificates.revoke("0a", "keyCompromise", 50), true);
  assert.deepEqual(await s.certificates.revocationStamp("k1"), { count: 1, latestAt: 50 });
  const revoked = [];
  for await (const r of s.certificates.listRevoked("k1")) revoked.push(r.serial);
  assert.deepEqual(revoked, ["0a"]);
  // One open order per certificate, still enforced by the database.
  const order = (id: string, state: "created" | "issued" | "completed") => ({
    id, certificateSerial: "0a", holderId: "U1", profileId: "personal", state, channel: "web", newSerial: null, data: {}, createdAt: 1, updatedAt: 1,
  });
  await s.orders.insert(order("o-1", "completed"));
  await s.orders.insert(order("o-2", "created"));
  await assert.rejects(s.orders.insert(order("o-3", "issued")), (e: unknown) => isUkeyError(e, "ORDER_ALREADY_OPEN"));
  assert.equal((await s.orders.findOpenForCertificate("0a"))?.id, "o-2");
  assert.equal(await s.orders.transition("o-2", "created", "completed", 2), true);
  await s.orders.insert(order("o-4", "issued"));
  if (db.engine === "sqlite") {
    const plan = await db.query<{ detail: string }>("EXPLAIN QUERY PLAN SELECT * FROM audit_log WHERE seq = 3");
    assert.match(plan[0]!.detail, /INTEGER PRIMARY KEY/, "the seq is the rowid");
  }
}

test("SQLite: a schema-6 data directory upgrades with its rows and audit chain", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-upgrade-"));
  try {
    const db = await openDatabase({ dataDir: dir });
    await fillSchema6(db);
    await db.close();
    const store = await openStore({ dataDir: dir });
    try {
      await checkUpgraded(store.db);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("PostgreSQL: a schema-6 database upgrades with its rows and audit chain", async () => {
  const pg = await createTestDatabase();
  try {
    const db = await openDatabase({ databaseUrl: pg.url });
    await fillSchema6(db);
    await db.close();
    const store = await openStore({ databaseUrl: pg.url });
    try {
      await checkUpgraded(store.db);
    } finally {
      await store.close();
    }
  } finally {
    await pg.drop();
  }
});
