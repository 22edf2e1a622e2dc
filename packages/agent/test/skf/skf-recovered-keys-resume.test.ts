import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { FaultPoint } from "../../src/flows/flow-types.js";
import { SkfBackend, skfMarks } from "../../src/keys/skf-backend.js";
import { createAgentWorld, type AgentWorld } from "../support/agent-world.js";
import { addRecoveryOperators, enablePairs, issuePair, openCounter, opensslSerialOf } from "./support/pairs.js";
import { SoftkeyDir, type SoftkeyContents } from "./support/softkey.js";

// Issue 15, recovered keys: the resume gap. A recovery of two old SM2 encryption keys is downloaded with its two
// codes onto an empty software SKF key, and the agent is killed (SIGKILL) after the first recovered key is in its
// container, before the second. The server takes the receiving keys only all together, and the codes are spent,
// so the next run must find both receiving keys again by their pending marks: they are relabelled only once the
// whole download is done. Afterwards the key holds the new pair and both recovered keys, each beside its old
// encryption certificate, and no marks.

let w: AgentWorld;
let keys: SoftkeyDir;
const pin = "123456";
const serials = { old: "SKFRESUM00000001", fresh: "SKFRESUM00000002" };
const oldEnc: string[] = [];
let admin: Awaited<ReturnType<typeof addRecoveryOperators>>;

before(async () => {
  keys = new SoftkeyDir();
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  w = createAgentWorld("ukey-skf-recovered-resume-", { caAlgorithm: "sm2" });
  enablePairs(w);
  keys.create("old", { serial: serials.old, userPin: pin, adminPin: "87654321" });
  keys.create("fresh", { serial: serials.fresh, userPin: pin, adminPin: "87654321" });
  const backend = await SkfBackend.open(keys.build.library);
  const counter = await openCounter(w);
  try {
    // Two pairs over the years: two escrowed encryption keys to recover.
    for (let i = 0; i < 2; i++) oldEnc.push((await issuePair(w, backend, serials.old, pin, "H1", counter)).oldEnc.toLowerCase());
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


type Container = SoftkeyContents["applications"][number]["containers"][number];
const containers = (device: string): Container[] => keys.show(device).applications[0]!.containers;

test("killed after the first of two recovered keys, the next run installs the second and settles both (issue 15)", async () => {
  const opened = await admin("olga", "/kmc-recoveries", { holderId: "H1", profileId: "gm", reason: "旧 UKey 丢失，需读取旧加密数据" });
  assert.equal(opened.status, 201, await opened.clone().text());
  const rec = await opened.json() as { id: string; escrowIds: string[] };
  assert.equal(rec.escrowIds.length, 2, "both old encryption keys are recovered");
  const approved = await admin("audrey", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(approved.status, 200, await approved.clone().text());
  const { referenceNumber, authorizationCode } = await approved.json() as { referenceNumber: string; authorizationCode: string };
  const ref = referenceNumber.replace(/[\s-]/g, "");

  const download = (fault?: FaultPoint) => w.ukey(
    ["download", "--token", serials.fresh, "--ref", referenceNumber, "--code", authorizationCode, "--pin-file", w.pinFile, "--yes", "--json", "--server", w.server!.url],
    { noDefaults: true, env: { UKEY_SKF_LIBRARY: keys.build.library, SKF_SOFTKEY_DIR: keys.dir, ...(fault ? { UKEY_AGENT_FAULT: fault } : {}) } },
  );
  const killed = download("after-recovered-key");
  assert.equal(killed.signal, "SIGKILL", `the download was to die after the first recovered key: ${killed.status} ${killed.stderr}`);
  const r1 = skfMarks.keyContainer(`download-${ref}-r1`);
  const r2 = skfMarks.keyContainer(`download-${ref}-r2`);
  const mid = containers("fresh");
  assert.ok(mid.find((c) => c.name === r1)?.encCertificate, `the first recovered key is in: ${JSON.stringify(mid.map((c) => c.name))}`);
  assert.equal(mid.find((c) => c.name === r2)?.encCertificate, "", "the second is not yet");
  for (const i of [1, 2]) assert.ok(mid.some((c) => c.name === skfMarks.markContainer(`download-${ref}-r${i}`)), `receiving key ${i} still marked pending`);

  const r = download();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /已把 2 把恢复的旧加密密钥写入 UKey|2 recovered old encryption key\(s\) written/);
  assert.doesNotMatch(r.stderr + r.stdout, /仍由密钥管理中心托管|stay escrowed/, "none left escrowed");
  const all = containers("fresh");
  assert.deepEqual(all.map((c) => c.name).sort(), [skfMarks.keyContainer(`download-${ref}`), r1, r2].sort(), "the new pair and the two recovered keys' containers, no marks");
  assert.deepEqual([r1, r2].map((n) => opensslSerialOf(all.find((c) => c.name === n)!.encCertificate)).sort(), [...oldEnc].sort(),
    "each old encryption certificate beside its recovered key");
});
