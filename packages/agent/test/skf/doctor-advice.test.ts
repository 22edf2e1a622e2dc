import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { defaultKeyVendors } from "@ukey/policy";
import { doctorFlow } from "../../src/flows/doctor.js";
import { forgetKeyVendors, institutionKeyVendors } from "../../src/flows/key-vendor-source.js";
import { SkfBackend } from "../../src/keys/skf-backend.js";
import { initialisedDataDir, startUkeyServer, tempDir, type RunningServer, type TempDir } from "../../../server/test/support/fixtures.js";
import { testBundles } from "../../../server/test/support/test-bundle.js";
import { ensureSoftkey, SoftkeyDir } from "./support/softkey.js";

// Issue 15 part 6: when no key is seen, `ukey doctor` (and the portal's
// diagnostics, which run the same flow) gives the vendor table's advice for
// the holder's generation, read from the institution's server (its
// keyVendors applied), and the advice of every known generation when the
// holder's serial is not known. The SKF library is skf-softkey (the
// project's software SKF key) with no key plugged in; the server is real.

let t: TempDir;
let server: RunningServer;
let keys: SoftkeyDir;
let backend: SkfBackend;

before(async () => {
  const build = ensureSoftkey();
  console.log(`# SKF library: ${build.library} — skf-softkey, the project's software stand-in for a vendor's SKF library, not a vendor's`);
  keys = new SoftkeyDir(build);
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  backend = await SkfBackend.open(build.library);
  t = tempDir("ukey-doctor-advice-");
  const { dataDir, env } = initialisedDataDir(t);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8")) as Record<string, unknown>;
  // The operator's own entry for its older keys, with its own advice, and an SM2 PKCS#11 entry written in hex.
  cfg.keyVendors = [
    { id: "bank-gen2", match: { serialPrefix: "PF12" }, vendor: { zh: "天地融", en: "Tendyron" }, generation: 2,
      guidance: [{ zh: "二代 UKey 请到柜台更换。", en: "Replace a 2nd-generation UKey at the counter." }],
      unsupported: { zh: "仅支持三代及以上 UKey 在线更新", en: "Only 3rd-generation and newer keys renew online" } },
    { id: "bank-hsm-sm2", match: { manufacturerId: "TASS" }, vendor: { zh: "江南天安", en: "TASS" },
      pkcs11Sm2: { keyType: "0x80000004", keyPairGen: "0x80008001", sm3WithSm2: "0x80008100" } },
  ];
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  server = await startUkeyServer(dataDir, env);
});
after(async () => {
  await server?.stop();
  await backend?.close();
  keys?.cleanup();
  t?.cleanup();
});

test("the agent reads the institution's table from the server: the operator's entries beside the defaults, hex values as numbers", async () => {
  forgetKeyVendors();
  const table = await institutionKeyVendors({ url: server.url });
  assert.equal(table.length, defaultKeyVendors.length + 2);
  assert.equal(table.find((e) => e.id === "bank-gen2")?.unsupported?.en, "Only 3rd-generation and newer keys renew online");
  assert.deepEqual(table.find((e) => e.id === "bank-hsm-sm2")?.pkcs11Sm2, { keyType: 0x80000004, keyPairGen: 0x80008001, sm3WithSm2: 0x80008100 });
  // A server that cannot be reached: the built-in table, and the caller learns why.
  const why: unknown[] = [];
  assert.equal(await institutionKeyVendors({ url: "http://127.0.0.1:9" }, (e) => why.push(e)), defaultKeyVendors);
  assert.equal(why.length, 1);
});

test("no key seen, the holder's serial known (PF20FA, 4th generation): the advice to switch it off and hold the up key, for that key alone", async () => {
  const vendors = await institutionKeyVendors({ url: server.url });
  const checks = await doctorFlow({ backend, server: { url: "" }, vendors, knownSerial: "PF20FA000123" });
  assert.equal(checks.find((c) => c.id === "token")?.code, "TOKEN_NOT_PRESENT");
  const advice = checks.filter((c) => c.id === "advice");
  assert.equal(advice.length, 1);
  assert.equal(advice[0]!.ok, true);
  assert.match(advice[0]!.zh, /^您的 UKey（四代蓝牙型 UKey，序列号 PF20FA000123）：/);
  assert.match(advice[0]!.zh, /长按电源键关机/);
  assert.match(advice[0]!.zh, /按住 UKey 上的“上”键/);
  assert.match(advice[0]!.en, /it enters Bluetooth mode/);
  assert.doesNotMatch(advice[0]!.zh, /C 键/, "not the 3rd generation's advice");
  // The operator's own generation and advice come from the server's table.
  const gen2 = (await doctorFlow({ backend, server: { url: "" }, vendors, knownSerial: "PF12TA000001" })).filter((c) => c.id === "advice");
  assert.deepEqual(gen2.map((c) => c.zh), ["您的 UKey（天地融，序列号 PF12TA000001）：二代 UKey 请到柜台更换。"]);
});

test("no key seen and no serial known: the advice of each generation, each named by its printed serial prefix", async () => {
  const checks = await doctorFlow({ backend, server: { url: "" } });
  const advice = checks.filter((c) => c.id === "advice").map((c) => c.zh);
  assert.deepEqual(advice.map((a) => /序列号以 (\w+) 开头/.exec(a)?.[1]), ["PF16TA", "PF16FA", "PF20TA", "PF20FA"]);
  assert.match(advice[0]!, /按住 UKey 上的 C 键不松开/);
  assert.match(advice[2]!, /开机后再连接会进入蓝牙模式/);
  // A key present: no advice.
  keys.create("here", { serial: "PF16TA000777" });
  try {
    const present = await doctorFlow({ backend, server: { url: "" } });
    assert.equal(present.find((c) => c.id === "token")?.ok, true);
    assert.deepEqual(present.filter((c) => c.id === "advice"), []);
  } finally {
    keys.remove("here");
  }
});

test("`ukey doctor --token PF20FA000123` on a computer with the SKF library but no key prints that key's advice, from the server's table", () => {
  const ukeyBin = testBundles().agent;
  const r = spawnSync(process.execPath, [ukeyBin, "doctor", "--token", "PF20FA000123", "--server", server.url, "--json"], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", HOME: t.dir, UKEY_AGENT_HOME: t.path("agent-home"), UKEY_SKF_LIBRARY: ensureSoftkey().library, SKF_SOFTKEY_DIR: keys.dir, LANG: "zh_CN.UTF-8" },
  });
  const out = JSON.parse(r.stdout) as { checks: { id: string; ok: boolean; zh: string; code?: string }[] };
  assert.notEqual(r.status, 0, "a failing check fails the command");
  assert.equal(out.checks.find((c) => c.id === "token")?.code, "TOKEN_NOT_PRESENT");
  const advice = out.checks.filter((c) => c.id === "advice");
  assert.equal(advice.length, 1, r.stdout);
  assert.match(advice[0]!.zh, /^您的 UKey（四代蓝牙型 UKey，序列号 PF20FA000123）：.*蓝牙模式/);
  const text = spawnSync(process.execPath, [ukeyBin, "doctor", "--token", "PF12TA000001", "--server", server.url], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", HOME: t.dir, UKEY_AGENT_HOME: t.path("agent-home"), UKEY_SKF_LIBRARY: ensureSoftkey().library, SKF_SOFTKEY_DIR: keys.dir, LANG: "zh_CN.UTF-8" },
  });
  // The operator's entry, read from the server by the CLI itself.
  assert.match(text.stdout + text.stderr, /• advice +您的 UKey（天地融，序列号 PF12TA000001）：二代 UKey 请到柜台更换。/);
});
