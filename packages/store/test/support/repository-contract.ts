// The repository contract, run unchanged on every engine. Each engine's test
// file calls `repositoryContract` with a factory; a suite shares one fresh
// database, so every test makes its own ids.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { defaultProfile, isUkeyError, type ErrorCode } from "@ukey/policy";
import {
  auditEntryHash, canonicalJson, GENESIS_HASH, LATEST_SCHEMA_VERSION, migrations, reminderId,
  type CertificateRecord, type HolderRecord, type HolderSignInRecord, type OperatorRecord, type OutboxRecord, type ReminderCandidate,
  type ReminderRecord, type RenewalOrderRecord, type Store,
} from "../../src/index.js";

/** One engine under test: opens stores on one database made for the suite. */
export interface EngineUnderTest {
  /** Opens a (further) store on the suite's database. */
  open(): Promise<Store>;
  /** True when several stores may be open on the database at once (PostgreSQL: several servers). */
  sharedByInstances: boolean;
  dispose(): Promise<void>;
}

const T0 = Date.parse("2025-01-01T00:00:00Z");
const DAY = 86_400_000;

let counter = 0;
const uid = (prefix: string): string => `${prefix}-${++counter}-${randomBytes(3).toString("hex")}`;
const serial = (): string => randomBytes(16).toString("hex").replace(/^0+/, "1");

function rejectsWith(code: ErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(isUkeyError(e, code), `expected ${code}, got ${String(e)}`);
    return true;
  };
}

function holder(over: Partial<HolderRecord> = {}): HolderRecord {
  return {
    id: uid("H"), kind: "person", name: "张三", idType: "resident-id", idHash: randomBytes(32).toString("hex"),
    idMasked: "1101**********1234", phone: "+86 138 0000 0000", email: null, organisationId: null, createdAt: T0, ...over,
  };
}

type IntentInput = Parameters<Store["certificates"]["insertIntent"]>[0];

function intent(holderId: string, over: Partial<IntentInput> = {}): IntentInput {
  return {
    serial: serial(), issuerKeyId: "aa11", issuerDn: "CN=Test CA", subjectDn: "CN=Zhang San,O=Bank", sans: ["email:z@example.cn"],
    notBefore: T0, notAfter: T0 + 1825 * DAY, spkiSha256: randomBytes(32).toString("hex"), kind: "hardware",
    tokenSerial: "TW1234567", holderId, profileId: "personal", createdAt: T0, updatedAt: T0, ...over,
  };
}

function imported(holderId: string, over: Partial<Omit<CertificateRecord, "imported">> = {}): Omit<CertificateRecord, "imported"> {
  return {
    ...intent(holderId), status: "active", der: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x07]), revocationReason: null, revokedAt: null, ...over,
  };
}

function order(holderId: string, certificateSerial: string | null, over: Partial<RenewalOrderRecord> = {}): RenewalOrderRecord {
  return {
    id: uid("O"), certificateSerial, holderId, profileId: "personal", state: "created", channel: "portal", newSerial: null,
    data: { step: "verify", tries: [1, 2] }, createdAt: T0, updatedAt: T0, ...over,
  };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Registers the whole contract suite for one engine. */
export function repositoryContract(engineName: string, factory: () => Promise<EngineUnderTest>): void {
  describe(`store contract on ${engineName}`, () => {
    let engine: EngineUnderTest;
    let store: Store;
    let h: HolderRecord;

    before(async () => {
      engine = await factory();
      store = await engine.open();
      h = holder();
      await store.holders.insert(h);
    });
    after(async () => {
      await store?.close();
      await engine?.dispose();
    });

    describe("holders", () => {
      test("inserts and reads back every field", async () => {
        const x = holder({ kind: "organisation", email: "ops@example.cn", phone: null, organisationId: "ORG1", idType: "uscc" });
        await store.holders.insert(x);
        assert.deepEqual(await store.holders.get(x.id), x);
        assert.equal(await store.holders.get("no-such-holder"), undefined);
      });
      test("refuses a duplicate holder id", async () => {
        const x = holder();
        await store.holders.insert(x);
        await assert.rejects(store.holders.insert({ ...x, name: "other" }), rejectsWith("RECORD_DUPLICATE"));
      });
      test("finds by ID hash, oldest record first", async () => {
        const idHash = randomBytes(32).toString("hex");
        const newer = holder({ idHash, createdAt: T0 + 10 });
        const older = holder({ idHash, createdAt: T0 });
        await store.holders.insert(newer);
        await store.holders.insert(older);
        assert.equal((await store.holders.findByIdHash(idHash))?.id, older.id);
        assert.equal(await store.holders.findByIdHash("f".repeat(64)), undefined);
      });
      test("lists in id order with limit and offset", async () => {
        const all = await store.holders.list({ limit: 1000 });
        const ids = all.map((x) => x.id);
        assert.deepEqual(ids, [...ids].sort());
        const second = await store.holders.list({ limit: 2, offset: 1 });
        assert.deepEqual(second.map((x) => x.id), ids.slice(1, 3));
      });
    });

    describe("profiles", () => {
      test("puts, replaces and lists profiles", async () => {
        const p = { ...defaultProfile, id: uid("profile") };
        await store.profiles.put(p, T0);
        assert.deepEqual(await store.profiles.get(p.id), { id: p.id, profile: p, updatedAt: T0 });
        const changed = { ...p, validity: { days: 730 } };
        await store.profiles.put(changed, T0 + 5);
        assert.deepEqual(await store.profiles.get(p.id), { id: p.id, profile: changed, updatedAt: T0 + 5 });
        const listed = await store.profiles.list();
        assert.equal(listed.filter((r) => r.id === p.id).length, 1);
        assert.deepEqual(listed.map((r) => r.id), listed.map((r) => r.id).sort());
        assert.equal(await store.profiles.get("missing"), undefined);
      });
    });

    describe("issuers", () => {
      test("puts, replaces, finds by subject and lists", async () => {
        const keyId = uid("k");
        const subjectDn = `CN=${uid("Issuer")}`;
        await store.issuers.put({ keyId, subjectDn, der: Buffer.from([1, 2, 3]), role: "issuing", createdAt: T0 });
        assert.deepEqual(await store.issuers.get(keyId), { keyId, subjectDn, der: Buffer.from([1, 2, 3]), role: "issuing", createdAt: T0 });
        await store.issuers.put({ keyId, subjectDn, der: Buffer.from([4]), role: "foreign", createdAt: T0 + 1 });
        const again = await store.issuers.get(keyId);
        assert.deepEqual(again?.der, Buffer.from([4]));
        assert.equal(again?.role, "foreign");
        const other = uid("k");
        await store.issuers.put({ keyId: other, subjectDn, der: Buffer.from([5]), role: "root", createdAt: T0 + 2 });
        assert.deepEqual((await store.issuers.findBySubject(subjectDn)).map((i) => i.keyId), [keyId, other]);
        assert.ok((await store.issuers.list()).some((i) => i.keyId === other));
        assert.equal(await store.issuers.get("nope"), undefined);
      });
    });

    describe("certificates", () => {
      test("records an intent as pending, then completes it with its DER", async () => {
        const c = intent(h.id);
        await store.certificates.insertIntent(c);
        const pending = await store.certificates.get(c.serial);
        assert.deepEqual(pending, { ...c, status: "pending", der: null, revocationReason: null, revokedAt: null, imported: false });
        const der = randomBytes(300);
        await store.certificates.completeIntent(c.serial, der, T0 + 1);
        const active = await store.certificates.get(c.serial);
        assert.equal(active?.status, "active");
        assert.deepEqual(active?.der, der);
        assert.equal(active?.updatedAt, T0 + 1);
      });

      const completeCases: { name: string; prepare: (s: string) => Promise<void>; code: ErrorCode }[] = [
        { name: "refuses to complete an intent twice", code: "CERT_INTENT_NOT_PENDING",
          prepare: async (s) => { await store.certificates.insertIntent(intent(h.id, { serial: s })); await store.certificates.completeIntent(s, Buffer.from([1]), T0); } },
        { name: "refuses to complete an abandoned intent", code: "CERT_INTENT_NOT_PENDING",
          prepare: async (s) => { await store.certificates.insertIntent(intent(h.id, { serial: s })); await store.certificates.setStatus(s, "abandoned", T0); } },
        { name: "refuses to complete an unknown serial", code: "CERT_NOT_FOUND", prepare: async () => undefined },
      ];
      for (const c of completeCases) {
        test(c.name, async () => {
          const s = serial();
          await c.prepare(s);
          await assert.rejects(store.certificates.completeIntent(s, Buffer.from([9]), T0 + 2), rejectsWith(c.code));
        });
      }

      test("refuses a duplicate serial and an unknown holder", async () => {
        const c = intent(h.id);
        await store.certificates.insertIntent(c);
        await assert.rejects(store.certificates.insertIntent({ ...c }), rejectsWith("RECORD_DUPLICATE"));
        await assert.rejects(store.certificates.insertImported(imported(h.id, { serial: c.serial })), rejectsWith("RECORD_DUPLICATE"));
        await assert.rejects(store.certificates.insertIntent(intent("no-such-holder")), rejectsWith("HOLDER_NOT_FOUND"));
      });

      test("abandons only pending intents older than the cut-off", async () => {
        const hx = holder();
        await store.holders.insert(hx);
        const old1 = intent(hx.id, { createdAt: T0 - 10 * DAY });
        const old2 = intent(hx.id, { createdAt: T0 - 2 * DAY });
        const fresh = intent(hx.id, { createdAt: T0 });
        const done = intent(hx.id, { createdAt: T0 - 10 * DAY });
        for (const c of [old1, old2, fresh, done]) await store.certificates.insertIntent(c);
        await store.certificates.completeIntent(done.serial, Buffer.from([1]), T0);
        const abandoned = (await store.certificates.abandonStaleIntents(T0 - DAY, T0 + 7)).map((c) => c.serial);
        assert.ok(abandoned.includes(old1.serial) && abandoned.includes(old2.serial));
        assert.ok(!abandoned.includes(fresh.serial) && !abandoned.includes(done.serial));
        assert.equal((await store.certificates.get(old1.serial))?.status, "abandoned");
        assert.equal((await store.certificates.get(old1.serial))?.updatedAt, T0 + 7);
        assert.equal((await store.certificates.get(fresh.serial))?.status, "pending");
        assert.equal((await store.certificates.get(done.serial))?.status, "active");
        assert.deepEqual(await store.certificates.abandonStaleIntents(T0 - DAY, T0 + 8), []);
      });

      test("imports a complete certificate and reads it back", async () => {
        const c = imported(h.id, { status: "revoked", revocationReason: "keyCompromise", revokedAt: T0 + 3, tokenSerial: null, kind: "file", sans: [] });
        await store.certificates.insertImported(c);
        assert.deepEqual(await store.certificates.get(c.serial), { ...c, imported: true });
      });

      test("gets by serial and, when given, issuer key id", async () => {
        const c = intent(h.id, { issuerKeyId: "bb22" });
        await store.certificates.insertIntent(c);
        assert.equal((await store.certificates.get(c.serial, "bb22"))?.serial, c.serial);
        assert.equal(await store.certificates.get(c.serial, "cc33"), undefined);
        assert.equal(await store.certificates.get(serial()), undefined);
      });

      test("revokes once, reports an already revoked certificate, supersedes", async () => {
        const a = imported(h.id);
        const b = imported(h.id);
        await store.certificates.insertImported(a);
        await store.certificates.insertImported(b);
        assert.equal(await store.certificates.revoke(a.serial, "keyCompromise", T0 + 10), true);
        assert.equal(await store.certificates.revoke(a.serial, "cessationOfOperation", T0 + 20), false);
        const ra = await store.certificates.get(a.serial);
        assert.deepEqual([ra?.status, ra?.revocationReason, ra?.revokedAt], ["revoked", "keyCompromise", T0 + 10]);
        assert.equal(await store.certificates.revoke(b.serial, "superseded", T0 + 11, "superseded"), true);
        const rb = await store.certificates.get(b.serial);
        assert.deepEqual([rb?.status, rb?.revocationReason, rb?.revokedAt], ["superseded", "superseded", T0 + 11]);
        await assert.rejects(store.certificates.revoke(serial(), "keyCompromise", T0), rejectsWith("CERT_NOT_FOUND"));
      });

      test("keeps a pre-signed OCSP response beside the certificate; a revocation clears it in the same statement", async () => {
        const issuer = uid("ocsp-issuer");
        const resp = (n: number) => ({ der: Buffer.from([0x30, 0x01, n]), thisUpdate: T0 + n, nextUpdate: T0 + n + DAY, refreshAt: T0 + n + DAY / 2 });
        const a = intent(h.id, { issuerKeyId: issuer });
        await store.certificates.insertIntent(a);
        await store.certificates.completeIntent(a.serial, Buffer.from([1]), T0 + 1, resp(1));
        const st = await store.certificates.ocspState(a.serial, issuer);
        assert.deepEqual(st, {
          serial: a.serial, status: "active", issued: true, revokedAt: null, revocationReason: null, notAfter: a.notAfter,
          response: { der: resp(1).der, thisUpdate: T0 + 1, nextUpdate: T0 + 1 + DAY },
        });
        assert.equal(await store.certificates.ocspState(a.serial, "other"), undefined);
        // Replaced while the state it was signed from holds; refused once a revocation came in between.
        assert.equal(await store.certificates.storeOcsp(a.serial, resp(2), null), true);
        assert.deepEqual((await store.certificates.ocspState(a.serial, issuer))?.response?.der, resp(2).der);
        assert.equal(await store.certificates.revoke(a.serial, "keyCompromise", T0 + 10), true);
        const revoked = await store.certificates.ocspState(a.serial, issuer);
        assert.equal(revoked?.response, undefined);
        assert.deepEqual([revoked?.revokedAt, revoked?.revocationReason], [T0 + 10, "keyCompromise"]);
        assert.equal(await store.certificates.storeOcsp(a.serial, resp(3), null), false);
        assert.equal(await store.certificates.ocspState(a.serial, issuer).then((x) => x?.response), undefined);
        assert.equal(await store.certificates.storeOcsp(a.serial, resp(4), T0 + 10), true);
        assert.deepEqual((await store.certificates.ocspState(a.serial, issuer))?.response?.der, resp(4).der);
        // An intent never takes a response.
        const p = intent(h.id, { issuerKeyId: issuer });
        await store.certificates.insertIntent(p);
        assert.equal(await store.certificates.storeOcsp(p.serial, resp(5), null), false);
        assert.deepEqual(await store.certificates.ocspState(p.serial, issuer).then((x) => [x?.issued, x?.status]), [false, "pending"]);
      });

      test("claims due OCSP responses soonest first, once per lease, and reschedules only under its own lease", async () => {
        const issuer = uid("ocsp-due");
        const serials: string[] = [];
        for (let i = 0; i < 5; i++) {
          const c = intent(h.id, { issuerKeyId: issuer });
          await store.certificates.insertIntent(c);
          // Refresh times T0+100 .. T0+500; the pending one (i = 4) keeps 0 until completed.
          if (i < 4) await store.certificates.completeIntent(c.serial, Buffer.from([1]), T0, { der: Buffer.from([i]), thisUpdate: T0, nextUpdate: T0 + DAY, refreshAt: T0 + (4 - i) * 100 });
          serials.push(c.serial);
        }
        const first = await store.certificates.claimOcspDue(issuer, T0 + 250, T0 + 10_000, 2);
        assert.deepEqual(new Set(first.map((s) => s.serial)), new Set([serials[4], serials[3]]));
        const second = await store.certificates.claimOcspDue(issuer, T0 + 250, T0 + 10_000, 10);
        assert.deepEqual(second.map((s) => s.serial), [serials[2]], "claimed rows are not due again while leased");
        assert.deepEqual(await store.certificates.claimOcspDue(uid("none"), T0 + 250, T0 + 10_000, 10), []);
        // Rescheduled under its lease; a row whose lease another write replaced is left alone.
        await store.certificates.rescheduleOcsp(serials[3]!, T0 + 10_000, T0 + 20_000);
        await store.certificates.rescheduleOcsp(serials[2]!, T0 + 9_999, T0 + 90_000);
        const later = await store.certificates.claimOcspDue(issuer, T0 + 15_000, T0 + 30_000, 10);
        assert.deepEqual(new Set(later.map((s) => s.serial)), new Set([serials[4], serials[2], serials[1], serials[0]]));
      });

      test("sets a status and refuses an unknown serial", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        await store.certificates.setStatus(c.serial, "expired", T0 + 99);
        const r = await store.certificates.get(c.serial);
        assert.deepEqual([r?.status, r?.updatedAt], ["expired", T0 + 99]);
        await assert.rejects(store.certificates.setStatus(serial(), "expired", T0), rejectsWith("CERT_NOT_FOUND"));
      });

      test("lists the revoked of one issuer in serial order, across pages", async () => {
        const issuer = uid("issuer");
        const expected: string[] = [];
        // More than one page (1000) so that the keyset paging is exercised.
        await store.transaction(async (r) => {
          for (let i = 0; i < 1203; i++) {
            const c = imported(h.id, { issuerKeyId: issuer });
            await r.certificates.insertImported(c);
            if (i % 3 === 0) continue; // stays active
            if (i % 3 === 1) {
              await r.certificates.revoke(c.serial, "keyCompromise", T0 + i);
            } else if (i % 2 === 0) {
              await r.certificates.revoke(c.serial, "superseded", T0 + i, "superseded");
            } else {
              await r.certificates.setStatus(c.serial, "superseded", T0 + i); // superseded without revocation
              continue;
            }
            expected.push(c.serial);
          }
          // Another issuer's revoked certificate never appears.
          const other = imported(h.id, { issuerKeyId: uid("other") });
          await r.certificates.insertImported(other);
          await r.certificates.revoke(other.serial, "keyCompromise", T0);
        });
        const seen: { serial: string; revokedAt: number | null; revocationReason: string | null }[] = [];
        for await (const e of store.certificates.listRevoked(issuer)) seen.push(e);
        assert.deepEqual(seen.map((e) => e.serial), [...expected].sort());
        assert.ok(seen.every((e) => e.revokedAt !== null && (e.revocationReason === "keyCompromise" || e.revocationReason === "superseded")));
        const none: unknown[] = [];
        for await (const e of store.certificates.listRevoked(uid("empty"))) none.push(e);
        assert.deepEqual(none, []);
        // The stamp a CRL cache compares: as many as listed, and the latest revocation time.
        const stamp = await store.certificates.revocationStamp(issuer);
        assert.equal(stamp.count, seen.length);
        assert.equal(stamp.latestAt, Math.max(...seen.map((e) => e.revokedAt!)));
        assert.deepEqual(await store.certificates.revocationStamp(uid("empty")), { count: 0, latestAt: null });
        // A CRL shard is a range of serials (issue 17): the ranges split the list, each in keyset pages.
        const ranges = [{ from: "", to: "40" }, { from: "40", to: "c0" }, { from: "c0" }];
        const parts: string[][] = [];
        for (const range of ranges) {
          const part: string[] = [];
          for await (const e of store.certificates.listRevoked(issuer, range)) part.push(e.serial);
          assert.ok(part.every((x) => x >= range.from && (range.to === undefined || x < range.to)), JSON.stringify(range));
          assert.equal((await store.certificates.revocationStamp(issuer, range)).count, part.length);
          parts.push(part);
        }
        assert.deepEqual(parts.flat(), [...expected].sort());
        assert.ok(parts[1]!.length > 0);
      });

      test("lists the revocation changes of one issuer since a time, across pages, lifted holds included (delta CRLs)", async () => {
        const issuer = uid("issuer");
        const since = T0 + 200;
        const expected = new Map<string, string | null>();
        let oldHold = "";
        await store.transaction(async (r) => {
          // Before `since`: not listed.
          for (let i = 0; i < 5; i++) {
            const c = imported(h.id, { issuerKeyId: issuer });
            await r.certificates.insertImported(c);
            await r.certificates.revoke(c.serial, "keyCompromise", T0 + 100);
          }
          // A hold placed before `since` and lifted after it: listed with no revocation (removeFromCRL).
          const held = imported(h.id, { issuerKeyId: issuer });
          await r.certificates.insertImported(held);
          await r.certificates.revoke(held.serial, "certificateHold", T0 + 100);
          await r.certificates.releaseHold(held.serial, T0 + 600);
          expected.set(held.serial, null);
          oldHold = held.serial;
          // More than a page (1000), all at one instant: the keyset's tie on the time is broken by the serial.
          for (let i = 0; i < 1050; i++) {
            const c = imported(h.id, { issuerKeyId: issuer });
            await r.certificates.insertImported(c);
            await r.certificates.revoke(c.serial, i % 2 ? "superseded" : "certificateHold", T0 + 500, i % 2 ? "superseded" : "revoked");
            expected.set(c.serial, i % 2 ? "superseded" : "certificateHold");
          }
          // A revoked certificate imported after `since` is news, whenever it was revoked.
          const late = imported(h.id, { issuerKeyId: issuer, status: "revoked", revokedAt: T0 - 1000, revocationReason: "keyCompromise", updatedAt: T0 + 300 });
          await r.certificates.insertImported(late);
          expected.set(late.serial, "keyCompromise");
          // A status change that is no revocation, and another issuer's revocation: not listed.
          const other = imported(h.id, { issuerKeyId: issuer });
          await r.certificates.insertImported(other);
          await r.certificates.setStatus(other.serial, "expired", T0 + 700);
          const foreign = imported(h.id, { issuerKeyId: uid("other") });
          await r.certificates.insertImported(foreign);
          await r.certificates.revoke(foreign.serial, "keyCompromise", T0 + 700);
        });
        const seen = new Map<string, string | null>();
        let lifted: { revokedAt: number | null; changedAt: number } | undefined;
        for await (const e of store.certificates.listRevocationChanges(issuer, since)) {
          assert.ok(!seen.has(e.serial), `${e.serial} listed twice`);
          seen.set(e.serial, e.revocationReason);
          if (e.serial === oldHold) lifted = e;
        }
        assert.deepEqual([...seen.entries()].sort(), [...expected.entries()].sort());
        assert.deepEqual(lifted, { serial: oldHold, revokedAt: null, revocationReason: null, changedAt: T0 + 600 });
        assert.deepEqual(await store.certificates.revocationChangeStamp(issuer, since), { count: expected.size, latestAt: T0 + 600 });
        assert.deepEqual(await store.certificates.revocationChangeStamp(issuer, T0 + 601), { count: 0, latestAt: null });
        // A shard's range of serials.
        const range = { from: "40", to: "c0" };
        const part: string[] = [];
        for await (const e of store.certificates.listRevocationChanges(issuer, since, range)) part.push(e.serial);
        assert.deepEqual(part.sort(), [...expected.keys()].filter((x) => x >= "40" && x < "c0").sort());
        assert.equal((await store.certificates.revocationChangeStamp(issuer, since, range)).count, part.length);
      });

      test("searches by holder, status, subject and expiry, with paging", async () => {
        const hx = holder();
        await store.holders.insert(hx);
        const certs = [
          imported(hx.id, { subjectDn: "CN=Li Si,O=Big Bank", notAfter: T0 + 10 * DAY }),
          imported(hx.id, { subjectDn: "CN=Wang Wu,O=Big Bank", notAfter: T0 + 20 * DAY, status: "expired" }),
          imported(hx.id, { subjectDn: "CN=100%_Sure,O=Other", notAfter: T0 + 30 * DAY }),
          imported(hx.id, { subjectDn: "CN=李四,O=中国银行", notAfter: T0 + 40 * DAY }),
        ];
        for (const c of certs) await store.certificates.insertImported(c);
        const serials = (rs: CertificateRecord[]) => rs.map((r) => r.serial);
        const cases: { name: string; q: Parameters<Store["certificates"]["search"]>[0]; want: number[] }[] = [
          { name: "by holder, ordered by expiry", q: { holderId: hx.id }, want: [0, 1, 2, 3] },
          { name: "by status", q: { holderId: hx.id, status: "expired" }, want: [1] },
          { name: "subject, ignoring ASCII case", q: { holderId: hx.id, subjectContains: "big bank" }, want: [0, 1] },
          { name: "subject with LIKE wildcards taken literally", q: { holderId: hx.id, subjectContains: "100%_s" }, want: [2] },
          { name: "subject in Chinese", q: { holderId: hx.id, subjectContains: "中国银行" }, want: [3] },
          { name: "expiring before", q: { holderId: hx.id, notAfterBefore: T0 + 25 * DAY }, want: [0, 1] },
          { name: "limit and offset", q: { holderId: hx.id, limit: 2, offset: 1 }, want: [1, 2] },
        ];
        for (const c of cases) {
          assert.deepEqual(serials(await store.certificates.search(c.q)), c.want.map((i) => certs[i]!.serial), c.name);
        }
      });

      test("counts by status", async () => {
        const before = await store.certificates.countByStatus();
        const a = imported(h.id);
        await store.certificates.insertImported(a);
        await store.certificates.insertIntent(intent(h.id));
        const afterCounts = await store.certificates.countByStatus();
        assert.equal(afterCounts.active, (before.active ?? 0) + 1);
        assert.equal(afterCounts.pending, (before.pending ?? 0) + 1);
        assert.equal(typeof afterCounts.active, "number");
      });
    });

    describe("CRL numbers", () => {
      test("start at 1 and increase per issuer", async () => {
        const a = uid("crl");
        const b = uid("crl");
        assert.deepEqual([
          await store.crls.nextNumber(a, T0), await store.crls.nextNumber(a, T0), await store.crls.nextNumber(b, T0), await store.crls.nextNumber(a, T0),
        ], [1, 2, 1, 3]);
      });
      test("are strictly increasing and unique under concurrent calls", async () => {
        const a = uid("crl");
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open());
        try {
          const got = await Promise.all(Array.from({ length: 40 }, (_, i) => stores[i % stores.length]!.crls.nextNumber(a, T0 + i)));
          assert.deepEqual([...got].sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i + 1));
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
      });
    });

    describe("renewal orders", () => {
      test("inserts and reads back an order with its data", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const o = order(h.id, c.serial);
        await store.orders.insert(o);
        assert.deepEqual(await store.orders.get(o.id), o);
        assert.deepEqual(await store.orders.findOpenForCertificate(c.serial), o);
        assert.equal(await store.orders.get("missing"), undefined);
        // A closed copy: with an open one both the id and the open-order index clash, and the engine picks which to report.
        await assert.rejects(store.orders.insert({ ...o, state: "failed" }), rejectsWith("RECORD_DUPLICATE"));
      });

      test("allows one open order per certificate, a new one once it is closed", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const first = order(h.id, c.serial);
        await store.orders.insert(first);
        await assert.rejects(store.orders.insert(order(h.id, c.serial, { state: "issued" })), rejectsWith("ORDER_ALREADY_OPEN"));
        // Closed orders do not count.
        await store.orders.insert(order(h.id, c.serial, { state: "failed" }));
        assert.equal(await store.orders.transition(first.id, "created", "completed", T0 + 1), true);
        assert.equal(await store.orders.findOpenForCertificate(c.serial), undefined);
        const second = order(h.id, c.serial);
        await store.orders.insert(second);
        assert.equal((await store.orders.findOpenForCertificate(c.serial))?.id, second.id);
        // Reopening the first while the second is open is refused by the database.
        await assert.rejects(store.orders.transition(first.id, "completed", "created", T0 + 2), rejectsWith("ORDER_ALREADY_OPEN"));
        // Download orders have no certificate and never collide.
        await store.orders.insert(order(h.id, null));
        await store.orders.insert(order(h.id, null));
      });

      test("tells when a certificate's last order failed", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const other = imported(h.id);
        await store.certificates.insertImported(other);
        assert.equal(await store.orders.lastFailedAt(c.serial), undefined);
        await store.orders.insert(order(h.id, c.serial, { state: "failed", updatedAt: T0 + 5 }));
        await store.orders.insert(order(h.id, c.serial, { state: "failed", updatedAt: T0 + 9 }));
        await store.orders.insert(order(h.id, c.serial, { state: "completed", updatedAt: T0 + 20 }));
        await store.orders.insert(order(h.id, other.serial, { state: "failed", updatedAt: T0 + 30 }));
        assert.equal(await store.orders.lastFailedAt(c.serial), T0 + 9, "the newest failure of this certificate, whatever came after");
        assert.equal(await store.orders.lastFailedAt(other.serial), T0 + 30);
        assert.equal(await store.orders.lastFailedAt("00"), undefined);
      });

      test("an unlock makes earlier failures stop counting, and later ones count again", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        await store.orders.insert(order(h.id, c.serial, { state: "failed", updatedAt: T0 + 5 }));
        await store.orders.unlockRenewal(c.serial, T0 + 6);
        assert.equal(await store.orders.lastFailedAt(c.serial), undefined);
        await store.orders.insert(order(h.id, c.serial, { state: "failed", updatedAt: T0 + 8 }));
        assert.equal(await store.orders.lastFailedAt(c.serial), T0 + 8);
        await store.orders.unlockRenewal(c.serial, T0 + 8);
        assert.equal(await store.orders.lastFailedAt(c.serial), undefined, "a second unlock moves the time on");
      });

      test("lets exactly one of several concurrent inserts open an order", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open());
        try {
          const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) =>
            stores[i % stores.length]!.transaction(async (r) => {
              await r.orders.insert(order(h.id, c.serial));
              await delay(5);
            })));
          assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
          for (const r of results) if (r.status === "rejected") assert.ok(isUkeyError(r.reason, "ORDER_ALREADY_OPEN"), String(r.reason));
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
      });

      test("transitions by compare-and-set and applies the patch", async () => {
        const o = order(h.id, null);
        await store.orders.insert(o);
        assert.equal(await store.orders.transition(o.id, "verified", "issued", T0 + 1), false);
        assert.equal(await store.orders.transition(o.id, "created", "verified", T0 + 2, { data: { verified: "otp" } }), true);
        assert.equal(await store.orders.transition(o.id, "verified", "issued", T0 + 3, { newSerial: "0abc" }), true);
        assert.deepEqual(await store.orders.get(o.id), { ...o, state: "issued", newSerial: "0abc", data: { verified: "otp" }, updatedAt: T0 + 3 });
        assert.equal(await store.orders.transition("missing", "created", "verified", T0), false);
      });

      test("counts by state", async () => {
        const before = await store.orders.countByState();
        await store.orders.insert(order(h.id, null, { state: "cancelled" }));
        const afterCounts = await store.orders.countByState();
        assert.equal(afterCounts.cancelled, (before.cancelled ?? 0) + 1);
      });
    });

    describe("renewal order lists", () => {
      test("lists newest first, by state and holder, in pages", async () => {
        const h2 = holder();
        await store.holders.insert(h2);
        const a = order(h2.id, null, { createdAt: T0 + 1, state: "cancelled" });
        const b = order(h2.id, null, { createdAt: T0 + 2, state: "completed" });
        const c = order(h2.id, null, { createdAt: T0 + 3, state: "cancelled" });
        for (const o of [a, b, c]) await store.orders.insert(o);
        assert.deepEqual((await store.orders.list({ holderId: h2.id })).map((o) => o.id), [c.id, b.id, a.id]);
        assert.deepEqual((await store.orders.list({ holderId: h2.id, state: "cancelled" })).map((o) => o.id), [c.id, a.id]);
        assert.deepEqual((await store.orders.list({ holderId: h2.id, limit: 1, offset: 2 })), [a]);
      });
    });

    describe("enrolments", () => {
      test("inserts, finds by reference and updates", async () => {
        const e = {
          id: uid("E"), holderId: h.id, profileId: "personal", referenceNumber: uid("REF"), codeHash: "scrypt$abc",
          expiresAt: T0 + DAY, attempts: 0, maxAttempts: 5, status: "open" as const, createdAt: T0, updatedAt: T0, replacesSerial: null,
        };
        await store.enrolments.insert(e);
        assert.deepEqual(await store.enrolments.getByReference(e.referenceNumber), e);
        await store.enrolments.update(e.id, { attempts: 1 }, T0 + 1);
        await store.enrolments.update(e.id, { status: "used" }, T0 + 2);
        assert.deepEqual(await store.enrolments.getByReference(e.referenceNumber), { ...e, attempts: 1, status: "used", updatedAt: T0 + 2 });
        assert.equal(await store.enrolments.getByReference("nope"), undefined);
        await assert.rejects(store.enrolments.insert({ ...e, id: uid("E") }), rejectsWith("RECORD_DUPLICATE"));
        await assert.rejects(store.enrolments.insert({ ...e, referenceNumber: uid("REF") }), rejectsWith("RECORD_DUPLICATE"));
        await assert.rejects(store.enrolments.update("missing", { attempts: 2 }, T0), rejectsWith("RECORD_NOT_FOUND"));
        // A self-service re-download's enrolment names the certificate it replaces (migration 16).
        const replaced = imported(h.id);
        await store.certificates.insertImported(replaced);
        const selfService = { ...e, id: uid("E"), referenceNumber: uid("REF"), replacesSerial: replaced.serial };
        await store.enrolments.insert(selfService);
        assert.deepEqual(await store.enrolments.get(selfService.id), selfService);
      });

      test("gets by id, locks by reference, moves status only from the state named, lists newest first", async () => {
        const h2 = holder();
        await store.holders.insert(h2);
        const make = (at: number, status: "open" | "used" = "open") => ({
          id: uid("E"), holderId: h2.id, profileId: "personal", referenceNumber: uid("REF"), codeHash: "hmac-sha256$00",
          expiresAt: at + DAY, attempts: 0, maxAttempts: 5, status, createdAt: at, updatedAt: at, replacesSerial: null,
        });
        const [a, b, c] = [make(T0), make(T0 + 1, "used"), make(T0 + 2)];
        for (const e of [a, b, c]) await store.enrolments.insert(e);
        assert.deepEqual(await store.enrolments.get(a.id), a);
        assert.equal(await store.enrolments.get("missing"), undefined);
        assert.deepEqual(await store.transaction((r) => r.enrolments.lockByReference(c.referenceNumber)), c);
        assert.equal(await store.enrolments.transition(a.id, "open", "used", T0 + 5), true);
        assert.equal(await store.enrolments.transition(a.id, "open", "used", T0 + 6), false);
        assert.deepEqual((await store.enrolments.list({ holderId: h2.id })).map((e) => e.id), [c.id, b.id, a.id]);
        assert.deepEqual((await store.enrolments.list({ holderId: h2.id, status: "open" })).map((e) => e.id), [c.id]);
        assert.deepEqual((await store.enrolments.list({ holderId: h2.id, limit: 1, offset: 1 })).map((e) => e.id), [b.id]);
      });
    });

    describe("operators", () => {
      const operator = (over: Partial<OperatorRecord> = {}): OperatorRecord => ({
        id: uid("op"), role: "operator", passwordHash: "scrypt$32768$8$1$salt$hash", totpSealed: "v1$iv$tag$ct", totpLastStep: null,
        failedAttempts: 0, lockedUntil: null, certSpkiSha256: null, disabled: false, createdAt: T0, updatedAt: T0, ...over,
      });

      test("inserts, gets, finds by pinned key, lists and refuses duplicates", async () => {
        const spki = randomBytes(32).toString("hex");
        const o = operator({ certSpkiSha256: spki, role: "auditor" });
        await store.operators.insert(o);
        await store.operators.insert(operator());
        assert.deepEqual(await store.operators.get(o.id), o);
        assert.deepEqual(await store.operators.findByCertSpki(spki), o);
        assert.equal(await store.operators.get("missing"), undefined);
        assert.ok((await store.operators.list()).some((x) => x.id === o.id));
        await assert.rejects(store.operators.insert({ ...o }), rejectsWith("RECORD_DUPLICATE"));
        await assert.rejects(store.operators.insert(operator({ certSpkiSha256: spki })), rejectsWith("RECORD_DUPLICATE"));
      });

      test("counts failures, locks at the limit and starts again when the lock has run out", async () => {
        const o = operator();
        await store.operators.insert(o);
        const lockUntil = T0 + 15 * 60_000;
        for (let i = 1; i <= 4; i++) {
          const r = await store.operators.recordFailure(o.id, T0 + i, 5, lockUntil);
          assert.deepEqual([r!.failedAttempts, r!.lockedUntil], [i, null]);
        }
        const locked = await store.operators.recordFailure(o.id, T0 + 5, 5, lockUntil);
        assert.deepEqual([locked!.failedAttempts, locked!.lockedUntil], [5, lockUntil]);
        const later = await store.operators.recordFailure(o.id, lockUntil + 1, 5, lockUntil + 1 + 15 * 60_000);
        assert.deepEqual([later!.failedAttempts, later!.lockedUntil], [1, null]);
        assert.equal(await store.operators.recordFailure("missing", T0, 5, lockUntil), undefined);
      });

      test("accepts a TOTP step once and only a later one after it, clearing failures", async () => {
        const o = operator();
        await store.operators.insert(o);
        await store.operators.recordFailure(o.id, T0, 5, T0 + 1);
        assert.equal(await store.operators.acceptSignIn(o.id, 1000, T0 + 10), true);
        assert.equal(await store.operators.acceptSignIn(o.id, 1000, T0 + 11), false);
        assert.equal(await store.operators.acceptSignIn(o.id, 999, T0 + 12), false);
        assert.equal(await store.operators.acceptSignIn(o.id, 1001, T0 + 13), true);
        const r = await store.operators.get(o.id);
        assert.deepEqual([r!.totpLastStep, r!.failedAttempts, r!.lockedUntil, r!.updatedAt], [1001, 0, null, T0 + 13]);
      });

      test("updates role, pin and disabled flag", async () => {
        const o = operator();
        await store.operators.insert(o);
        await store.operators.update(o.id, { role: "admin", disabled: true, certSpkiSha256: "ab".repeat(32) }, T0 + 3);
        assert.deepEqual(await store.operators.get(o.id), { ...o, role: "admin", disabled: true, certSpkiSha256: "ab".repeat(32), updatedAt: T0 + 3 });
        await assert.rejects(store.operators.update("missing", { role: "auditor" }, T0), rejectsWith("RECORD_NOT_FOUND"));
      });
    });

    describe("reminders", () => {
      const drain = async (it: AsyncIterable<ReminderCandidate[]>) => { const out: ReminderCandidate[] = []; for await (const page of it) out.push(...page); return out; };

      test("the scan streams one profile's live, unrenewed certificates in an expiry range, in keyset pages", async () => {
        const profileId = uid("remind");
        const org = holder({ kind: "organisation" });
        const member = holder({ organisationId: org.id });
        const person = holder();
        const renewer = holder();
        const orderer = holder();
        for (const x of [org, member, person, renewer, orderer]) await store.holders.insert(x);
        const at = (d: number) => T0 + d * DAY;
        const inRange = [
          imported(person.id, { profileId, notAfter: at(30) }),
          imported(member.id, { profileId, notAfter: at(31) }),
          imported(org.id, { profileId, notAfter: at(31), status: "expired" }),
        ];
        const outside = [
          imported(person.id, { profileId, notAfter: at(29) - 1 }),
          imported(person.id, { profileId: uid("other"), notAfter: at(30) }),
          imported(member.id, { profileId, notAfter: at(31), status: "revoked", revokedAt: T0 }),
          imported(member.id, { profileId, notAfter: at(31), status: "superseded", revokedAt: T0 }),
        ];
        // Renewed: a newer active certificate of the same holder and profile, or a completed order.
        const renewedByNewer = imported(renewer.id, { profileId, notAfter: at(32) });
        const newer = imported(renewer.id, { profileId, notAfter: at(2000) });
        const renewedByOrder = imported(orderer.id, { profileId, notAfter: at(32) });
        for (const c of [...inRange, ...outside, renewedByNewer, newer, renewedByOrder]) await store.certificates.insertImported(c);
        await store.orders.insert(order(orderer.id, renewedByOrder.serial, { state: "completed", profileId }));
        const found = await drain(store.reminders.scan({ profileId, notAfterFrom: at(29), notAfterTo: at(33), pageSize: 1 }));
        const expected = [...inRange].sort((a, b) => a.notAfter - b.notAfter || (a.serial < b.serial ? -1 : 1));
        assert.deepEqual(found.map((c) => c.serial), expected.map((c) => c.serial));
        assert.deepEqual(found.map((c) => c.recipientId), expected.map((c) => (c.holderId === member.id ? org.id : c.holderId)));
        assert.deepEqual(await store.reminders.settledAmong([...inRange, ...outside.slice(2), renewedByNewer, renewedByOrder].map((c) => c.serial)).then((s) => s.sort()),
          [...outside.slice(2), renewedByNewer, renewedByOrder].map((c) => c.serial).sort());
      });

      test("enqueues once per certificate and threshold, however often and from however many stores", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const cand = { serial: c.serial, holderId: h.id, recipientId: h.id, notAfter: c.notAfter };
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open());
        try {
          const added = await Promise.all(stores.flatMap((s) => [s.reminders.enqueue(30, [cand], T0), s.reminders.enqueue(30, [cand], T0)]));
          assert.equal(added.reduce((a, b) => a + b, 0), 1);
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
        assert.equal(await store.reminders.enqueue(-30, [cand], T0), 1);
        const r = await store.reminders.get(reminderId(c.serial, 30));
        assert.deepEqual(r, {
          id: reminderId(c.serial, 30), certificateSerial: c.serial, threshold: 30, holderId: h.id, recipientId: h.id, notAfter: c.notAfter,
          status: "pending", delivered: [], attempts: 0, nextAttemptAt: T0, lastError: null, readAt: null, sentAt: null, createdAt: T0, updatedAt: T0,
        });
        await assert.rejects(store.reminders.enqueue(7, [{ ...cand, serial: serial() }], T0), rejectsWith("CERT_NOT_FOUND"));
      });

      test("claims what is due once, leases it, and settles it", async () => {
        const hx = holder();
        await store.holders.insert(hx);
        const certs = [1, 2, 3].map(() => imported(hx.id));
        for (const c of certs) await store.certificates.insertImported(c);
        const due = T0 + 20_000 * DAY;
        await store.reminders.enqueue(7, certs.map((c) => ({ serial: c.serial, holderId: hx.id, recipientId: hx.id, notAfter: c.notAfter })), due);
        const ours = (rs: ReminderRecord[]) => rs.filter((r) => r.holderId === hx.id);
        assert.equal(ours(await store.reminders.claimDue(due - 1, due + 1000, 1000)).length, 0, "not due yet");
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open(), await engine.open());
        let claimed: ReminderRecord[];
        try {
          claimed = (await Promise.all(stores.map((s) => s.reminders.claimDue(due, due + 1000, 1000)))).flatMap(ours);
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
        assert.equal(claimed.length, 3, "each claimed by exactly one store");
        assert.equal(new Set(claimed.map((r) => r.id)).size, 3);
        assert.ok(claimed.every((r) => r.nextAttemptAt === due + 1000));
        assert.equal(ours(await store.reminders.claimDue(due + 999, due + 5000, 1000)).length, 0, "leased");
        const [a, b] = claimed;
        await store.reminders.settle([
          { id: a!.id, status: "sent", delivered: ["sms", "email"], attempts: 1, nextAttemptAt: null, lastError: null, sentAt: due + 10 },
          { id: b!.id, status: "pending", delivered: ["email"], attempts: 1, nextAttemptAt: due + 60_000, lastError: "sms: HTTP 500", sentAt: null },
        ], due + 10);
        assert.deepEqual((await store.reminders.get(a!.id))?.delivered, ["sms", "email"]);
        assert.equal((await store.reminders.get(a!.id))?.status, "sent");
        // The lease of the third runs out: it is due again; the retried one only at its time.
        assert.deepEqual(ours(await store.reminders.claimDue(due + 1000, due + 100_000, 1000)).map((r) => r.id), [claimed[2]!.id]);
        const retried = ours(await store.reminders.claimDue(due + 60_000, due + 90_000, 1000));
        assert.deepEqual(retried.map((r) => [r.id, r.lastError, r.delivered]), [[b!.id, "sms: HTTP 500", ["email"]]]);
        assert.equal((await store.reminders.list({ status: "sent", limit: 1000 })).some((r) => r.id === a!.id), true);
        await assert.rejects(store.reminders.settle([{ id: "missing", status: "sent", delivered: [], attempts: 1, nextAttemptAt: null, lastError: null, sentAt: 1 }], due), rejectsWith("RECORD_NOT_FOUND"));
        const counts = await store.reminders.countByStatus();
        assert.ok(counts.sent >= 1 && counts.pending >= 2);
      });

      test("a viewer's bell: its own and its organisation's reminders, unread until read", async () => {
        const org = holder({ kind: "organisation" });
        const member = holder({ organisationId: org.id });
        for (const x of [org, member]) await store.holders.insert(x);
        const c1 = imported(member.id);
        const c2 = imported(org.id);
        for (const c of [c1, c2]) await store.certificates.insertImported(c);
        await store.reminders.enqueue(30, [c1, c2].map((c) => ({ serial: c.serial, holderId: c.holderId, recipientId: org.id, notAfter: c.notAfter })), T0);
        const ids = (rs: ReminderRecord[]) => rs.map((r) => r.id).sort();
        assert.deepEqual(ids(await store.reminders.listForViewer(org.id, { unreadOnly: true })), [reminderId(c1.serial, 30), reminderId(c2.serial, 30)].sort());
        assert.deepEqual(ids(await store.reminders.listForViewer(member.id, { unreadOnly: true })), [reminderId(c1.serial, 30)]);
        assert.equal(await store.reminders.markRead(member.id, [reminderId(c2.serial, 30)], T0 + 1), 0, "not the member's");
        assert.equal(await store.reminders.markRead(member.id, null, T0 + 1), 1);
        assert.deepEqual(ids(await store.reminders.listForViewer(org.id, { unreadOnly: true })), [reminderId(c2.serial, 30)]);
        assert.equal((await store.reminders.listForViewer(org.id)).length, 2);
        assert.equal(await store.reminders.markRead(org.id, [], T0 + 2), 0);
        const certs = await store.reminders.certificatesOf(org.id, { withMembers: true });
        assert.deepEqual(certs.map((c) => c.serial).sort(), [c1.serial, c2.serial].sort());
        assert.deepEqual((await store.reminders.certificatesOf(org.id, { withMembers: false })).map((c) => c.serial), [c2.serial]);
        assert.equal(certs[0]!.renewed, false);
      });

      test("the census counts certificates by status and expiry bucket in one query", async () => {
        const far = T0 + 50_000 * DAY;
        const bounds = [far, far + DAY, far + 2 * DAY];
        const before = await store.reminders.census(bounds);
        const c = [imported(h.id, { notAfter: far - 1 }), imported(h.id, { notAfter: far + 1 }), imported(h.id, { notAfter: far + DAY + 1 }),
          imported(h.id, { notAfter: far + 5 * DAY }), imported(h.id, { notAfter: far + 1, status: "revoked", revokedAt: T0 })];
        for (const x of c) await store.certificates.insertImported(x);
        const after = await store.reminders.census(bounds);
        const count = (rows: typeof after, status: string, bucket: number) => rows.find((r) => r.status === status && r.bucket === bucket)?.count ?? 0;
        // Every certificate of the suite expires before `far`: only these five reach the later buckets.
        assert.deepEqual([1, 2, 3].map((b) => count(after, "active", b) - count(before, "active", b)), [1, 1, 1]);
        assert.equal(count(after, "revoked", 1) - count(before, "revoked", 1), 1);
        assert.equal(count(after, "active", 0) - count(before, "active", 0), 1);
      });

      test("the scan mark only moves forward", async () => {
        const before = await store.reminders.scanMark();
        const day = (before ?? 20_000) + 5;
        await store.reminders.setScanMark(day, T0);
        await store.reminders.setScanMark(day - 3, T0 + 1);
        assert.equal(await store.reminders.scanMark(), day);
      });
    });

    describe("key management centre escrows", () => {
      test("an escrow is stored as given, listed per holder, and refused for an unknown holder or a reused id", async () => {
        const x = holder();
        await store.holders.insert(x);
        const e = { id: `esc-${x.id}`, holderId: x.id, algorithm: "sm2", spki: Buffer.from([0x30, 1, 2]), wrappedKey: Buffer.from([9, 8, 7, 0]), masterKeyId: "mk1", createdAt: T0 };
        await store.kmcEscrows.insert(e);
        await store.kmcEscrows.insert({ ...e, id: `esc2-${x.id}`, createdAt: T0 + 1 });
        assert.deepEqual(await store.kmcEscrows.get(e.id), e);
        assert.deepEqual((await store.kmcEscrows.listByHolder(x.id)).map((r) => r.id), [e.id, `esc2-${x.id}`]);
        assert.equal(await store.kmcEscrows.get("no-such-escrow"), undefined);
        await assert.rejects(store.kmcEscrows.insert({ ...e, id: "esc-nobody", holderId: "no-such-holder" }), rejectsWith("HOLDER_NOT_FOUND"));
        await assert.rejects(store.kmcEscrows.insert(e), rejectsWith("REQUEST_INVALID"));
        assert.equal(await store.kmcEscrows.get("esc-nobody"), undefined);
      });

      test("a certificate pair is found from either certificate or its escrow; each certificate and escrow is in one pair, of known certificates and escrow", async () => {
        const x = holder();
        await store.holders.insert(x);
        const signing = intent(x.id);
        const encryption = intent(x.id);
        const third = intent(x.id);
        for (const c of [signing, encryption, third]) await store.certificates.insertIntent(c);
        const escrowId = `esc-pair-${x.id}`;
        await store.kmcEscrows.insert({ id: escrowId, holderId: x.id, algorithm: "sm2", spki: Buffer.from([0x30]), wrappedKey: Buffer.from([1]), masterKeyId: "mk1", createdAt: T0 });
        const pair = { signingSerial: signing.serial, encryptionSerial: encryption.serial, escrowId, createdAt: T0 };
        await store.certificatePairs.insert(pair);
        assert.deepEqual(await store.certificatePairs.getBySigning(signing.serial), pair);
        assert.deepEqual(await store.certificatePairs.getByEncryption(encryption.serial), pair);
        assert.equal(await store.certificatePairs.getBySigning(encryption.serial), undefined);
        assert.deepEqual(await store.certificatePairs.getByEscrow(escrowId), pair, "found from its escrow (a recovered key's old certificate)");
        assert.equal(await store.certificatePairs.getByEscrow("no-such-escrow"), undefined);
        const fourth = intent(x.id);
        const fifth = intent(x.id);
        for (const c of [fourth, fifth]) await store.certificates.insertIntent(c);
        await assert.rejects(store.certificatePairs.insert({ signingSerial: fourth.serial, encryptionSerial: fifth.serial, escrowId, createdAt: T0 }), "an escrow is certified by one pair");
        await assert.rejects(store.certificatePairs.insert({ ...pair, encryptionSerial: third.serial }), "a signing certificate is in one pair");
        await assert.rejects(store.certificatePairs.insert({ ...pair, signingSerial: third.serial }), "an encryption certificate is in one pair");
        await assert.rejects(store.certificatePairs.insert({ ...pair, signingSerial: third.serial, encryptionSerial: "00ff", escrowId }), "of known certificates");
        await assert.rejects(store.certificatePairs.insert({ ...pair, signingSerial: third.serial, encryptionSerial: third.serial, escrowId: "no-such-escrow" }), "of a known escrow");
        assert.equal(await store.certificatePairs.getBySigning(third.serial), undefined);
      });
    });

    describe("key recoveries", () => {
      test("a request is stored as given, moves only from the status it is in, links one enrolment, and lists by status and holder", async () => {
        const x = holder();
        await store.holders.insert(x);
        const rec = {
          id: uid("R"), holderId: x.id, profileId: "personal", escrowIds: ["esc-a", "esc-b"], reason: "钥匙丢失 lost key", status: "pending" as const,
          requestedBy: "alice", requestedAt: T0, expiresAt: T0 + DAY, decidedBy: null, decidedAt: null, enrolmentId: null,
          deliveredSpkiSha256: null, deliveredAt: null, updatedAt: T0,
        };
        await store.kmcRecoveries.insert(rec);
        assert.deepEqual(await store.kmcRecoveries.get(rec.id), rec);
        await assert.rejects(store.kmcRecoveries.insert(rec), rejectsWith("REQUEST_INVALID"));
        await assert.rejects(store.kmcRecoveries.insert({ ...rec, id: uid("R"), holderId: "no-such-holder" }), rejectsWith("HOLDER_NOT_FOUND"));
        const enr = {
          id: uid("E"), holderId: x.id, profileId: "personal", referenceNumber: uid("REF"), codeHash: "h",
          expiresAt: T0 + DAY, attempts: 0, maxAttempts: 5, status: "open" as const, createdAt: T0, updatedAt: T0,
        };
        await store.enrolments.insert(enr);
        await assert.rejects(store.kmcRecoveries.transition(rec.id, "pending", "released", { enrolmentId: "no-such-enrolment" }, T0 + 1), rejectsWith("ENROLMENT_NOT_FOUND"));
        assert.equal(await store.kmcRecoveries.transition(rec.id, "released", "delivered", {}, T0 + 1), false, "not in that status: nothing moves");
        assert.equal(await store.kmcRecoveries.transition(rec.id, "pending", "released", { decidedBy: "bob", decidedAt: T0 + 2, enrolmentId: enr.id }, T0 + 2), true);
        assert.equal(await store.kmcRecoveries.transition(rec.id, "pending", "rejected", { decidedBy: "carol", decidedAt: T0 + 3 }, T0 + 3), false, "of two decisions one wins");
        const released = { ...rec, status: "released" as const, decidedBy: "bob", decidedAt: T0 + 2, enrolmentId: enr.id, updatedAt: T0 + 2 };
        assert.deepEqual(await store.kmcRecoveries.getByEnrolment(enr.id), released);
        assert.deepEqual(await store.transaction((r) => r.kmcRecoveries.lock(rec.id)), released);
        const other = { ...rec, id: uid("R"), requestedAt: T0 + 5 };
        await store.kmcRecoveries.insert(other);
        await assert.rejects(store.kmcRecoveries.transition(other.id, "pending", "released", { enrolmentId: enr.id }, T0 + 6), rejectsWith("REQUEST_INVALID"));
        assert.deepEqual((await store.kmcRecoveries.list({ holderId: x.id })).map((r) => r.id), [other.id, rec.id]);
        assert.deepEqual((await store.kmcRecoveries.list({ holderId: x.id, status: "pending" })).map((r) => r.id), [other.id]);
        assert.equal(await store.kmcRecoveries.get("no-such-recovery"), undefined);
      });
    });

    describe("holder preferences and sign-in codes", () => {
      test("preferences default to every channel, and are replaced", async () => {
        const x = holder();
        await store.holders.insert(x);
        assert.deepEqual(await store.holderPreferences.get(x.id), { holderId: x.id, smsReminders: true, emailReminders: true, updatedAt: null });
        await store.holderPreferences.put({ holderId: x.id, smsReminders: false, emailReminders: true }, T0 + 1);
        await store.holderPreferences.put({ holderId: x.id, smsReminders: false, emailReminders: false }, T0 + 2);
        assert.deepEqual(await store.holderPreferences.get(x.id), { holderId: x.id, smsReminders: false, emailReminders: false, updatedAt: T0 + 2 });
        const many = await store.holderPreferences.getMany([x.id, h.id]);
        assert.equal(many.get(x.id)?.smsReminders, false);
        assert.equal(many.get(h.id)?.smsReminders, true);
        await assert.rejects(store.holderPreferences.put({ holderId: "no-such-holder", smsReminders: true, emailReminders: true }, T0), rejectsWith("HOLDER_NOT_FOUND"));
      });

      test("sign-in codes: insert, lock and update; a decoy has no holder", async () => {
        const x = holder();
        await store.holders.insert(x);
        const rec = (over: Partial<HolderSignInRecord> = {}): HolderSignInRecord => ({
          id: uid("S"), subject: uid("subject"), holderId: x.id, channel: "sms", sentTo: "138*****000", codeHash: "ab".repeat(32), expiresAt: T0 + 300_000,
          attempts: 0, status: "open", createdAt: T0, updatedAt: T0, ...over,
        });
        const first = rec();
        const decoy = rec({ holderId: null, sentTo: "" });
        await store.holderSignIns.insert(first);
        await store.holderSignIns.insert(decoy);
        assert.deepEqual(await store.holderSignIns.getForUpdate(decoy.id), decoy);
        await store.transaction(async (r) => {
          const locked = await r.holderSignIns.getForUpdate(first.id);
          assert.deepEqual(locked, first);
          await r.holderSignIns.update(first.id, { attempts: 5, status: "locked" }, T0 + 5);
        });
        assert.deepEqual(await store.holderSignIns.getForUpdate(first.id), { ...first, attempts: 5, status: "locked", updatedAt: T0 + 5 });
        await assert.rejects(store.holderSignIns.insert(first), rejectsWith("RECORD_DUPLICATE"));
        await assert.rejects(store.holderSignIns.insert(rec({ holderId: "no-such-holder" })), rejectsWith("HOLDER_NOT_FOUND"));
        await assert.rejects(store.holderSignIns.update("missing", { attempts: 1, status: "open" }, T0), rejectsWith("RECORD_NOT_FOUND"));
      });

      test("a quota starts empty, is kept within its window and starts afresh after it", async () => {
        const subject = uid("subject");
        const q = await store.transaction((r) => r.holderSignIns.lockQuota(subject, T0, DAY));
        assert.deepEqual(q, { subject, windowStart: T0, codesSent: 0, wrongCodes: 0, lastSentAt: null, updatedAt: T0 });
        await store.transaction(async (r) => {
          const cur = await r.holderSignIns.lockQuota(subject, T0 + 10, DAY);
          await r.holderSignIns.saveQuota({ ...cur, codesSent: cur.codesSent + 1, wrongCodes: 3, lastSentAt: T0 + 10, updatedAt: T0 + 10 });
        });
        const kept = await store.transaction((r) => r.holderSignIns.lockQuota(subject, T0 + DAY - 1, DAY));
        assert.deepEqual([kept.windowStart, kept.codesSent, kept.wrongCodes, kept.lastSentAt], [T0, 1, 3, T0 + 10]);
        const fresh = await store.transaction((r) => r.holderSignIns.lockQuota(subject, T0 + DAY, DAY));
        assert.deepEqual([fresh.windowStart, fresh.codesSent, fresh.wrongCodes, fresh.lastSentAt], [T0 + DAY, 0, 0, T0 + 10], "the last send still times the resend");
      });

      test("one quota counts every code sent at once, on every instance", async () => {
        const subject = uid("subject");
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open(), await engine.open());
        try {
          await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % stores.length]!.transaction(async (r) => {
            const q = await r.holderSignIns.lockQuota(subject, T0, DAY);
            await r.holderSignIns.saveQuota({ ...q, codesSent: q.codesSent + 1, updatedAt: T0 });
          })));
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
        assert.equal((await store.transaction((r) => r.holderSignIns.lockQuota(subject, T0, DAY))).codesSent, 12);
      });

      test("purge removes expired codes and quotas of past windows only", async () => {
        const subject = uid("subject");
        const old = { id: uid("S"), subject, holderId: null, channel: "sms" as const, sentTo: "", codeHash: "cd".repeat(32), expiresAt: T0 - 1, attempts: 0, status: "open" as const, createdAt: T0 - 300_001, updatedAt: T0 };
        const live = { ...old, id: uid("S"), expiresAt: T0 + 300_000 };
        await store.holderSignIns.insert(old);
        await store.holderSignIns.insert(live);
        await store.transaction((r) => r.holderSignIns.lockQuota(subject, T0 - DAY - 1, DAY));
        await store.transaction((r) => r.holderSignIns.lockQuota(`${subject}-live`, T0, DAY));
        assert.ok(await store.holderSignIns.purge(T0, T0 - DAY) >= 2);
        assert.equal(await store.holderSignIns.getForUpdate(old.id), undefined);
        assert.deepEqual(await store.holderSignIns.getForUpdate(live.id), live);
        const kept = await store.transaction((r) => r.holderSignIns.lockQuota(`${subject}-live`, T0 + 1, DAY));
        assert.equal(kept.windowStart, T0);
      });
    });

    describe("operator sign-in back-off", () => {
      const pauseAfterThree = (failures: number) => (failures >= 3 ? 60_000 * 2 ** (failures - 3) : 0);

      test("counts failures of one account and client, pauses from the third, and forgets them", async () => {
        const account = uid("acct");
        const r1 = await store.signInBackoffs.recordFailure(account, "192.0.2.1", T0, T0 - DAY, pauseAfterThree);
        assert.deepEqual(r1, { account, client: "192.0.2.1", failures: 1, pausedUntil: null, lastFailureAt: T0 });
        await store.signInBackoffs.recordFailure(account, "192.0.2.1", T0 + 1, T0 - DAY, pauseAfterThree);
        const r3 = await store.signInBackoffs.recordFailure(account, "192.0.2.1", T0 + 2, T0 - DAY, pauseAfterThree);
        assert.deepEqual([r3.failures, r3.pausedUntil], [3, T0 + 2 + 60_000]);
        const r4 = await store.signInBackoffs.recordFailure(account, "192.0.2.1", T0 + 3, T0 - DAY, pauseAfterThree);
        assert.deepEqual([r4.failures, r4.pausedUntil], [4, T0 + 3 + 120_000]);
        assert.equal((await store.signInBackoffs.get(account, "192.0.2.2")), undefined, "another client is not paused");
        const other = await store.signInBackoffs.recordFailure(account, "192.0.2.2", T0 + 4, T0 - DAY, pauseAfterThree);
        assert.equal(other.failures, 1);
        assert.deepEqual(await store.signInBackoffs.get(account, "192.0.2.1"), r4);
        const forgotten = await store.signInBackoffs.recordFailure(account, "192.0.2.1", T0 + DAY, T0 + 10, pauseAfterThree);
        assert.deepEqual([forgotten.failures, forgotten.pausedUntil], [1, null], "failures older than the forget time start over");
        await store.signInBackoffs.clear(account, "192.0.2.1");
        assert.equal(await store.signInBackoffs.get(account, "192.0.2.1"), undefined);
      });

      test("lists paused accounts, clears one account from every client, and purges old pairs", async () => {
        const [a, b] = [uid("acct"), uid("acct")];
        for (const client of ["198.51.100.1", "198.51.100.2"]) {
          for (let i = 0; i < 3; i++) await store.signInBackoffs.recordFailure(a, client, T0 + i, T0 - DAY, pauseAfterThree);
        }
        await store.signInBackoffs.recordFailure(b, "198.51.100.1", T0, T0 - DAY, pauseAfterThree);
        const paused = (await store.signInBackoffs.paused(T0 + 10)).filter((p) => p.account === a || p.account === b);
        assert.deepEqual(paused, [{ account: a, clients: 2, until: T0 + 2 + 60_000 }]);
        assert.equal(await store.signInBackoffs.clearAccount(a), 2);
        assert.equal(await store.signInBackoffs.get(a, "198.51.100.1"), undefined);
        assert.ok(await store.signInBackoffs.purge(T0 + 1) >= 1);
        assert.equal(await store.signInBackoffs.get(b, "198.51.100.1"), undefined);
      });

      test("failures counted on several instances at once all count", async () => {
        const account = uid("acct");
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open(), await engine.open());
        try {
          await Promise.all(Array.from({ length: 9 }, (_, i) =>
            stores[i % stores.length]!.signInBackoffs.recordFailure(account, "203.0.113.9", T0 + i, T0 - DAY, pauseAfterThree)));
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
        assert.equal((await store.signInBackoffs.get(account, "203.0.113.9"))?.failures, 9);
      });
    });

    describe("outbox", () => {
      const message = (over: Partial<OutboxRecord> = {}): OutboxRecord => ({
        id: uid("M"), channel: "sms", transport: "outbox", recipient: "13*****0", purpose: "otp", holderId: h.id,
        redactedText: "验证码 ****** ，5 分钟内有效。Code ******, valid 5 minutes.", status: "pending", attempts: 0, lastError: null,
        nextAttemptAt: null, createdAt: T0, sentAt: null, ...over,
      });

      test("inserts and reads back every field", async () => {
        const m = message({ channel: "email", transport: "smtp", recipient: "z***@example.com", holderId: null, purpose: "reminder" });
        await store.outbox.insert(m);
        assert.deepEqual(await store.outbox.get(m.id), m);
        assert.equal(await store.outbox.get("no-such-message"), undefined);
        await assert.rejects(store.outbox.insert({ ...m, recipient: "other" }), rejectsWith("RECORD_DUPLICATE"));
      });

      test("marks sent or queued, counting the attempt", async () => {
        const sent = message();
        const queued = message();
        for (const m of [sent, queued]) await store.outbox.insert(m);
        await store.outbox.markSent(sent.id, T0 + 5);
        await store.outbox.markSent(queued.id, T0 + 6, "queued");
        assert.deepEqual(await store.outbox.get(sent.id), { ...sent, status: "sent", attempts: 1, sentAt: T0 + 5 });
        assert.deepEqual(await store.outbox.get(queued.id), { ...queued, status: "queued", attempts: 1, sentAt: T0 + 6 });
        await assert.rejects(store.outbox.markSent("missing", T0), rejectsWith("RECORD_NOT_FOUND"));
      });

      test("a failure with a next attempt stays pending; without one it is failed; a later success clears the retry", async () => {
        const m = message();
        await store.outbox.insert(m);
        await store.outbox.markFailed(m.id, "HTTP 503", T0 + 1000);
        assert.deepEqual(await store.outbox.get(m.id), { ...m, status: "pending", attempts: 1, lastError: "HTTP 503", nextAttemptAt: T0 + 1000 });
        await store.outbox.markFailed(m.id, "timeout after 5000 ms", null);
        assert.deepEqual(await store.outbox.get(m.id), { ...m, status: "failed", attempts: 2, lastError: "timeout after 5000 ms", nextAttemptAt: null });
        const retried = message();
        await store.outbox.insert(retried);
        await store.outbox.markFailed(retried.id, "HTTP 503", T0 + 1000);
        await store.outbox.markSent(retried.id, T0 + 1000);
        assert.deepEqual(await store.outbox.get(retried.id),
          { ...retried, status: "sent", attempts: 2, lastError: "HTTP 503", nextAttemptAt: null, sentAt: T0 + 1000 });
        await assert.rejects(store.outbox.markFailed("missing", "x", null), rejectsWith("RECORD_NOT_FOUND"));
      });

      test("lists newest first with limit, offset and a status filter", async () => {
        // Later than every other message of the suite, so these five are the newest.
        const at = T0 + 10_000 * DAY;
        const ms = [0, 1, 2, 3, 4].map((i) => message({ createdAt: at + i }));
        // Two in the same millisecond: the id orders them, so pages never overlap.
        ms.push(message({ createdAt: at + 4 }));
        for (const m of ms) await store.outbox.insert(m);
        await store.outbox.markSent(ms[1]!.id, at + 10);
        await store.outbox.markFailed(ms[3]!.id, "HTTP 400", null);
        const newest = [...ms].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1)).map((m) => m.id);
        assert.deepEqual((await store.outbox.list({ limit: 6 })).map((m) => m.id), newest);
        assert.deepEqual((await store.outbox.list({ limit: 2, offset: 1 })).map((m) => m.id), newest.slice(1, 3));
        const failed = (await store.outbox.list({ status: "failed", limit: 1000 })).map((m) => m.id);
        assert.ok(failed.includes(ms[3]!.id));
        assert.ok(!failed.includes(ms[1]!.id));
        assert.deepEqual((await store.outbox.list({ status: "sent", limit: 1 })).map((m) => m.id), [ms[1]!.id]);
        assert.equal((await store.outbox.list()).length <= 50, true);
      });
    });

    describe("transactions", () => {
      test("commit a revocation and its audit entry together", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const entry = await store.transaction(async (r) => {
          await r.certificates.revoke(c.serial, "keyCompromise", T0 + 1);
          return r.audit.append({ at: T0 + 1, actor: "operator:alice", action: "certificate.revoked", subjectType: "certificate", subjectId: c.serial });
        });
        assert.equal((await store.certificates.get(c.serial))?.status, "revoked");
        assert.deepEqual((await store.audit.list(entry.seq, 1))[0], entry);
      });

      test("roll back every change when the body throws", async () => {
        const c = imported(h.id);
        await store.certificates.insertImported(c);
        const headBefore = (await store.audit.verify());
        await assert.rejects(store.transaction(async (r) => {
          await r.certificates.revoke(c.serial, "keyCompromise", T0 + 1);
          await r.audit.append({ at: T0 + 1, actor: "system", action: "certificate.revoked", subjectType: "certificate", subjectId: c.serial });
          throw new Error("boom");
        }), /boom/);
        assert.equal((await store.certificates.get(c.serial))?.status, "active");
        assert.deepEqual(await store.audit.verify(), headBefore);
      });

      test("roll back earlier statements when a uniqueness violation ends the transaction", async () => {
        const x = holder();
        await assert.rejects(store.transaction(async (r) => {
          await r.holders.insert(x);
          await r.holders.insert(x);
        }), rejectsWith("RECORD_DUPLICATE"));
        assert.equal(await store.holders.get(x.id), undefined);
      });

      test("serialise read-modify-write bodies that await in between", async () => {
        const key = uid("counter");
        await store.crls.nextNumber(key, T0);
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open());
        try {
          await Promise.all(Array.from({ length: 10 }, (_, i) => stores[i % stores.length]!.db.transaction(async (tx) => {
            // FOR UPDATE is what serialises this on PostgreSQL; SQLite has one writer anyway.
            const rows = await tx.query<{ n: number }>("SELECT last_number AS n FROM crl_numbers WHERE issuer_key_id = ? FOR UPDATE", [key]);
            await delay(2);
            await tx.run("UPDATE crl_numbers SET last_number = ? WHERE issuer_key_id = ?", [Number(rows[0]!.n) + 1, key]);
          })));
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
        assert.equal(await store.crls.nextNumber(key, T0), 12);
      });

      test("make a batch of 500 inserts fast", async () => {
        const started = performance.now();
        await store.transaction(async (r) => {
          for (let i = 0; i < 500; i++) await r.certificates.insertIntent(intent(h.id));
        });
        const ms = performance.now() - started;
        assert.ok(ms < 3000, `500 inserts took ${ms.toFixed(0)} ms`);
      });
    });

    describe("audit log", () => {
      async function resetAudit(): Promise<void> {
        await store.db.run("DELETE FROM audit_log");
        await store.db.run("UPDATE audit_head SET seq = 0, hash = ? WHERE id = 1", [GENESIS_HASH]);
      }
      async function appendN(n: number): Promise<void> {
        for (let i = 1; i <= n; i++) {
          await store.audit.append({ at: T0 + i, actor: "system", action: "test.step", subjectType: "test", subjectId: String(i), data: { i, nested: { b: 2, a: [1, "x"] } } });
        }
      }

      test("chains entries by hash and lists them from a seq", async () => {
        await resetAudit();
        assert.deepEqual(await store.audit.verify(), { ok: true, entries: 0, head: GENESIS_HASH });
        const a = await store.audit.append({ at: T0, actor: "cli", action: "ca.initialised", subjectType: "ca", subjectId: "root" });
        const b = await store.audit.append({ at: T0 + 1, actor: "operator:alice", action: "certificate.revoked", subjectType: "certificate", subjectId: "0a", data: { reason: "keyCompromise", 中文: "是" } });
        assert.deepEqual([a.seq, a.prevHash, a.data], [1, GENESIS_HASH, {}]);
        assert.deepEqual([b.seq, b.prevHash], [2, a.hash]);
        assert.equal(b.hash, auditEntryHash(2, a.hash, b));
        // The documented formula, spelled out: anyone with an export can recompute it.
        const body = canonicalJson({ at: b.at, actor: b.actor, action: b.action, subjectType: b.subjectType, subjectId: b.subjectId, data: b.data });
        assert.equal(b.hash, createHash("sha256").update(`2\n${a.hash}\n${body}`, "utf8").digest("hex"));
        const odd = { at: 1.5e12, actor: "holder:\"引号\"\n", action: "a\u2028b", subjectType: "t\\", subjectId: "\ud83d\ude00", data: { z: [1, { b: null, a: true }], "": "x" } };
        assert.equal(auditEntryHash(7, GENESIS_HASH, odd), createHash("sha256").update(`7\n${GENESIS_HASH}\n${canonicalJson(odd)}`, "utf8").digest("hex"));
        assert.match(b.hash, /^[0-9a-f]{64}$/);
        assert.deepEqual(await store.audit.list(), [a, b]);
        assert.deepEqual(await store.audit.list(2), [b]);
        assert.deepEqual(await store.audit.list(1, 1), [a]);
        assert.deepEqual(await store.audit.verify(), { ok: true, entries: 2, head: b.hash });
      });

      test("appendMany makes the same chain as appending one by one, and nothing for an empty list", async () => {
        await resetAudit();
        const inputs = [0, 1, 2].map((i) => ({ at: T0 + i, actor: "system", action: "test.many", subjectType: "test", subjectId: String(i), data: { i } }));
        const many = await store.transaction((r) => r.audit.appendMany(inputs));
        assert.deepEqual(many.map((e) => e.seq), [1, 2, 3]);
        assert.equal(many[1]!.prevHash, many[0]!.hash);
        await resetAudit();
        const single = [];
        for (const e of inputs) single.push(await store.audit.append(e));
        assert.deepEqual(single.map((e) => e.hash), many.map((e) => e.hash));
        assert.deepEqual(await store.audit.appendMany([]), []);
        assert.deepEqual(await store.audit.verify(), { ok: true, entries: 3, head: single[2]!.hash });
      });

      test("concurrent appends form one chain", async () => {
        await resetAudit();
        const stores = [store];
        if (engine.sharedByInstances) stores.push(await engine.open(), await engine.open());
        try {
          const entries = await Promise.all(Array.from({ length: 30 }, (_, i) =>
            stores[i % stores.length]!.audit.append({ at: T0 + i, actor: "system", action: "test.concurrent", subjectType: "test", subjectId: String(i) })));
          assert.deepEqual(entries.map((e) => e.seq).sort((x, y) => x - y), Array.from({ length: 30 }, (_, i) => i + 1));
          const v = await store.audit.verify();
          assert.equal(v.ok, true, JSON.stringify(v));
          assert.equal(v.entries, 30);
        } finally {
          for (const s of stores.slice(1)) await s.close();
        }
      });

      test("verify walks a log longer than one page", async () => {
        await resetAudit();
        await store.transaction(async (r) => {
          for (let i = 0; i < 1234; i++) await r.audit.append({ at: T0 + i, actor: "system", action: "bulk", subjectType: "test", subjectId: String(i) });
        });
        assert.deepEqual((await store.audit.verify()).entries, 1234);
      });

      // Each case tampers with a log of entries 1..6 through raw SQL.
      const forge = (seq: number, prevHash: string) => {
        const e = { at: T0 + 99, actor: "attacker", action: "test.forged", subjectType: "test", subjectId: "x", data: {} };
        return [seq, e.at, e.actor, e.action, e.subjectType, e.subjectId, "{}", prevHash, auditEntryHash(seq, prevHash, e)];
      };
      const insertSql = "INSERT INTO audit_log (seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
      const hashOf = async (seq: number) => (await store.db.query<{ hash: string }>("SELECT hash FROM audit_log WHERE seq = ?", [seq]))[0]!.hash;
      const shift = async (from: number, by: number) => {
        // Two steps so that no primary key collides midway on either engine.
        await store.db.run("UPDATE audit_log SET seq = -seq WHERE seq >= ?", [from]);
        await store.db.run("UPDATE audit_log SET seq = -seq + ? WHERE seq < 0", [by]);
      };
      const tamperCases: { name: string; tamper: () => Promise<void>; seq: number; reason: string }[] = [
        { name: "an entry's data changed", seq: 3, reason: "changed",
          tamper: async () => { await store.db.run("UPDATE audit_log SET data = ? WHERE seq = 3", ['{"i":3,"nested":{"a":[1,"x"],"b":3}}']); } },
        { name: "an entry's actor changed", seq: 5, reason: "changed",
          tamper: async () => { await store.db.run("UPDATE audit_log SET actor = 'operator:mallory' WHERE seq = 5"); } },
        { name: "an entry's data no longer JSON", seq: 2, reason: "changed",
          tamper: async () => { await store.db.run("UPDATE audit_log SET data = 'not json' WHERE seq = 2"); } },
        { name: "an entry changed and rehashed", seq: 3, reason: "changed",
          tamper: async () => {
            const e = { at: T0 + 3, actor: "system", action: "test.step", subjectType: "test", subjectId: "3", data: { i: 333 } };
            await store.db.run("UPDATE audit_log SET data = ?, hash = ? WHERE seq = 3", ['{"i":333}', auditEntryHash(3, await hashOf(2), e)]);
          } },
        { name: "an entry in the middle removed", seq: 3, reason: "removed",
          tamper: async () => { await store.db.run("DELETE FROM audit_log WHERE seq = 3"); } },
        { name: "the first entry removed", seq: 1, reason: "removed",
          tamper: async () => { await store.db.run("DELETE FROM audit_log WHERE seq = 1"); } },
        { name: "the last entries removed", seq: 5, reason: "removed",
          tamper: async () => { await store.db.run("DELETE FROM audit_log WHERE seq >= 5"); } },
        { name: "an entry removed and the rest renumbered", seq: 3, reason: "removed",
          tamper: async () => { await store.db.run("DELETE FROM audit_log WHERE seq = 3"); await shift(4, -1); } },
        { name: "two entries swapped", seq: 3, reason: "reordered",
          tamper: async () => {
            await store.db.run("UPDATE audit_log SET seq = -3 WHERE seq = 3");
            await store.db.run("UPDATE audit_log SET seq = 3 WHERE seq = 4");
            await store.db.run("UPDATE audit_log SET seq = 4 WHERE seq = -3");
          } },
        { name: "a forged entry spliced in", seq: 3, reason: "inserted",
          tamper: async () => { const prev = await hashOf(2); await shift(3, 1); await store.db.run(insertSql, forge(3, prev)); } },
        { name: "a forged entry appended after the head", seq: 7, reason: "inserted",
          tamper: async () => { await store.db.run(insertSql, forge(7, await hashOf(6))); } },
        { name: "an unchained entry appended after the head", seq: 7, reason: "inserted",
          tamper: async () => { await store.db.run(insertSql, forge(7, "ab".repeat(32))); } },
      ];
      for (const c of tamperCases) {
        test(`detects ${c.name}`, async () => {
          await resetAudit();
          await appendN(6);
          assert.equal((await store.audit.verify()).ok, true);
          await c.tamper();
          const v = await store.audit.verify();
          assert.deepEqual(v.ok ? v : { ok: v.ok, firstBadSeq: v.firstBadSeq, reason: v.reason }, { ok: false, firstBadSeq: c.seq, reason: c.reason });
          assert.equal(v.entries, c.seq - 1);
        });
      }

      test("appends after a reset start again from the genesis hash", async () => {
        await resetAudit();
        const e = await store.audit.append({ at: T0, actor: "system", action: "x", subjectType: "t", subjectId: "1" });
        assert.deepEqual([e.seq, e.prevHash], [1, GENESIS_HASH]);
      });
    });

    describe("schema", () => {
      test("records the applied version, and reopening applies nothing twice", async () => {
        const rows = await store.db.query<{ version: number }>("SELECT version FROM schema_version ORDER BY version");
        // Every migration this program defines, once each (the bootstrap row is 0).
        assert.deepEqual(rows.map((r) => Number(r.version)), [0, ...migrations.map((m) => m.version)]);
      });
      // Last: it leaves the database unusable for this program.
      test("refuses a database written by a newer version", async () => {
        await store.db.run("INSERT INTO schema_version (version, name, applied_at) VALUES (?, 'from the future', ?)", [LATEST_SCHEMA_VERSION + 1, T0]);
        await store.close();
        await assert.rejects(engine.open(), (e: unknown) => {
          assert.ok(isUkeyError(e, "DATABASE_SCHEMA_NEWER"), String(e));
          assert.deepEqual(e.params, { found: LATEST_SCHEMA_VERSION + 1, supported: LATEST_SCHEMA_VERSION });
          return true;
        });
      });
    });
  });
}
