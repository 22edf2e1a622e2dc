import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { FaultPoint, RenewResult } from "../../src/flows/flow-types.js";
import { SkfBackend, skfMarks } from "../../src/keys/skf-backend.js";
import { createAgentWorld, type AgentWorld } from "../support/agent-world.js";
import { enablePairs, issuePair, openCounter, opensslSerialOf, opensslVerifySm2 } from "./support/pairs.js";
import { SoftkeyDir, type SoftkeyContents } from "./support/softkey.js";

// Issue 15 parts 4 and 7: an SM2 signing + encryption pair renewed with `ukey renew` on the software SKF key
// (skf-softkey, the test stand-in of docs/skf-softkey.md for a vendor's GM/T 0016 library), against the real
// server with its key management centre. The agent is killed (SIGKILL) at every fault point, the pair's two
// new ones included, and run again: the same order goes on. Afterwards the key holds exactly the new pair
// in one container, plus the old pair's container (its encryption key is kept: clean-up never removes an
// encryption key unasked), and no marks; OpenSSL verifies both new certificates with the SM2 distinguishing ID.
//
// The kills come in two chains on two keys, each run after the first resuming the order the run before left
// and dying at the next point, the last one finishing it: every fault point's state is checked, resumed and
// left behind. `after-csr` leaves the order issued, so a resumed run never passes `after-issue` or `after-csr`
// again: it has a key (and chain) of its own.

let w: AgentWorld;
let keys: SoftkeyDir;
const pin = "123456";
const chains: Record<string, FaultPoint[]> = {
  "after-keygen": ["after-keygen", "after-issue", "after-install", "after-enc-key", "after-enc-cert", "during-cleanup"],
  "after-csr": ["after-csr"],
};
const devices: Record<string, { serial: string; oldSign: string; oldEnc: string; oldContainer: string }> = {};
const deviceName = (case_: string) => `k-${case_}`;
const enrolments: { referenceNumber: string; authorizationCode: string }[] = [];

before(async () => {
  keys = new SoftkeyDir();
  // The library in this process (the counter issuance below) reads its keys where the agent runs will.
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  w = createAgentWorld("ukey-skf-pair-", { caAlgorithm: "sm2" });
  enablePairs(w);
  const backend = await SkfBackend.open(keys.build.library);
  const counter = await openCounter(w);
  try {
    let n = 0;
    for (const c of ["plain", ...Object.keys(chains), "forgot"]) {
      const serial = `SKFPAIR${String(++n).padStart(9, "0")}`;
      keys.create(deviceName(c), { serial, userPin: pin, adminPin: "87654321" });
      devices[c] = { serial, ...await issuePair(w, backend, serial, pin, "H1", counter) };
    }
    // Codes for two downloads of a pair (ukey-server enrol, as the institution's counter does).
    for (let i = 0; i < 2; i++) {
      const r = await counter.run(["enrol", "--data-dir", w.dataDir, "--holder", "H2", "--profile", "gm", "--json"]);
      assert.equal(r.status, 0, r.stderr);
      enrolments.push(r.json());
    }
  } finally {
    await counter.close();
    await backend.close();
  }
  // Two stray signing keys with no certificate on the key whose chain ends in the clean-up: it has two things to remove and is killed halfway.
  keys.genKey(deviceName("after-keygen"), app(deviceName("after-keygen")), "stray-1");
  keys.genKey(deviceName("after-keygen"), app(deviceName("after-keygen")), "stray-2");
  await w.start();
});
after(async () => {
  await w?.cleanup();
  keys?.cleanup();
});

function app(device: string): string {
  return keys.show(device).applications[0]!.name;
}

function ukey(args: string[], opts: { fault?: FaultPoint | undefined; input?: string } = {}) {
  return w.ukey([...args, "--server", w.server!.url], {
    noDefaults: true, ...(opts.input ? { input: opts.input } : {}),
    env: { UKEY_SKF_LIBRARY: keys.build.library, SKF_SOFTKEY_DIR: keys.dir, ...(opts.fault ? { UKEY_AGENT_FAULT: opts.fault } : {}) },
  });
}
function renew(serial: string, fault?: FaultPoint) {
  return ukey(["renew", "--token", serial, "--json", "--yes", "--pin-file", w.pinFile], { fault });
}

type Container = SoftkeyContents["applications"][number]["containers"][number];
function containers(device: string): Container[] {
  return keys.show(device).applications[0]!.containers;
}
/** Exactly the new pair in container ukey-renew.ORDER, the old pair kept whole, nothing else (no marks, no strays). */
function assertFinal(c: string, out: RenewResult): void {
  const d = devices[c]!;
  const all = containers(deviceName(c));
  const names = all.map((x) => x.name).sort();
  assert.deepEqual(names, [d.oldContainer, skfMarks.keyContainer(out.orderId)].sort(), `containers: ${JSON.stringify(names)}`);
  const fresh = all.find((x) => x.name === skfMarks.keyContainer(out.orderId))!;
  assert.equal(fresh.type, "ECC");
  assert.ok(fresh.signPublicKey && fresh.encPublicKey && fresh.signPublicKey !== fresh.encPublicKey, "both keys of the new pair");
  assert.equal(opensslSerialOf(fresh.signCertificate), out.certificate.serialHex.toLowerCase());
  assert.ok(out.encryptionCertificate, "the result names the encryption certificate");
  assert.equal(opensslSerialOf(fresh.encCertificate), out.encryptionCertificate.serialHex.toLowerCase());
  const old = all.find((x) => x.name === d.oldContainer)!;
  assert.ok(old.encPublicKey && old.encCertificate, "the old encryption key and certificate stay");
  assert.equal(opensslSerialOf(old.encCertificate), d.oldEnc.toLowerCase());
  const chain = out.certificate.pem.slice(out.certificate.pem.indexOf("-----END CERTIFICATE-----") + 25);
  opensslVerifySm2(w, fresh.signCertificate, chain);
  opensslVerifySm2(w, fresh.encCertificate, chain);
}

test("an SM2 pair renewed on the software SKF key with ukey renew: both certificates and the enveloped key in one container", async () => {
  const r = renew(devices.plain!.serial);
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<RenewResult>();
  assert.equal(out.resumed, false);
  assertFinal("plain", out);
  assert.equal((await w.certificate(devices.plain!.oldSign)).status, "superseded", "the old signing certificate is superseded");
  assert.match(r.stderr, /encryption key/i);
});

for (const [first, chain] of Object.entries(chains)) {
  test(`SM2 pair on SKF, killed ${chain.join(", then ")}: each next run goes on with the same order and the last finishes it`, async () => {
    const d = devices[first]!;
    const name = deviceName(first);
    let orderId: string | undefined;
    for (const fault of chain) {
      const killed = renew(d.serial, fault);
      assert.equal(killed.signal, "SIGKILL", `the run was to die ${fault}: ${killed.status} ${killed.stderr}`);
      const mid = containers(name);
      const seen = `${fault}: ${JSON.stringify(mid.map((x) => x.name))}`;
      // The holder can still sign in: the old pair is whole until the new one is complete.
      const old = mid.find((x) => x.name === d.oldContainer);
      assert.ok(old?.signCertificate && old.signPublicKey && old.encPublicKey, `the old pair is whole, ${seen}`);
      const mark = mid.find((x) => skfMarks.isMark(x.name));
      assert.ok(mark, `a pending mark on the key, ${seen}`);
      assert.equal(mark.type, "empty");
      const markOrder = mark.name.slice(skfMarks.markPrefix.length);
      orderId ??= markOrder;
      assert.equal(markOrder, orderId, `the resumed run went on with the same order, ${seen}`);
      const fresh = mid.find((x) => x.name === skfMarks.keyContainer(orderId!));
      if (fault === "after-keygen") assert.ok(fresh?.signPublicKey && !fresh.signCertificate, "the new key, no certificate yet");
      if (fault === "after-install") assert.ok(fresh?.signCertificate && !fresh.encPublicKey, "the signing certificate, no encryption key yet");
      if (fault === "after-enc-key") assert.ok(fresh?.encPublicKey && !fresh.encCertificate, "the encryption key, not its certificate");
      if (fault === "after-enc-cert") assert.ok(fresh?.encCertificate, "the whole new pair, the order not yet confirmed");
      if (fault === "during-cleanup") assert.equal(mid.filter((x) => x.name.startsWith("stray-")).length, 1, "one of two strays removed");
    }

    const again = renew(d.serial);
    assert.equal(again.status, 0, again.stderr);
    const out = again.json<RenewResult>();
    assert.equal(out.orderId, orderId, "the same order, not a second one");
    assert.equal(out.resumed, true);
    assertFinal(first, out);
  });
}

test("forgotten PIN: ukey init with the admin PIN erases the SKF key, then two codes download a pair onto it, finishing after a kill", async () => {
  const d = devices.forgot!;
  const name = deviceName("forgot");
  const adminPin = w.t.write("admin-pin", "87654321\n");
  const newPin = w.t.write("new-pin", "246810\n");
  const wrongAdmin = w.t.write("wrong-admin", "00000000\n");
  const bad = ukey(["init", "--token", d.serial, "--so-pin-file", wrongAdmin, "--new-pin-file", newPin], { input: "yes\n" });
  assert.equal(bad.status, 4, bad.stderr);
  assert.match(bad.stderr, /TOKEN_PIN_INCORRECT/);
  assert.equal(containers(name).length, 1, "a wrong admin PIN changes nothing");

  const init = ukey(["init", "--token", d.serial, "--so-pin-file", adminPin, "--new-pin-file", newPin, "--json"], { input: "yes\n" });
  assert.equal(init.status, 0, init.stderr);
  assert.deepEqual(containers(name), [], "erased");
  const oldPin = ukey(["status", "--token", d.serial, "--pin-file", w.pinFile]);
  assert.equal(oldPin.status, 4, "the forgotten PIN no longer opens the key");

  const e = enrolments[0]!;
  const ref = e.referenceNumber.replace(/[\s-]/g, "");
  const download = (fault?: FaultPoint) => ukey(["download", "--token", d.serial, "--ref", e.referenceNumber, "--code", e.authorizationCode, "--pin-file", newPin, "--yes", "--json"], { fault });
  const killed = download("after-enc-key");
  assert.equal(killed.signal, "SIGKILL", `the download was to die after the encryption key: ${killed.status} ${killed.stderr}`);
  const mid = containers(name);
  assert.ok(mid.some((x) => x.name === skfMarks.markContainer(`download-${ref}`)), "the download's mark");
  assert.ok(mid.find((x) => x.name === skfMarks.keyContainer(`download-${ref}`))?.encPublicKey, "the encryption key is in");

  const r = download();
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<{ certificate: { serialHex: string; pem: string }; encryptionCertificate?: { serialHex: string } }>();
  assert.ok(out.encryptionCertificate, "the pair's encryption certificate");
  const all = containers(name);
  assert.deepEqual(all.map((x) => x.name), [skfMarks.keyContainer(`download-${ref}`)], "exactly the new pair, no mark");
  const c = all[0]!;
  assert.equal(opensslSerialOf(c.signCertificate), out.certificate.serialHex.toLowerCase());
  assert.equal(opensslSerialOf(c.encCertificate), out.encryptionCertificate.serialHex.toLowerCase());
  assert.ok(c.signPublicKey && c.encPublicKey);
  const chain = out.certificate.pem.slice(out.certificate.pem.indexOf("-----END CERTIFICATE-----") + 25);
  opensslVerifySm2(w, c.signCertificate, chain);
  opensslVerifySm2(w, c.encCertificate, chain);
});
