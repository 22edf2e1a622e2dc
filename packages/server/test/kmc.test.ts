import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { fixedClock, isUkeyError } from "@ukey/policy";
import { derToPem, parseEnvelopedKeyBlob, sm2CipherDer, sm2Pkcs8, sm2PointOfSpki } from "@ukey/ca";
import { openStore, type Store } from "@ukey/store";
import { createKmcMasterKeyFile, openKmcMasterKeyFile, type KmcMasterKey } from "../src/kmc/kmc-master-key.js";
import { escrowAad, LocalKmc } from "../src/kmc/key-management-centre.js";
import { openssl, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 13, the key management centre inside the server: encryption key pairs made and escrowed under a
// master key of its own file and passphrase, the escrow audited, the private key handed out only in a
// GM/T 0016 envelope that the OpenSSL CLI opens with the holder's signing key. Real embedded database.

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const passphrase = "kmc master passphrase, not the CA's\n";
let t: TempDir;
let store: Store;
let master: KmcMasterKey;
let kmc: LocalKmc;
const clock = fixedClock(new Date("2026-12-04T02:00:00Z"));

before(async () => {
  t = tempDir("ukey-kmc-");
  store = await openStore({ dataDir: t.path("data") });
  for (const id of ["K1", "K2"]) {
    await store.holders.insert({ id, kind: "person", name: "张三", idType: "resident-id", idHash: "0".repeat(64), idMasked: "1101**********1234", phone: null, email: null, organisationId: null, createdAt: 0 });
  }
  master = await createKmcMasterKeyFile(t.path("kmc-master.json"), passphrase);
  kmc = new LocalKmc({ store, masterKey: master, clock });
});
after(async () => {
  await store?.close();
  t.cleanup();
});

/** An SM2 signing key made by openssl, standing in for the new key on the holder's UKey. */
function holderKey(name: string): { pem: string; spki: Buffer } {
  const pem = t.path(`${name}.pem`);
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", pem]).status, 0);
  const der = t.path(`${name}.spki.der`);
  assert.equal(openssl(["pkey", "-in", pem, "-pubout", "-outform", "DER", "-out", der]).status, 0);
  return { pem, spki: readFileSync(der) };
}

test("the master key file: 0600, its own passphrase, never overwritten; wrong, short, missing and damaged are refused", async () => {
  const path = t.path("kmc-master.json");
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const text = readFileSync(path, "utf8");
  assert.match(text, /"format": "ukey-kmc-master-key\/1"/);
  await assert.rejects(createKmcMasterKeyFile(path, passphrase), code("KMC_ALREADY_INITIALISED"));
  assert.equal(readFileSync(path, "utf8"), text, "nothing changed");
  assert.equal((await openKmcMasterKeyFile(path, passphrase)).id, master.id);
  await assert.rejects(openKmcMasterKeyFile(path, "correct horse battery staple"), code("KMC_PASSPHRASE_WRONG"));
  await assert.rejects(createKmcMasterKeyFile(t.path("short.json"), "short"), code("CONFIG_INVALID"));
  await assert.rejects(openKmcMasterKeyFile(t.path("none.json"), passphrase), code("KMC_NOT_INITIALISED"));
  const damaged = JSON.parse(text);
  damaged.keyId = "0000000000000000";
  writeFileSync(t.path("damaged.json"), JSON.stringify(damaged));
  await assert.rejects(openKmcMasterKeyFile(t.path("damaged.json"), passphrase), code("KMC_MASTER_KEY_UNUSABLE"));
  writeFileSync(t.path("garbage.json"), "{");
  await assert.rejects(openKmcMasterKeyFile(t.path("garbage.json"), passphrase), code("KMC_MASTER_KEY_UNUSABLE"));
});

test("an encryption key: escrowed wrapped and audited, delivered only enveloped, and the envelope opens with OpenSSL to the escrowed key", async () => {
  const holder = holderKey("h1");
  const issued = await kmc.issueEncryptionKey({ holderId: "K1", holderSigningSpki: holder.spki, actor: "holder:K1", orderId: "order-1" });
  assert.equal(issued.algorithm, "sm2");
  assert.equal(issued.envelopeFormat, "gmt0016-enveloped-key-blob");
  assert.ok(!("privateKey" in issued), "no clear private key in the answer");

  // OpenSSL alone opens the envelope with the holder's key.
  const e = parseEnvelopedKeyBlob(issued.envelope);
  assert.deepEqual(e.publicKey, sm2PointOfSpki(issued.spki), "the envelope carries the key the certificate will certify");
  const k = t.path("k.bin");
  assert.equal(openssl(["pkeyutl", "-decrypt", "-inkey", holder.pem, "-in", t.write("c.der", sm2CipherDer(e)), "-out", k]).status, 0);
  const dFile = t.path("d.bin");
  assert.equal(openssl(["enc", "-d", "-sm4-ecb", "-nopad", "-K", readFileSync(k).toString("hex"), "-in", t.write("ep.bin", e.encryptedPrivateKey), "-out", dFile]).status, 0);
  const d = readFileSync(dFile);
  const check = openssl(["pkey", "-in", t.write("rec.pem", derToPem(sm2Pkcs8({ privateKey: d, publicKey: e.publicKey }), "PRIVATE KEY")), "-check", "-noout"]);
  assert.equal(check.status, 0, check.out);
  // Another key cannot open it.
  const other = holderKey("other");
  assert.notEqual(openssl(["pkeyutl", "-decrypt", "-inkey", other.pem, "-in", t.path("c.der"), "-out", t.path("k2.bin")]).status, 0);

  // The escrow: wrapped under the master key (reopened from its file), bound to its record, never the clear key.
  const rec = await store.kmcEscrows.get(issued.escrowId);
  assert.ok(rec);
  assert.equal(rec.holderId, "K1");
  assert.equal(rec.masterKeyId, master.id);
  assert.deepEqual(rec.spki, issued.spki);
  assert.equal(rec.wrappedKey.includes(d), false);
  const reopened = await openKmcMasterKeyFile(t.path("kmc-master.json"), passphrase);
  assert.deepEqual(await reopened.unwrap(rec.wrappedKey, escrowAad(rec.id, rec.holderId, rec.spki)), d, "the escrow holds the delivered key");
  await assert.rejects(reopened.unwrap(rec.wrappedKey, escrowAad(rec.id, "K2", rec.spki)), code("KMC_ESCROW_UNREADABLE"), "moved to another holder it does not open");

  // Audited in the same transaction, without key material.
  const entries = (await store.audit.list(1, 10_000)).filter((x) => x.subjectId === issued.escrowId);
  assert.equal(entries.length, 1);
  assert.equal(entries[0]!.action, "kmc.escrowed");
  assert.equal(entries[0]!.actor, "holder:K1");
  assert.deepEqual(entries[0]!.data, { holderId: "K1", algorithm: "sm2", masterKeyId: master.id, orderId: "order-1" });
  assert.equal(JSON.stringify(entries[0]).includes(d.toString("hex")), false);
  assert.equal((await store.audit.verify()).ok, true);
});

test("a non-SM2 signing key or an unknown holder is refused, and nothing is escrowed or audited", async () => {
  const before = (await store.audit.list(1, 10_000)).length;
  const ecDer = t.path("ec.spki.der");
  assert.equal(openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", t.path("ec.pem")]).status, 0);
  assert.equal(openssl(["pkey", "-in", t.path("ec.pem"), "-pubout", "-outform", "DER", "-out", ecDer]).status, 0);
  await assert.rejects(kmc.issueEncryptionKey({ holderId: "K2", holderSigningSpki: readFileSync(ecDer), actor: "holder:K2" }), code("KEY_ALGORITHM_UNSUPPORTED"));
  await assert.rejects(kmc.issueEncryptionKey({ holderId: "K2", holderSigningSpki: Buffer.from("3000", "hex"), actor: "holder:K2" }), code("KEY_ALGORITHM_UNSUPPORTED"));
  await assert.rejects(kmc.issueEncryptionKey({ holderId: "nobody", holderSigningSpki: holderKey("h3").spki, actor: "cli" }), code("HOLDER_NOT_FOUND"));
  assert.deepEqual(await store.kmcEscrows.listByHolder("K2"), []);
  assert.equal((await store.audit.list(1, 10_000)).length, before);
});

test("ukey-server kmc init: a master key file with its own passphrase, audited; the CA's passphrase and a second init are refused", async (tc) => {
  const { initialisedDataDir, runUkeyServer } = await import("./support/fixtures.js");
  const cliDir = tempDir("ukey-kmc-cli-");
  tc.after(() => cliDir.cleanup());
  const { dataDir, env } = initialisedDataDir(cliDir);
  const same = runUkeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], { ...env, UKEY_KMC_PASSPHRASE_FILE: env.UKEY_CA_PASSPHRASE_FILE! });
  assert.equal(same.status, 1);
  assert.match(same.stdout, /CONFIG_INVALID/);
  const none = runUkeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], env);
  assert.match(none.stdout, /SECRET_FILE_REQUIRED/);
  const kmcPass = cliDir.write("kmc-pass", "a passphrase of the KMC's own\n");
  const r = runUkeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], { ...env, UKEY_KMC_PASSPHRASE_FILE: kmcPass });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.json<{ path: string; masterKeyId: string }>();
  assert.equal(out.path, `${dataDir}/kmc/master-key.json`);
  assert.equal(statSync(`${dataDir}/kmc`).mode & 0o777, 0o700);
  assert.equal((await openKmcMasterKeyFile(out.path, "a passphrase of the KMC's own")).id, out.masterKeyId);
  await assert.rejects(openKmcMasterKeyFile(out.path, readFileSync(env.UKEY_CA_PASSPHRASE_FILE!, "utf8")), code("KMC_PASSPHRASE_WRONG"));
  const text = readFileSync(out.path, "utf8");
  const again = runUkeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], { ...env, UKEY_KMC_PASSPHRASE_FILE: kmcPass });
  assert.match(again.stdout, /KMC_ALREADY_INITIALISED/);
  assert.equal(readFileSync(out.path, "utf8"), text, "the master key is never replaced");
  const audit = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(audit.status, 0, audit.stdout);
});
