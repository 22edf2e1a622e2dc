import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fixedClock, isUkeyError } from "@ukey/policy";
import { openEnvelopedKeyBlob, Pkcs11KeyStore, sm2GenerateKeyPair, sm2Spki } from "@ukey/ca";
import { openStore, type Store } from "@ukey/store";
import { pkcs11KmcMasterKey } from "../src/kmc/kmc-master-key.js";
import { escrowAad, LocalKmc } from "../src/kmc/key-management-centre.js";
import { tempDir, type TempDir } from "./support/fixtures.js";
import { createSoftHsmToken, type SoftHsmToken } from "../../ca/test/support/softhsm.js";

// Issue 13: the KMC master key in an HSM instead of a file, on a real SoftHSM2 token: an AES-256 key
// generated on the token (sensitive, never extractable) wraps each escrowed key with CKM_AES_GCM.

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
let t: TempDir;
let hsm: SoftHsmToken;
let keys: Pkcs11KeyStore;
let store: Store;

before(async () => {
  t = tempDir("ukey-kmc-hsm-");
  hsm = createSoftHsmToken("ukey-kmc-test");
  keys = new Pkcs11KeyStore({ module: hsm.module, token: hsm.tokenSerial, pin: hsm.pin, labelPrefix: "ukey-" });
  store = await openStore({ dataDir: t.path("data") });
  await store.holders.insert({ id: "H1", kind: "person", name: "张三", idType: "resident-id", idHash: "0".repeat(64), idMasked: "1101**********1234", phone: null, email: null, organisationId: null, createdAt: 0 });
});
after(async () => {
  keys?.close();
  await store?.close();
  hsm?.cleanup();
  t?.cleanup();
});

test("an AES-256 master key made on the token wraps and unwraps, bound to its additional data; a second one is refused", async () => {
  const master = await pkcs11KmcMasterKey(keys, hsm.tokenSerial, "kmc-master", true);
  assert.match(master.id, /^[0-9a-f]{16}$/);
  await assert.rejects(pkcs11KmcMasterKey(keys, hsm.tokenSerial, "kmc-master", true), code("CA_ALREADY_INITIALISED"));
  const secret = Buffer.from("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "hex");
  const wrapped = await master.wrap(secret, Buffer.from("aad-1"));
  assert.equal(wrapped.includes(secret), false);
  assert.deepEqual(await master.unwrap(wrapped, Buffer.from("aad-1")), secret);
  await assert.rejects(master.unwrap(wrapped, Buffer.from("aad-2")), code("KMC_ESCROW_UNREADABLE"));
  const changed = Buffer.from(wrapped);
  changed[20] = changed[20]! ^ 1;
  await assert.rejects(master.unwrap(changed, Buffer.from("aad-1")), code("KMC_ESCROW_UNREADABLE"));
  await assert.rejects(master.unwrap(wrapped.subarray(0, 20), Buffer.from("aad-1")), code("KMC_ESCROW_UNREADABLE"));
  await assert.rejects(pkcs11KmcMasterKey(keys, hsm.tokenSerial, "no-such-key"), code("HSM_KEY_NOT_FOUND"));
  // The key cannot be read off the token.
  assert.deepEqual(await keys.privateKeyAttributes("kmc-master", "secret"), { sensitive: true, extractable: false, neverExtractable: true });
});

test("the KMC escrows under the HSM master key; the escrow unwraps on the token to the enveloped key", async () => {
  const master = await pkcs11KmcMasterKey(keys, hsm.tokenSerial, "kmc-master");
  const kmc = new LocalKmc({ store, masterKey: master, clock: fixedClock(new Date("2026-12-04T02:00:00Z")) });
  const holder = sm2GenerateKeyPair();
  const issued = await kmc.issueEncryptionKey({ holderId: "H1", holderSigningSpki: sm2Spki(holder.publicKey), actor: "cli" });
  const opened = openEnvelopedKeyBlob(issued.envelope, holder);
  const rec = (await store.kmcEscrows.get(issued.escrowId))!;
  assert.equal(rec.masterKeyId, master.id);
  assert.deepEqual(await master.unwrap(rec.wrappedKey, escrowAad(rec.id, rec.holderId, rec.spki)), opened.privateKey);
  assert.deepEqual(sm2Spki(opened.publicKey), issued.spki);
  assert.equal((await store.audit.verify()).ok, true);
});
