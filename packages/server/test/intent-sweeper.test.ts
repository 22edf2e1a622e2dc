import { after, describe, mock, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fixedClock } from "@ukey/policy";
import { openStore, type CertificateRecord, type OpenStoreOptions, type Store } from "@ukey/store";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { IntentSweeper } from "../src/intent-sweeper.js";

// Issuance intents orphaned by a crash are abandoned by a running server
// within a sweep interval, each with one audit entry, on both engines; and
// several instances sweeping one PostgreSQL at once record each intent once.
const T0 = Date.parse("2026-06-01T02:00:00Z");
const settings = { abandonAfterSeconds: 300, sweepIntervalSeconds: 60 };
const cleanups: Array<() => Promise<void>> = [];
after(async () => { for (const c of cleanups) await c(); });

const engines: Array<[string, () => Promise<OpenStoreOptions>]> = [
  ["SQLite", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ukey-sweep-"));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    return { dataDir: dir };
  }],
  ["PostgreSQL", async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    return { databaseUrl: db.url };
  }],
];

function intent(createdAt: number): Omit<CertificateRecord, "status" | "der" | "revocationReason" | "revokedAt" | "imported"> {
  return {
    serial: randomBytes(16).toString("hex").replace(/^[89a-f]/, "1"), issuerKeyId: "k1", issuerDn: "CN=Issuing", subjectDn: "CN=H1, serialNumber=H1",
    sans: [], notBefore: createdAt, notAfter: createdAt + 1e9, spkiSha256: "s".repeat(64), kind: "hardware", tokenSerial: null,
    holderId: "H1", profileId: "personal", createdAt, updatedAt: createdAt,
  };
}

async function withHolder(o: OpenStoreOptions): Promise<Store> {
  const store = await openStore(o);
  await store.holders.insert({ id: "H1", kind: "person", name: "H", idType: "resident-id", idHash: "h", idMasked: "1*1", phone: null, email: null, organisationId: null, createdAt: T0 });
  return store;
}

async function abandonedEntries(store: Store): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let from = 1; ; from += 1000) {
    const page = await store.audit.list(from, 1000);
    for (const e of page) if (e.action === "certificate.abandoned") counts.set(e.subjectId, (counts.get(e.subjectId) ?? 0) + 1);
    if (page.length < 1000) return counts;
  }
}

for (const [engine, fresh] of engines) {
  describe(`${engine}: the sweep of orphaned issuance intents`, () => {
    test("abandons intents pending longer than abandonAfterSeconds, each with one audit entry, and leaves the rest", async () => {
      const store = await withHolder(await fresh());
      try {
        const clock = fixedClock(new Date(T0));
        const orphans = [intent(T0), intent(T0 + 1000)];
        const young = intent(T0 + 240_000);
        const done = intent(T0);
        for (const c of [...orphans, young, done]) await store.certificates.insertIntent(c);
        await store.certificates.completeIntent(done.serial, Buffer.from([1]), T0 + 10);
        const sweeper = new IntentSweeper({ store, clock, settings });

        clock.set(new Date(T0 + 299_000));
        assert.deepEqual(await sweeper.runOnce(), [], "nothing is five minutes old yet");
        clock.set(new Date(T0 + 302_000));
        const swept = await sweeper.runOnce();
        assert.deepEqual(swept.map((c) => c.serial), orphans.map((c) => c.serial).sort());
        for (const c of orphans) {
          const stored = await store.certificates.get(c.serial);
          assert.equal(stored?.status, "abandoned");
          assert.equal(stored?.updatedAt, T0 + 302_000);
        }
        assert.equal((await store.certificates.get(young.serial))?.status, "pending");
        assert.equal((await store.certificates.get(done.serial))?.status, "active");
        assert.deepEqual(await sweeper.runOnce(), [], "a second sweep finds nothing");

        const entries = (await store.audit.list(1, 100)).filter((e) => e.action === "certificate.abandoned");
        assert.deepEqual(entries.map((e) => e.subjectId).sort(), orphans.map((c) => c.serial).sort());
        for (const e of entries) {
          assert.equal(e.actor, "system");
          assert.equal(e.at, T0 + 302_000);
          assert.equal(e.data.holderId, "H1");
          assert.match(String(e.data.reason), /no signature recorded within 300 s/);
        }
        assert.equal((await store.audit.verify()).ok, true);
      } finally {
        await store.close();
      }
    });

    test("a listening server sweeps every sweepIntervalSeconds, without a restart", async () => {
      const store = await withHolder(await fresh());
      mock.timers.enable({ apis: ["setTimeout"] });
      try {
        const clock = fixedClock(new Date(T0));
        const sweeper = new IntentSweeper({ store, clock, settings });
        const reported: string[][] = [];
        let heard: () => void = () => undefined;
        sweeper.start({ info: (o) => { reported.push(o.abandoned as string[]); heard(); }, error: (o) => assert.fail(String(o.err)) });
        const orphan = intent(T0);
        await store.certificates.insertIntent(orphan);
        clock.set(new Date(T0 + 301_000));
        const sweptOnce = new Promise<void>((resolve) => { heard = resolve; });
        mock.timers.tick(60_000);
        await sweptOnce;
        assert.deepEqual(reported, [[orphan.serial]]);
        assert.equal((await store.certificates.get(orphan.serial))?.status, "abandoned");
        await sweeper.stop();
      } finally {
        mock.timers.reset();
        await store.close();
      }
    });
  });
}

test("PostgreSQL: three instances sweeping at once record each of 1,200 orphaned intents once", async () => {
  const o = await engines[1]![1]();
  const first = await withHolder(o);
  const others = await Promise.all([openStore(o), openStore(o)]);
  const stores = [first, ...others];
  try {
    const orphans = Array.from({ length: 1200 }, (_, i) => intent(T0 + i));
    for (let i = 0; i < orphans.length; i += 100) {
      await first.transaction(async (r) => { for (const c of orphans.slice(i, i + 100)) await r.certificates.insertIntent(c); });
    }
    const clock = fixedClock(new Date(T0 + 3_600_000));
    const swept = await Promise.all(stores.map((store) => new IntentSweeper({ store, clock, settings }).runOnce()));
    const all = swept.flat().map((c) => c.serial);
    assert.equal(all.length, orphans.length, `swept ${swept.map((s) => s.length).join(" + ")}`);
    assert.equal(new Set(all).size, orphans.length, "no intent taken twice");
    const counts = await abandonedEntries(first);
    assert.equal(counts.size, orphans.length);
    assert.ok([...counts.values()].every((n) => n === 1), "one audit entry per intent");
    assert.equal((await first.certificates.countByStatus()).abandoned, orphans.length);
    assert.equal((await first.audit.verify()).ok, true);
  } finally {
    for (const s of stores) await s.close();
  }
});
