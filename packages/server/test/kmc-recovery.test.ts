import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { defaultProfile, fixedClock, isUkeyError, type ErrorCode } from "@ukey/policy";
import { derToPem, parseEnvelopedKeyBlob, sm2CipherDer, sm2Pkcs8, sm2PointOfSpki } from "@ukey/ca";
import { openStore, type Store } from "@ukey/store";
import { EnrolmentService } from "../src/enrolment-service.js";
import { LocalKmc } from "../src/kmc/key-management-centre.js";
import { KEY_RECOVERY_TTL_MS, KeyRecoveryService, type RecoveryActor } from "../src/kmc/key-recovery-service.js";
import { createKmcMasterKeyFile, openKmcMasterKeyFile, type KmcMasterKey } from "../src/kmc/kmc-master-key.js";
import { RecoveredKeyDelivery } from "../src/kmc/recovered-key-delivery.js";
import { openssl, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 13 part 5, key recovery under dual control: one person opens, another approves, and only then does a
// two-code download get the holder's escrowed encryption keys, enveloped for the new signing key. Real embedded
// database, real master key file, envelopes opened by the OpenSSL CLI alone.

const refusedWith = (code: ErrorCode) => (e: unknown) => {
  assert.ok(isUkeyError(e, code), `expected ${code}, got ${String(e)}`);
  return true;
};
const T0 = Date.parse("2026-12-04T02:00:00Z");
const clock = fixedClock(new Date(T0));
const alice: RecoveryActor = { id: "alice", role: "operator", actor: "operator:alice" };
const bob: RecoveryActor = { id: "bob", role: "operator", actor: "operator:bob" };
const audrey: RecoveryActor = { id: "audrey", role: "auditor", actor: "operator:audrey" };
const profileId = defaultProfile.id;

let t: TempDir;
let store: Store;
let master: KmcMasterKey;
let enrolments: EnrolmentService;
let recoveries: KeyRecoveryService;
let delivery: RecoveredKeyDelivery;
/** The escrows of R1 (two keys from two earlier pairs) and R2 (one). */
const escrows: { R1: string[]; R2: string[] } = { R1: [], R2: [] };

/** An SM2 key made by openssl, standing in for the new signing key on the holder's replacement UKey. */
function signingKey(name: string): { pem: string; spki: Buffer } {
  const pem = t.path(`${name}.pem`);
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", pem]).status, 0);
  const der = t.path(`${name}.spki.der`);
  assert.equal(openssl(["pkey", "-in", pem, "-pubout", "-outform", "DER", "-out", der]).status, 0);
  return { pem, spki: readFileSync(der) };
}

before(async () => {
  t = tempDir("ukey-kmc-recovery-");
  store = await openStore({ dataDir: t.path("data") });
  await store.profiles.put(defaultProfile, T0);
  for (const id of ["R1", "R2", "R3"]) {
    await store.holders.insert({ id, kind: "person", name: "李四", idType: "resident-id", idHash: id.repeat(32).slice(0, 64), idMasked: "1101**********1234", phone: null, email: null, organisationId: null, createdAt: T0 });
  }
  master = await createKmcMasterKeyFile(t.path("kmc-master.json"), "kmc master passphrase of its own");
  const kmc = new LocalKmc({ store, masterKey: master, clock });
  const old = signingKey("old");
  for (const [holder, n] of [["R1", 2], ["R2", 1]] as const) {
    for (let i = 0; i < n; i++) {
      clock.advance(1000);
      escrows[holder].push((await kmc.issueEncryptionKey({ holderId: holder, holderSigningSpki: old.spki, actor: `holder:${holder}` })).escrowId);
    }
  }
  clock.set(new Date(T0));
  enrolments = new EnrolmentService({ store, clock, codeKey: randomBytes(32) });
  recoveries = new KeyRecoveryService({ store, clock, enrolments });
  delivery = new RecoveredKeyDelivery({ store, masterKey: await openKmcMasterKeyFile(t.path("kmc-master.json"), "kmc master passphrase of its own"), clock });
});
after(async () => {
  await store?.close();
  t.cleanup();
});

const auditOf = async (subjectId: string) => (await store.audit.list(1, 100_000)).filter((e) => e.subjectId === subjectId);

test("one person alone cannot recover: an auditor cannot open, and the requester cannot approve their own request, nor approve it twice", async () => {
  await assert.rejects(recoveries.open({ holderId: "R1", profileId, reason: "lost key" }, audrey), refusedWith("ROLE_FORBIDDEN"));
  const rec = await recoveries.open({ holderId: "R1", profileId, reason: "钥匙丢失，重新申领" }, alice);
  assert.equal(rec.status, "pending");
  assert.deepEqual(rec.escrowIds, escrows.R1, "all of the holder's escrows when none are chosen");
  assert.equal(rec.expiresAt, T0 + KEY_RECOVERY_TTL_MS);
  const enrolmentsBefore = (await enrolments.list({ holderId: "R1" })).length;
  await assert.rejects(recoveries.approve(rec.id, alice), refusedWith("KMC_RECOVERY_SAME_PERSON"));
  await assert.rejects(recoveries.approve(rec.id, { ...alice, role: "admin" }), refusedWith("KMC_RECOVERY_SAME_PERSON"), "not even as admin");
  assert.equal((await recoveries.get(rec.id)).status, "pending", "nothing changed");
  assert.equal((await enrolments.list({ holderId: "R1" })).length, enrolmentsBefore, "no codes were made");
  const entries = await auditOf(rec.id);
  assert.deepEqual(entries.map((e) => [e.action, e.actor, (e.data as { reason?: string }).reason ?? null]), [
    ["kmc.recovery-requested", "operator:alice", "钥匙丢失，重新申领"],
    ["kmc.recovery-refused", "operator:alice", "same-person"],
    ["kmc.recovery-refused", "operator:alice", "same-person"],
  ]);
  assert.ok((await store.audit.list(1, 100_000)).some((e) => e.action === "kmc.recovery-refused" && e.actor === "operator:audrey" && (e.data as { reason: string }).reason === "role"));
  await recoveries.reject(rec.id, alice, "opened by mistake");
});

test("approved by an auditor: the two codes download every recovered key enveloped for the new signing key, and OpenSSL opens each to its escrowed key", async () => {
  const rec = await recoveries.open({ holderId: "R1", profileId, reason: "UKey re-initialised" }, alice);
  const approved = await recoveries.approve(rec.id, audrey);
  assert.equal(approved.recovery.status, "released");
  assert.equal(approved.recovery.decidedBy, "audrey");
  assert.match(approved.referenceNumber, /^[0-9]{10}$/);
  await assert.rejects(recoveries.approve(rec.id, bob), refusedWith("KMC_RECOVERY_NOT_PENDING"), "decided once");
  await assert.rejects(recoveries.reject(rec.id, bob), refusedWith("KMC_RECOVERY_NOT_PENDING"));

  const holder = signingKey("new");
  const verified = await enrolments.verify(approved.referenceNumber, approved.authorizationCode, "holder:R1");
  const got = await delivery.envelopesFor(verified, holder.spki, "holder:R1");
  assert.ok(got);
  assert.equal(got.recoveryId, rec.id);
  assert.deepEqual(got.keys.map((k) => k.escrowId), escrows.R1);
  for (const [i, k] of got.keys.entries()) {
    const escrow = (await store.kmcEscrows.get(k.escrowId))!;
    assert.deepEqual(k.spki, escrow.spki);
    const e = parseEnvelopedKeyBlob(k.envelope);
    assert.deepEqual(e.publicKey, sm2PointOfSpki(escrow.spki), "the envelope carries the escrowed public key");
    // OpenSSL alone: the new signing key opens the SM4 key, SM4 opens the private key...
    const sm4 = t.path(`sm4-${i}.bin`);
    const open = openssl(["pkeyutl", "-decrypt", "-inkey", holder.pem, "-in", t.write(`c-${i}.der`, sm2CipherDer(e)), "-out", sm4]);
    assert.equal(open.status, 0, open.out);
    const dFile = t.path(`d-${i}.bin`);
    assert.equal(openssl(["enc", "-d", "-sm4-ecb", "-nopad", "-K", readFileSync(sm4).toString("hex"), "-in", t.write(`ep-${i}.bin`, e.encryptedPrivateKey), "-out", dFile]).status, 0);
    const recovered = t.write(`rec-${i}.pem`, derToPem(sm2Pkcs8({ privateKey: readFileSync(dFile), publicKey: e.publicKey }), "PRIVATE KEY"));
    // ...and old data encrypted to the escrow's public key (as its certificate certified it) opens with the recovered key.
    const oldData = Buffer.from(`old encrypted mail ${i}`);
    const pub = t.write(`escrow-${i}.pub.pem`, derToPem(escrow.spki, "PUBLIC KEY"));
    assert.equal(openssl(["pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", t.write(`m-${i}.txt`, oldData), "-out", t.path(`m-${i}.enc`)]).status, 0);
    const back = openssl(["pkeyutl", "-decrypt", "-inkey", recovered, "-in", t.path(`m-${i}.enc`), "-out", t.path(`m-${i}.out`)]);
    assert.equal(back.status, 0, back.out);
    assert.deepEqual(readFileSync(t.path(`m-${i}.out`)), oldData);
  }
  // Another key cannot open them.
  const other = signingKey("other");
  assert.notEqual(openssl(["pkeyutl", "-decrypt", "-inkey", other.pem, "-in", t.path("c-0.der"), "-out", t.path("x.bin")]).status, 0);

  // Bound to that key: the same key gets them again (a lost answer), another key is refused and changes nothing.
  assert.equal((await recoveries.get(rec.id)).status, "delivered");
  const again = await delivery.envelopesFor(verified, holder.spki, "holder:R1");
  assert.deepEqual(again?.keys.map((k) => k.escrowId), escrows.R1);
  await assert.rejects(delivery.envelopesFor(verified, other.spki, "holder:R1"), refusedWith("KMC_RECOVERY_OTHER_KEY"));
  const stored = await recoveries.get(rec.id);
  assert.equal(stored.deliveredSpkiSha256?.length, 64);

  // An ordinary enrolment carries no recovery.
  const plain = await enrolments.create({ holderId: "R1", profileId, actor: "operator:bob" });
  assert.equal(await delivery.envelopesFor(await enrolments.verify(plain.referenceNumber, plain.authorizationCode, "holder:R1"), holder.spki, "holder:R1"), undefined);

  // Every step audited, with no key, envelope or code in the log; the chain holds.
  const entries = await auditOf(rec.id);
  assert.deepEqual(entries.map((e) => [e.action, e.actor]), [
    ["kmc.recovery-requested", "operator:alice"], ["kmc.recovery-approved", "operator:audrey"],
    ["kmc.recovery-refused", "operator:bob"], ["kmc.recovery-refused", "operator:bob"],
    ["kmc.recovery-delivered", "holder:R1"], ["kmc.recovery-delivered", "holder:R1"], ["kmc.recovery-refused", "holder:R1"],
  ]);
  const text = JSON.stringify(await store.audit.list(1, 100_000));
  assert.equal(text.includes(approved.authorizationCode), false);
  for (const i of [0, 1]) assert.equal(text.includes(readFileSync(t.path(`d-${i}.bin`)).toString("hex")), false);
  assert.equal((await store.audit.verify()).ok, true);
});

test("the clear private keys exist only for the call: every unwrapped key is zeroed before envelopesFor returns", async () => {
  const unwrapped: Buffer[] = [];
  const spy: KmcMasterKey = {
    id: master.id,
    wrap: (p, aad) => master.wrap(p, aad),
    unwrap: async (w, aad) => {
      const k = await master.unwrap(w, aad);
      unwrapped.push(k);
      return k;
    },
  };
  const watched = new RecoveredKeyDelivery({ store, masterKey: spy, clock });
  const rec = await recoveries.open({ holderId: "R1", profileId, reason: "zeroing" }, bob);
  const approved = await recoveries.approve(rec.id, audrey);
  const got = await watched.envelopesFor(await enrolments.verify(approved.referenceNumber, approved.authorizationCode, "holder:R1"), signingKey("zero").spki, "holder:R1");
  assert.equal(got?.keys.length, 2);
  assert.equal(unwrapped.length, 2);
  for (const k of unwrapped) assert.ok(k.length === 32 && k.every((x) => x === 0), "zeroed");
});

test("a signing key that is not SM2 (ECDSA, or RSA for SM2 escrows), or the wrong master key, gets nothing and leaves the recovery released", async () => {
  const rec = await recoveries.open({ holderId: "R2", profileId, reason: "lost" }, bob);
  const approved = await recoveries.approve(rec.id, alice);
  const verified = await enrolments.verify(approved.referenceNumber, approved.authorizationCode, "holder:R2");
  assert.equal(openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", t.path("p256.pem")]).status, 0);
  assert.equal(openssl(["pkey", "-in", t.path("p256.pem"), "-pubout", "-outform", "DER", "-out", t.path("p256.der")]).status, 0);
  await assert.rejects(delivery.envelopesFor(verified, readFileSync(t.path("p256.der")), "holder:R2"), refusedWith("KEY_ALGORITHM_UNSUPPORTED"));
  assert.equal((await recoveries.get(rec.id)).status, "released");
  // An RSA signing key can open a CMS envelope, but these escrows are SM2 keys: refused, nothing recorded.
  assert.equal(openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", t.path("rsa.pem")]).status, 0);
  assert.equal(openssl(["pkey", "-in", t.path("rsa.pem"), "-pubout", "-outform", "DER", "-out", t.path("rsa.der")]).status, 0);
  await assert.rejects(delivery.envelopesFor(verified, readFileSync(t.path("rsa.der")), "holder:R2"), refusedWith("KEY_ALGORITHM_UNSUPPORTED"));
  assert.equal((await recoveries.get(rec.id)).status, "released");
  // Another master key (a server started with the wrong file) opens nothing and records no delivery.
  const wrong = new RecoveredKeyDelivery({ store, masterKey: await createKmcMasterKeyFile(t.path("other-master.json"), "another master passphrase"), clock });
  await assert.rejects(wrong.envelopesFor(verified, signingKey("r2").spki, "holder:R2"), refusedWith("KMC_ESCROW_UNREADABLE"));
  assert.equal((await recoveries.get(rec.id)).status, "released");
  assert.equal((await auditOf(rec.id)).some((e) => e.action === "kmc.recovery-delivered"), false);
});

test("two second persons approving at once: one wins, the other is refused and its codes are withdrawn before anyone saw them", async () => {
  const rec = await recoveries.open({ holderId: "R2", profileId, reason: "race" }, alice);
  const before = new Set((await enrolments.list({ holderId: "R2" })).map((e) => e.id));
  const results = await Promise.allSettled([recoveries.approve(rec.id, bob), recoveries.approve(rec.id, audrey)]);
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  assert.ok(isUkeyError(lost[0]!.reason, "KMC_RECOVERY_NOT_PENDING"), String(lost[0]!.reason));
  const released = await recoveries.get(rec.id);
  assert.equal(released.status, "released");
  const made = (await enrolments.list({ holderId: "R2" })).filter((e) => !before.has(e.id));
  // The winner's codes are open and tied to the recovery; any the loser made are withdrawn.
  assert.deepEqual(made.filter((e) => e.status === "open").map((e) => e.id), [released.enrolmentId]);
  assert.ok(made.every((e) => e.id === released.enrolmentId || e.status === "revoked"));
});

test("chosen escrows only; another holder's escrow, a holder with none, an empty reason, an expired or rejected request are refused", async () => {
  const one = await recoveries.open({ holderId: "R1", profileId, escrowIds: [escrows.R1[1]!], reason: "only the second key" }, bob);
  assert.deepEqual(one.escrowIds, [escrows.R1[1]]);
  await assert.rejects(recoveries.open({ holderId: "R1", profileId, escrowIds: [escrows.R2[0]!], reason: "x" }, bob), refusedWith("KMC_RECOVERY_NOTHING_TO_RECOVER"));
  await assert.rejects(recoveries.open({ holderId: "R1", profileId, escrowIds: [], reason: "x" }, bob), refusedWith("KMC_RECOVERY_NOTHING_TO_RECOVER"));
  await assert.rejects(recoveries.open({ holderId: "R3", profileId, reason: "x" }, bob), refusedWith("KMC_RECOVERY_NOTHING_TO_RECOVER"));
  await assert.rejects(recoveries.open({ holderId: "nobody", profileId, reason: "x" }, bob), refusedWith("HOLDER_NOT_FOUND"));
  await assert.rejects(recoveries.open({ holderId: "R1", profileId: "no-such-profile", reason: "x" }, bob), refusedWith("PROFILE_NOT_FOUND"));
  await assert.rejects(recoveries.open({ holderId: "R1", profileId, reason: "   " }, bob), refusedWith("REQUEST_INVALID"));
  await assert.rejects(recoveries.approve("rec-none", alice), refusedWith("KMC_RECOVERY_NOT_FOUND"));

  const rejected = await recoveries.reject(one.id, audrey, "holder did not confirm");
  assert.equal(rejected.status, "rejected");
  await assert.rejects(recoveries.approve(one.id, alice), refusedWith("KMC_RECOVERY_NOT_PENDING"));

  const late = await recoveries.open({ holderId: "R2", profileId, reason: "lost" }, bob);
  clock.advance(KEY_RECOVERY_TTL_MS);
  try {
    assert.equal((await recoveries.get(late.id)).expired, true);
    await assert.rejects(recoveries.approve(late.id, alice), refusedWith("KMC_RECOVERY_EXPIRED"));
    assert.equal((await recoveries.get(late.id)).status, "pending");
  } finally {
    clock.set(new Date(T0));
  }
  assert.deepEqual((await recoveries.list({ status: "pending", holderId: "R2" })).map((r) => r.id), [late.id]);
});
