import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { defaultKeyVendors, isUkeyError, mergeKeyVendorTables, parseKeyVendorTable } from "@ukey/policy";
import type { SkfBackend } from "../../src/keys/skf-backend.js";
import { login } from "../../src/flows/token-access.js";
import { withRoomOnToken } from "../../src/flows/storage-room.js";
import type { Prompter, ProgressEvent } from "../../src/prompter.js";
import { openSoftkeyBackend, type SoftkeyDir } from "./support/softkey.js";

// Issue 15 parts 5 and 6 on skf-softkey, the project's software stand-in for
// a vendor's SKF library: the key's button told with the key's own timeout
// from the vendor table, keys the table marks unsupported refused before the
// PIN, and a full key made room on (TOKEN_STORAGE_FULL's promise).

const USER_PIN = "12345678";
let keys: SoftkeyDir;
let backend: SkfBackend;

let close: (() => Promise<void>) | undefined;

before(async () => {
  ({ keys, backend, close } = await openSoftkeyBackend());
});
after(async () => {
  await close?.();
});

/** An institution's table as GET /api/v1/key-vendors gives it: the defaults and two entries of its own. */
const institution = mergeKeyVendorTables(defaultKeyVendors, parseKeyVendorTable([
  { id: "softkey-timed", match: { serialPrefix: "SKFTMO" }, vendor: { zh: "测试厂商", en: "Test vendor" }, confirmationTimeoutSeconds: 30 },
  { id: "softkey-gen2", match: { serialPrefix: "SKFOLD" }, vendor: { zh: "测试厂商", en: "Test vendor" }, generation: 2,
    unsupported: { zh: "仅支持三代及以上 UKey 在线更新", en: "Only 3rd-generation and newer keys renew online" } },
]));

function holder(): Prompter & { pins: number; events: ProgressEvent[]; next(step: string): Promise<ProgressEvent> } {
  const events: ProgressEvent[] = [];
  const waiting: { step: string; resolve(e: ProgressEvent): void }[] = [];
  const no = () => Promise.reject(new Error("not asked in this test"));
  const h = {
    pins: 0, events,
    pin: async () => { h.pins++; return USER_PIN; },
    idNumber: no, oneTimeCode: no, stepUp: no, confirm: no,
    progress: (e: ProgressEvent) => {
      events.push(e);
      for (const w of waiting.filter((x) => x.step === e.step)) { waiting.splice(waiting.indexOf(w), 1); w.resolve(e); }
    },
    /** The next event of `step` (or one already seen). */
    next: (step: string) => new Promise<ProgressEvent>((resolve) => {
      const seen = events.find((e) => e.step === step);
      if (seen) resolve(seen); else waiting.push({ step, resolve });
    }),
  };
  return h;
}

test("while the key waits for OK the holder is told the key's own timeout from the institution's table, and OK lets the signature finish", async () => {
  keys.create("timed", { serial: "SKFTMO0001", buttonTimeoutMs: 30_000 });
  try {
    const h = holder();
    const { session } = await login(backend, h, "SKFTMO0001", "renew", { vendors: institution });
    try {
      const key = await session.generateKeyPair("sm2", "k");
      keys.button("timed", "wait");
      const signing = session.sign(key.id, Buffer.from("data"));
      const e = await h.next("press-button");
      assert.equal(e.timeoutSeconds, 30);
      assert.equal(e.zh, "请在 UKey 上按确认键（OK 键）：30 秒内未按，UKey 会取消这次操作");
      assert.equal(e.en, "Press OK on your UKey: if it is not pressed within 30 s, the UKey cancels the operation");
      keys.press("timed", "ok");
      assert.ok((await signing).length > 0);
    } finally {
      await session.close();
    }
  } finally {
    keys.remove("timed");
  }
});

test("a key the table marks unsupported is refused with TOKEN_UNSUPPORTED for a renewal or download, before the PIN; other operations go on", async () => {
  keys.create("old", { serial: "SKFOLD0001" });
  try {
    for (const reason of ["renew", "download"]) {
      const h = holder();
      await assert.rejects(login(backend, h, "SKFOLD0001", reason, { vendors: institution }), (e) => {
        assert.ok(isUkeyError(e, "TOKEN_UNSUPPORTED"), String(e));
        assert.match(e.detail ?? "", /softkey-gen2: Only 3rd-generation and newer keys renew online/);
        return true;
      });
      assert.equal(h.pins, 0, `${reason}: no PIN asked`);
    }
    // The built-in table does not know this key: nothing is refused.
    const { session: plain } = await login(backend, holder(), "SKFOLD0001", "renew");
    await plain.close();
    // Reading or cleaning up the old key is still allowed.
    const { session } = await login(backend, holder(), "SKFOLD0001", "clean-up", { vendors: institution });
    await session.close();
  } finally {
    keys.remove("old");
  }
});

test("a full key (no container left) makes room by removing invalid objects and tries once more; with nothing invalid it stays TOKEN_STORAGE_FULL and nothing goes", async () => {
  keys.create("full", { serial: "SKFFULL001", maxContainers: 3 });
  try {
    const h = holder();
    const { session } = await login(backend, h, "SKFFULL001", "renew");
    try {
      // Three keys without certificates fill the key; one of them is the one the step writes for (kept).
      const kept = await session.generateKeyPair("sm2", "a");
      const orphans = [await session.generateKeyPair("sm2", "b"), await session.generateKeyPair("sm2", "c")];
      await assert.rejects(session.generateKeyPair("sm2", "d"), (e) => isUkeyError(e, "TOKEN_STORAGE_FULL"));

      // Everything named as kept: nothing is invalid, so the step's own error stands and nothing is removed.
      await assert.rejects(withRoomOnToken(session, () => session.generateKeyPair("sm2", "d"), { keep: [kept.id, ...orphans.map((o) => o.id)], prompter: h }),
        (e) => isUkeyError(e, "TOKEN_STORAGE_FULL"));
      assert.equal((await session.listKeys()).length, 3);
      assert.deepEqual(h.events.filter((e) => e.step === "clean-up"), []);

      let removed: string[] = [];
      let tries = 0;
      const made = await withRoomOnToken(session, () => { tries++; return session.generateKeyPair("sm2", "d"); }, {
        keep: [kept.id], prompter: h, onRemoved: (r) => { removed = r.map((o) => `${o.why} ${o.id}`); },
      });
      assert.equal(tries, 2, "tried, made room, tried once more");
      assert.deepEqual(removed.sort(), orphans.map((o) => `orphan-key ${o.id}`).sort());
      assert.deepEqual((await session.listKeys()).map((k) => k.id).sort(), [kept.id, made.id].sort());
      assert.deepEqual(h.events.filter((e) => e.step === "clean-up").map((e) => e.zh), ["UKey 存储空间已满：正在删除 2 个无效的证书或密钥后重试"]);
      // The key's own record agrees: two containers.
      assert.equal(keys.show("full").applications[0]!.containers.length, 2);
    } finally {
      await session.close();
    }
  } finally {
    keys.remove("full");
  }
});
