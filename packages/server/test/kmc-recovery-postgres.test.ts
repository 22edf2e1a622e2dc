import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { defaultProfile, fixedClock, isUkeyError } from "@ukey/policy";
import { openStore, type Store } from "@ukey/store";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { EnrolmentService } from "../src/enrolment-service.js";
import { LocalKmc } from "../src/kmc/key-management-centre.js";
import { KeyRecoveryService, type RecoveryActor } from "../src/kmc/key-recovery-service.js";
import { createKmcMasterKeyFile } from "../src/kmc/kmc-master-key.js";
import { openssl, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 13 part 5 on PostgreSQL, with two server instances (two stores, two pools) deciding the same key
// recovery at once: the row lock and the compare-and-set let exactly one decision through, and the codes the
// losers made are withdrawn. Real PostgreSQL (scripts/ensure-postgres.sh), no skip.

const T0 = Date.parse("2026-12-04T03:00:00Z");
const clock = fixedClock(new Date(T0));
const people: RecoveryActor[] = [
  { id: "bob", role: "operator", actor: "operator:bob" },
  { id: "audrey", role: "auditor", actor: "operator:audrey" },
  { id: "root", role: "admin", actor: "operator:root" },
];
let t: TempDir;
let db: { url: string; drop(): Promise<void> };
let stores: Store[] = [];

before(async () => {
  t = tempDir("ukey-kmc-recovery-pg-");
  db = await createTestDatabase();
  stores = [await openStore({ databaseUrl: db.url }), await openStore({ databaseUrl: db.url })];
  const s = stores[0]!;
  await s.profiles.put(defaultProfile, T0);
  await s.holders.insert({ id: "P1", kind: "person", name: "王五", idType: "resident-id", idHash: "ab".repeat(32), idMasked: "1101**********1234", phone: null, email: null, organisationId: null, createdAt: T0 });
  const kmc = new LocalKmc({ store: s, masterKey: await createKmcMasterKeyFile(t.path("kmc.json"), "the KMC's own passphrase"), clock });
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", t.path("k.pem")]).status, 0);
  assert.equal(openssl(["pkey", "-in", t.path("k.pem"), "-pubout", "-outform", "DER", "-out", t.path("k.der")]).status, 0);
  await kmc.issueEncryptionKey({ holderId: "P1", holderSigningSpki: readFileSync(t.path("k.der")), actor: "holder:P1" });
});
after(async () => {
  for (const s of stores) await s.close();
  await db?.drop();
  t?.cleanup();
});

test("three people on two instances approve one recovery at once: one wins, the others get KMC_RECOVERY_NOT_PENDING, their codes withdrawn", async () => {
  const codeKey = randomBytes(32);
  const services = stores.map((store) => {
    const enrolments = new EnrolmentService({ store, clock, codeKey });
    return { enrolments, recoveries: new KeyRecoveryService({ store, clock, enrolments }) };
  });
  const rec = await services[0]!.recoveries.open({ holderId: "P1", profileId: defaultProfile.id, reason: "lost key" }, { id: "alice", role: "operator", actor: "operator:alice" });
  const results = await Promise.allSettled(people.map((p, i) => services[i % 2]!.recoveries.approve(rec.id, p)));
  assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
  for (const r of results) if (r.status === "rejected") assert.ok(isUkeyError(r.reason, "KMC_RECOVERY_NOT_PENDING"), String(r.reason));
  const released = await services[1]!.recoveries.get(rec.id);
  assert.equal(released.status, "released");
  const made = await services[0]!.enrolments.list({ holderId: "P1" });
  assert.deepEqual(made.filter((e) => e.status === "open").map((e) => e.id), [released.enrolmentId]);
  assert.ok(made.every((e) => e.id === released.enrolmentId || e.status === "revoked"));
  const approvals = (await stores[0]!.audit.list(1, 100_000)).filter((e) => e.subjectId === rec.id && e.action === "kmc.recovery-approved");
  assert.equal(approvals.length, 1);
  assert.equal((await stores[1]!.audit.verify()).ok, true);
});
