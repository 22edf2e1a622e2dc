import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { FaultPoint } from "../../src/flows/flow-types.js";
import { SkfBackend, skfMarks } from "../../src/keys/skf-backend.js";
import { createAgentWorld, type AgentWorld } from "../support/agent-world.js";
import { addRecoveryOperators, enablePairs, issuePair, openCounter, opensslSerialOf, opensslVerifySm2 } from "./support/pairs.js";
import { SoftkeyDir, type SoftkeyContents } from "./support/softkey.js";

// Issue 15 part 4, "Recovered old encryption keys are installed beside the new pair": a holder's old SM2 pair
// (issued at the counter onto one software SKF key) is recovered under dual control (an operator asks, an
// auditor approves, through the real admin API), and its two codes download a new pair onto another, empty
// key with `ukey download`. The agent makes one extra container per recovered key with its own SM2 key, which
// signs the CSR's digest; the server envelopes each recovered key for its container's key, and the agent
// imports it there (SKF_ImportECCKeyPair, which only that container's key opens) with its old certificate.
// The agent is killed after the new pair's encryption certificate and run again: the download finishes.

let w: AgentWorld;
let keys: SoftkeyDir;
const pin = "123456";
const serials = { old: "SKFRECOV00000001", fresh: "SKFRECOV00000002" };
let old: { oldSign: string; oldEnc: string; oldContainer: string };
let admin: Awaited<ReturnType<typeof addRecoveryOperators>>;

before(async () => {
  keys = new SoftkeyDir();
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  w = createAgentWorld("ukey-skf-recovered-", { caAlgorithm: "sm2" });
  enablePairs(w);
  keys.create("old", { serial: serials.old, userPin: pin, adminPin: "87654321" });
  keys.create("fresh", { serial: serials.fresh, userPin: pin, adminPin: "87654321" });
  const backend = await SkfBackend.open(keys.build.library);
  const counter = await openCounter(w);
  try {
    old = await issuePair(w, backend, serials.old, pin, "H1", counter);
    admin = await addRecoveryOperators(w, counter);
  } finally {
    await counter.close();
    await backend.close();
  }
  await w.start();
});
after(async () => {
  await w?.cleanup();
  keys?.cleanup();
});


function ukey(args: string[], fault?: FaultPoint) {
  return w.ukey([...args, "--server", w.server!.url], {
    noDefaults: true, env: { UKEY_SKF_LIBRARY: keys.build.library, SKF_SOFTKEY_DIR: keys.dir, ...(fault ? { UKEY_AGENT_FAULT: fault } : {}) },
  });
}
type Container = SoftkeyContents["applications"][number]["containers"][number];
const containers = (device: string): Container[] => keys.show(device).applications[0]!.containers;

/** The x and y of an SM2 certificate's public key, hex, as OpenSSL reads them. */
function pointOf(derHex: string): string {
  const pem = spawnSync("openssl", ["x509", "-inform", "DER", "-noout", "-pubkey"], { input: Buffer.from(derHex, "hex"), encoding: "utf8" }).stdout;
  const der = spawnSync("openssl", ["pkey", "-pubin", "-outform", "DER"], { input: pem });
  assert.equal(der.status, 0);
  return der.stdout.subarray(der.stdout.length - 64).toString("hex");
}

test("a recovery's two codes download a new pair onto an empty SKF key with the recovered old encryption key in a container of its own, finishing after a kill", async () => {
  const oldEncCert = containers("old").find((c) => c.name === old.oldContainer)!.encCertificate;
  assert.equal(opensslSerialOf(oldEncCert), old.oldEnc.toLowerCase());

  const opened = await admin("olga", "/kmc-recoveries", { holderId: "H1", profileId: "gm", reason: "旧 UKey 丢失，需读取旧加密数据" });
  assert.equal(opened.status, 201, await opened.clone().text());
  const rec = await opened.json() as { id: string; escrowIds: string[] };
  assert.equal(rec.escrowIds.length, 1);
  const approved = await admin("audrey", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(approved.status, 200, await approved.clone().text());
  const { referenceNumber, authorizationCode } = await approved.json() as { referenceNumber: string; authorizationCode: string };
  const ref = referenceNumber.replace(/[\s-]/g, "");

  const download = (fault?: FaultPoint) => ukey(["download", "--token", serials.fresh, "--ref", referenceNumber, "--code", authorizationCode, "--pin-file", w.pinFile, "--yes", "--json"], fault);
  const killed = download("after-enc-cert");
  assert.equal(killed.signal, "SIGKILL", `the download was to die after the pair's encryption certificate: ${killed.status} ${killed.stderr}`);
  const mid = containers("fresh").map((c) => c.name);
  assert.ok(mid.includes(skfMarks.markContainer(`download-${ref}-r1`)), `the receiving key's mark: ${JSON.stringify(mid)}`);

  const r = download();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /已把 1 把恢复的旧加密密钥写入 UKey|1 recovered old encryption key\(s\) written/);
  const out = r.json<{ certificate: { serialHex: string; pem: string }; encryptionCertificate?: { serialHex: string } }>();
  const all = containers("fresh");
  assert.deepEqual(all.map((c) => c.name).sort(), [skfMarks.keyContainer(`download-${ref}`), skfMarks.keyContainer(`download-${ref}-r1`)].sort(),
    "the new pair and the recovered key's container, no marks");
  const pair = all.find((c) => c.name === skfMarks.keyContainer(`download-${ref}`))!;
  assert.equal(opensslSerialOf(pair.signCertificate), out.certificate.serialHex.toLowerCase());
  assert.equal(opensslSerialOf(pair.encCertificate), out.encryptionCertificate!.serialHex.toLowerCase());
  const recovered = all.find((c) => c.name === skfMarks.keyContainer(`download-${ref}-r1`))!;
  assert.ok(recovered.signPublicKey && recovered.signPublicKey !== pair.signPublicKey, "its own receiving key");
  assert.equal(opensslSerialOf(recovered.encCertificate), old.oldEnc.toLowerCase(), "the old encryption certificate beside it");
  assert.ok(recovered.encPublicKey.toLowerCase().includes(pointOf(oldEncCert).slice(0, 64)) && recovered.encPublicKey.toLowerCase().includes(pointOf(oldEncCert).slice(64)),
    "the imported key is the old encryption certificate's");
  assert.equal(recovered.signCertificate, "", "the receiving key has no certificate of its own");
  const chain = out.certificate.pem.slice(out.certificate.pem.indexOf("-----END CERTIFICATE-----") + 25);
  opensslVerifySm2(w, recovered.encCertificate, chain);
  opensslVerifySm2(w, pair.encCertificate, chain);
});
