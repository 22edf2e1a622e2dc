import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { defaultProfile, fixedClock, isUkeyError, type ErrorCode } from "@ukey/policy";
import { openStore, sqliteFile, type Store } from "@ukey/store";
import {
  AUTHORIZATION_CODE_ALPHABET, EnrolmentService, luhnCheckDigit, normaliseReferenceNumber, type CreatedEnrolment,
} from "../src/enrolment-service.js";
import { tempDir, type TempDir } from "./support/fixtures.js";

// EnrolmentService on a real embedded database with a fixed clock.
const DAY = 86_400_000;
const T0 = Date.parse("2026-03-01T08:00:00Z");
const clock = fixedClock(new Date(T0));
let t: TempDir;
let store: Store;
let svc: EnrolmentService;
const shown: string[] = [];

const refusedWith = (code: ErrorCode) => (e: unknown) => {
  assert.ok(isUkeyError(e, code), `expected ${code}, got ${String(e)}`);
  return true;
};

before(async () => {
  t = tempDir();
  store = await openStore({ dataDir: t.dir });
  await store.profiles.put(defaultProfile, T0);
  await store.holders.insert({
    id: "H1", kind: "person", name: "张三", idType: "resident-id", idHash: "00".repeat(32), idMasked: "1101**********123X",
    phone: null, email: null, organisationId: null, createdAt: T0,
  });
  svc = new EnrolmentService({ store, clock, codeKey: randomBytes(32) });
});
after(async () => {
  await store?.close();
  t.cleanup();
});

async function create(over: { ttlDays?: number; maxAttempts?: number } = {}): Promise<CreatedEnrolment> {
  clock.set(new Date(T0));
  const c = await svc.create({ holderId: "H1", profileId: defaultProfile.id, actor: "operator:alice", ...over });
  shown.push(c.authorizationCode, c.authorizationCode.replace(/-/g, ""));
  return c;
}

/** A code of the right shape that is not `code`. */
function otherCode(code: string): string {
  const c = code.replace(/-/g, "");
  const last = AUTHORIZATION_CODE_ALPHABET[(AUTHORIZATION_CODE_ALPHABET.indexOf(c[11]!) + 1) % 32]!;
  return c.slice(0, 11) + last;
}

test("creates a 10-digit reference number with a check digit and a 12-character code without 0, O, 1 or I", async () => {
  const c = await create();
  assert.match(c.referenceNumber, /^[1-9][0-9]{9}$/);
  assert.equal(luhnCheckDigit(c.referenceNumber.slice(0, 9)), c.referenceNumber[9]);
  assert.match(c.authorizationCode, /^[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$/);
  assert.deepEqual(
    { status: c.enrolment.status, attempts: c.enrolment.attempts, maxAttempts: c.enrolment.maxAttempts, expiresAt: c.enrolment.expiresAt },
    { status: "open", attempts: 0, maxAttempts: 5, expiresAt: T0 + 14 * DAY });
  assert.equal("codeHash" in c.enrolment, false);
  const stored = await store.enrolments.get(c.enrolment.id);
  assert.match(stored!.codeHash, /^hmac-sha256\$[0-9a-f]{64}$/);
});

test("reference numbers: a mistyped digit or swapped neighbours fail the check digit", () => {
  assert.equal(normaliseReferenceNumber("4992 7398-72"), "4992739872");
  for (const typo of ["4992739873", "4992793872", "499273987", "49927398720", "49927398a2"]) assert.equal(normaliseReferenceNumber(typo), undefined, typo);
});

test("refuses to create for an unknown holder or profile, or with limits out of range", async () => {
  const cases: { name: string; input: Parameters<EnrolmentService["create"]>[0]; code: ErrorCode }[] = [
    { name: "unknown holder", input: { holderId: "nobody", profileId: defaultProfile.id, actor: "x" }, code: "HOLDER_NOT_FOUND" },
    { name: "unknown profile", input: { holderId: "H1", profileId: "nope", actor: "x" }, code: "PROFILE_NOT_FOUND" },
    { name: "ttl 0 days", input: { holderId: "H1", profileId: defaultProfile.id, actor: "x", ttlDays: 0 }, code: "REQUEST_INVALID" },
    { name: "ttl 91 days", input: { holderId: "H1", profileId: defaultProfile.id, actor: "x", ttlDays: 91 }, code: "REQUEST_INVALID" },
    { name: "11 attempts", input: { holderId: "H1", profileId: defaultProfile.id, actor: "x", maxAttempts: 11 }, code: "REQUEST_INVALID" },
  ];
  for (const c of cases) await assert.rejects(svc.create(c.input), refusedWith(c.code), c.name);
});

test("redeems once, typed in lower case with spaces; the second time says already used", async () => {
  const c = await create();
  const typed = c.authorizationCode.toLowerCase().replace(/-/g, " ");
  const e = await svc.redeem(c.referenceNumber, typed, "holder:H1");
  assert.equal(e.status, "used");
  assert.equal((await store.enrolments.get(c.enrolment.id))!.status, "used");
  await assert.rejects(svc.redeem(c.referenceNumber, c.authorizationCode, "holder:H1"), refusedWith("CODE_ALREADY_USED"));
});

test("wrong codes count; the limit locks it and then even the right code is refused", async () => {
  const c = await create({ maxAttempts: 3 });
  const wrong = otherCode(c.authorizationCode);
  await assert.rejects(svc.redeem(c.referenceNumber, wrong, "holder:H1"), refusedWith("DOWNLOAD_CODE_INVALID"));
  await assert.rejects(svc.redeem(c.referenceNumber, wrong, "holder:H1"), refusedWith("DOWNLOAD_CODE_INVALID"));
  await assert.rejects(svc.redeem(c.referenceNumber, wrong, "holder:H1"), refusedWith("CODE_ATTEMPTS_EXCEEDED"));
  const stored = await store.enrolments.get(c.enrolment.id);
  assert.deepEqual([stored!.attempts, stored!.status], [3, "locked"]);
  await assert.rejects(svc.redeem(c.referenceNumber, c.authorizationCode, "holder:H1"), refusedWith("CODE_ATTEMPTS_EXCEEDED"));
});

test("expires after its days: the right code is then refused as expired, a wrong one as wrong and not counted", async () => {
  const c = await create({ ttlDays: 2 });
  clock.set(new Date(T0 + 2 * DAY - 1));
  await assert.doesNotReject(svc.verify(c.referenceNumber, c.authorizationCode, "holder:H1"));
  clock.set(new Date(T0 + 2 * DAY));
  await assert.rejects(svc.verify(c.referenceNumber, otherCode(c.authorizationCode), "holder:H1"), refusedWith("CODE_INVALID"));
  assert.equal((await store.enrolments.get(c.enrolment.id))!.attempts, 0);
  await assert.rejects(svc.redeem(c.referenceNumber, c.authorizationCode, "holder:H1"), refusedWith("CODE_EXPIRED"));
  assert.equal((await store.enrolments.get(c.enrolment.id))!.status, "expired");
  await assert.rejects(svc.redeem(c.referenceNumber, c.authorizationCode, "holder:H1"), refusedWith("CODE_EXPIRED"));
});

test("a revoked enrolment refuses its code; revoking twice is refused", async () => {
  const c = await create();
  assert.equal((await svc.revoke(c.enrolment.id, "operator:alice")).status, "revoked");
  await assert.rejects(svc.redeem(c.referenceNumber, c.authorizationCode, "holder:H1"), refusedWith("CODE_REVOKED"));
  await assert.rejects(svc.revoke(c.enrolment.id, "operator:alice"), refusedWith("ENROLMENT_NOT_OPEN"));
  await assert.rejects(svc.revoke("enr-missing", "operator:alice"), refusedWith("ENROLMENT_NOT_FOUND"));
});

test("an unknown or mistyped reference number is a wrong code", async () => {
  const c = await create();
  const unknown = "123456789" + luhnCheckDigit("123456789");
  await assert.rejects(svc.redeem(unknown, c.authorizationCode, "holder:H1"), refusedWith("CODE_INVALID"));
  const mistyped = c.referenceNumber.slice(0, 9) + String((Number(c.referenceNumber[9]) + 1) % 10);
  await assert.rejects(svc.redeem(mistyped, c.authorizationCode, "holder:H1"), refusedWith("CODE_INVALID"));
  assert.equal((await store.enrolments.get(c.enrolment.id))!.status, "open");
});

test("redeemIn commits with the caller's transaction: rolled back it stays open, committed it is used", async () => {
  const c = await create();
  const v = await svc.verify(c.referenceNumber, c.authorizationCode, "holder:H1");
  await assert.rejects(store.transaction(async (r) => {
    await svc.redeemIn(r, v, "holder:H1", { serial: "01" });
    throw new Error("issuance failed");
  }), /issuance failed/);
  assert.equal((await store.enrolments.get(c.enrolment.id))!.status, "open");
  await store.transaction((r) => svc.redeemIn(r, v, "holder:H1", { serial: "02" }));
  assert.equal((await store.enrolments.get(c.enrolment.id))!.status, "used");
});

test("of two requests verified at once, one redeems and the other is told the code is used", async () => {
  const c = await create();
  const [a, b] = await Promise.all([svc.verify(c.referenceNumber, c.authorizationCode, "h"), svc.verify(c.referenceNumber, c.authorizationCode, "h")]);
  const results = await Promise.allSettled([a, b].map((v) => store.transaction((r) => svc.redeemIn(r, v, "h"))));
  assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
  const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
  assert.ok(isUkeyError(failed.reason, "CODE_ALREADY_USED"), String(failed.reason));
});

test("lists newest first by holder and status, without hashes", async () => {
  const c = await create();
  const open = await svc.list({ holderId: "H1", status: "open" });
  assert.ok(open.some((e) => e.id === c.enrolment.id));
  assert.ok(open.every((e) => e.status === "open" && !("codeHash" in e)));
  assert.deepEqual(await svc.get(c.enrolment.id), c.enrolment);
});

test("every attempt is audited and no code appears in the audit log or the database file", async () => {
  const c = await create();
  await assert.rejects(svc.redeem(c.referenceNumber, otherCode(c.authorizationCode), "holder:H1"));
  await svc.redeem(c.referenceNumber, c.authorizationCode, "holder:H1");
  const entries = (await store.audit.list(1, 1000)).filter((e) => e.subjectId === c.enrolment.id);
  assert.deepEqual(entries.map((e) => e.action), ["enrolment.created", "enrolment.code-refused", "enrolment.code-verified", "enrolment.redeemed"]);
  assert.ok(await store.audit.verify().then((r) => r.ok));
  const all = JSON.stringify(await store.audit.list(1, 1000));
  const file = readFileSync(sqliteFile(t.dir)).toString("latin1") + readWal();
  for (const code of shown) {
    assert.ok(!all.includes(code), `audit log holds ${code}`);
    assert.ok(!file.includes(code), `database file holds ${code}`);
  }
});

function readWal(): string {
  try {
    return readFileSync(`${sqliteFile(t.dir)}-wal`).toString("latin1");
  } catch {
    return "";
  }
}
