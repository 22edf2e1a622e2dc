import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { buildEnvelopedKeyBlob, sm2GenerateKeyPair } from "@ukey/ca";
import { isUkeyError } from "@ukey/policy";
import { objectLabels, type TokenSession } from "../../src/keys/key-store.js";
import type { SkfBackend} from "../../src/keys/skf-backend.js";
import { skfMarks } from "../../src/keys/skf-backend.js";
import { sm2PointOfSpki } from "../../src/keys/sm2.js";
import { openSoftkeyBackend, type SoftkeyDir } from "./support/softkey.js";

// Issue 15 part 4, bad input: the pending marks an SKF key keeps in container names, and an encryption key
// that cannot go where it was sent. Each refusal is a catalogue code, leaves the key as it was, and the next
// run finishes. Against skf-softkey, the project's software stand-in for a vendor's SKF library.

const PIN = "12345678";
const ORDER = "0193a5c2-7d1e-7f00-8a11-2c3d4e5f6a7b";
let keys: SoftkeyDir;
let backend: SkfBackend;

let close: (() => Promise<void>) | undefined;

before(async () => {
  ({ keys, backend, close } = await openSoftkeyBackend());
});
after(async () => {
  await close?.();
});

const code = (c: string) => (e: unknown) => {
  assert.ok(isUkeyError(e), `not a UkeyError: ${String(e)}`);
  assert.equal(e.code, c, `${e.code}: ${e.message}`);
  return true;
};

let n = 0;
/** A new software key; `fn` runs in a session on it. */
async function withKey(opts: Parameters<SoftkeyDir["create"]>[1], fn: (s: TokenSession, name: string, serial: string) => Promise<void>): Promise<void> {
  const name = `bad-${++n}`;
  const serial = `SKFBAD${String(n).padStart(10, "0")}`;
  keys.create(name, { serial, userPin: PIN, ...opts });
  const s = await backend.open(serial, PIN);
  try {
    await fn(s, name, serial);
  } finally {
    await s.close();
  }
}
const names = (name: string) => keys.show(name).applications[0]!.containers.map((c) => c.name).sort();
const container = (name: string, c: string) => keys.show(name).applications[0]!.containers.find((x) => x.name === c);
const pointOf = (spki: Uint8Array) => sm2PointOfSpki(spki)!;

test("a pending key lives in ukey-renew.ORDER beside an empty mark; relabel to current removes the mark, and deleting the key takes it", async () => {
  await withKey({}, async (s, name) => {
    const key = await s.generateKeyPair("sm2", objectLabels.pending(ORDER));
    assert.deepEqual(names(name), [skfMarks.keyContainer(ORDER), skfMarks.markContainer(ORDER)].sort());
    assert.equal(container(name, skfMarks.markContainer(ORDER))!.type, "empty");
    assert.equal(key.label, objectLabels.pending(ORDER));
    assert.deepEqual((await s.listKeys()).map((k) => k.label), [objectLabels.pending(ORDER)], "the mark is no key of its own");
    await s.relabel(key.id, objectLabels.current("0a1b"));
    assert.deepEqual(names(name), [skfMarks.keyContainer(ORDER)]);
    assert.deepEqual((await s.listKeys()).map((k) => k.label), [skfMarks.keyContainer(ORDER)]);
    await s.relabel(key.id, objectLabels.pending(ORDER));
    assert.equal((await s.listKeys())[0]!.label, objectLabels.pending(ORDER), "the mark can be set again");
    await s.deleteObjects([key.id]);
    assert.deepEqual(names(name), []);
  });
});

test("a container of the agent's name that already holds a key is TOKEN_CONTAINER_FOREIGN, and stays as it was", async () => {
  await withKey({}, async (s, name) => {
    const app = keys.show(name).applications[0]!.name;
    const foreign = keys.genKey(name, app, skfMarks.keyContainer(ORDER)).toString("hex");
    await assert.rejects(s.generateKeyPair("sm2", objectLabels.pending(ORDER)), code("TOKEN_CONTAINER_FOREIGN"));
    assert.equal(container(name, skfMarks.keyContainer(ORDER))!.signPublicKey, foreign);
  });
});

test("an envelope for another key is ENVELOPE_MALFORMED and imports nothing; the right one then imports", async () => {
  await withKey({}, async (s, name) => {
    const key = await s.generateKeyPair("sm2", objectLabels.pending(ORDER));
    const someoneElse = sm2GenerateKeyPair();
    await assert.rejects(s.importEnvelopedKey!(key.id, buildEnvelopedKeyBlob(sm2GenerateKeyPair(), someoneElse.publicKey)), code("ENVELOPE_MALFORMED"));
    assert.equal(container(name, skfMarks.keyContainer(ORDER))!.encPublicKey, "", "no encryption key");
    const enc = sm2GenerateKeyPair();
    const blob = buildEnvelopedKeyBlob(enc, pointOf(key.spki));
    assert.ok(pointOf((await s.importEnvelopedKey!(key.id, blob)).spki).equals(enc.publicKey));
    // The same envelope again (a run that stopped after the import): nothing changes, no error.
    assert.ok(pointOf((await s.importEnvelopedKey!(key.id, blob)).spki).equals(enc.publicKey));
  });
});

test("a container already holding another encryption key is TOKEN_CONTAINER_FOREIGN: that key is never overwritten", async () => {
  await withKey({}, async (s, name) => {
    const key = await s.generateKeyPair("sm2", objectLabels.pending(ORDER));
    const first = sm2GenerateKeyPair();
    await s.importEnvelopedKey!(key.id, buildEnvelopedKeyBlob(first, pointOf(key.spki)));
    await assert.rejects(s.importEnvelopedKey!(key.id, buildEnvelopedKeyBlob(sm2GenerateKeyPair(), pointOf(key.spki))), code("TOKEN_CONTAINER_FOREIGN"));
    assert.equal(container(name, skfMarks.keyContainer(ORDER))!.encPublicKey, first.publicKey.toString("hex"));
  });
});

test("a full key is TOKEN_STORAGE_FULL at the import; once room is made the same envelope imports", async () => {
  // Room for the application, the new key's container and its mark, a stray key, and 50 octets: not the 97 of an encryption key.
  keys.create("probe", { serial: "SKFPROBE00000001", userPin: PIN });
  const base = keys.show("probe").usedSpace;
  keys.remove("probe");
  await withKey({ storage: base + (64 + 32 + 65) + 64 + (64 + 32 + 65) + 50 }, async (s, name) => {
    const key = await s.generateKeyPair("sm2", objectLabels.pending(ORDER));
    const stray = await s.generateKeyPair("sm2", "stray");
    const enc = sm2GenerateKeyPair();
    const blob = buildEnvelopedKeyBlob(enc, pointOf(key.spki));
    await assert.rejects(s.importEnvelopedKey!(key.id, blob), code("TOKEN_STORAGE_FULL"));
    assert.equal(container(name, skfMarks.keyContainer(ORDER))!.encPublicKey, "", "nothing half imported");
    await s.deleteObjects([stray.id]);
    assert.ok(pointOf((await s.importEnvelopedKey!(key.id, blob)).spki).equals(enc.publicKey));
  });
});

test("the key removed while the import waits on its button: TOKEN_REMOVED_DURING_OPERATION, and the next session imports", async () => {
  const name = `bad-${++n}`;
  const serial = `SKFBAD${String(n).padStart(10, "0")}`;
  keys.create(name, { serial, userPin: PIN, buttonTimeoutMs: 20_000 });
  let s = await backend.open(serial, PIN);
  const key = await s.generateKeyPair("sm2", objectLabels.pending(ORDER));
  const enc = sm2GenerateKeyPair();
  const blob = buildEnvelopedKeyBlob(enc, pointOf(key.spki));
  keys.button(name, "wait");
  const waiting = new Promise<void>((resolve) => { s.onDeviceConfirmation = resolve; });
  const importing = s.importEnvelopedKey!(key.id, blob);
  await waiting;
  keys.unplug(name);
  await assert.rejects(importing, (e: unknown) => isUkeyError(e) && ["TOKEN_REMOVED_DURING_OPERATION", "TOKEN_NOT_PRESENT"].includes(e.code) || assert.fail(String(e)));
  await s.close();
  keys.plug(name);
  keys.button(name, "auto");
  assert.equal(container(name, skfMarks.keyContainer(ORDER))!.encPublicKey, "", "nothing half imported");
  s = await backend.open(serial, PIN);
  try {
    assert.ok(pointOf((await s.importEnvelopedKey!(key.id, blob)).spki).equals(enc.publicKey));
  } finally {
    await s.close();
  }
});
