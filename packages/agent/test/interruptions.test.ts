import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import type { FaultPoint, RenewResult } from "../src/flows/flow-types.js";
import { objectLabels } from "../src/keys/key-store.js";
import { createAgentWorld, type AgentWorld, type TokenObjects } from "./support/agent-world.js";

// Issue 5.4: the agent killed (SIGKILL, UKEY_AGENT_FAULT) at each point of
// a renewal, then run again. The token's labels and the server's order are
// the only state; the next run goes on with the same order, and at every
// moment the holder has a usable certificate with its key on the token.
// The kills come in two chains on two tokens: each run after the first
// resumes the order the run before left and dies at the next point, the last
// one finishes it; every fault point's state is checked, resumed and left
// behind. `after-csr` leaves the order issued, so a resumed run never passes
// `after-csr` or `after-issue` again: it has a token (and chain) of its own.
let w: AgentWorld;
const tokens: Record<string, { serial: string; label: string; cert: string; certId: string }> = {};
const chains: Record<string, FaultPoint[]> = {
  "after-keygen": ["after-keygen", "after-issue", "after-install", "during-cleanup"],
  "after-csr": ["after-csr"],
};

before(async () => {
  w = createAgentWorld("ukey-agent-faults-");
  for (const name of [...Object.keys(chains), "rekey"]) {
    const serial = w.addToken(name);
    const c = await w.issueOnToken("H1", "e2e", "p256", serial);
    tokens[name] = { serial, label: name, cert: c.serial, certId: c.certId };
  }
  // A stray key pair with no certificate on the token whose chain ends in the clean-up: it has two things to remove, so it can be interrupted halfway.
  const r = spawnSync("pkcs11-tool", ["--module", w.hsm.module, "--token-label", "after-keygen", "--login", "--pin", w.hsm.pin,
    "--keypairgen", "--key-type", "EC:prime256v1", "--label", "stray", "--id", "0badc0de"], { env: { ...process.env, SOFTHSM2_CONF: w.hsm.conf }, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  await w.start();
});
after(async () => {
  await w?.cleanup();
});

async function api<T>(path: string): Promise<T> {
  return await (await fetch(`${w.server!.url}${path}`)).json() as T;
}

/** Some certificate on the token has its private key beside it: the holder can still sign in (and renew). */
function assertUsable(o: TokenObjects): void {
  assert.ok(o.certificates.some((c) => o.privateKeys.some((k) => k.id === c.id)), `no certificate with its key:\n${o.raw}`);
}

function pendingOrderOf(o: TokenObjects): string {
  const id = [...o.privateKeys, ...o.certificates].map((x) => objectLabels.pendingOrder(x.label)).find(Boolean);
  assert.ok(id, `a pending label on the token:\n${o.raw}`);
  return id;
}

function assertFinal(o: TokenObjects, serialHex: string): void {
  assert.equal(o.certificates.length, 1, o.raw);
  assert.equal(o.privateKeys.length, 1, o.raw);
  assert.equal(o.publicKeys.length, 1, o.raw);
  assert.equal(o.certificates[0]!.serialHex, serialHex);
  assert.equal(o.certificates[0]!.label, objectLabels.current(serialHex));
  assert.equal(o.privateKeys[0]!.id, o.certificates[0]!.id);
}

for (const [first, chain] of Object.entries(chains)) {
  test(`killed ${chain.join(", then ")}: each next run goes on with the same order and the last finishes it`, async () => {
    const tk = tokens[first]!;
    let orderId: string | undefined;
    const newSerials = new Set<string>();
    for (const [i, fault] of chain.entries()) {
      const killed = w.ukey(["renew", "--token", tk.serial, "--json"], { env: { UKEY_AGENT_FAULT: fault } });
      assert.equal(killed.signal, "SIGKILL", `the run was to die ${fault}: ${killed.status} ${killed.stderr}`);
      if (i > 0) assert.match(killed.stderr, /Resuming/, `the run killed ${fault} resumed the order`);
      const mid = w.objects(tk.label);
      assertUsable(mid);
      const midOrderId = pendingOrderOf(mid);
      orderId ??= midOrderId;
      assert.equal(midOrderId, orderId, `${fault}: the same order, not a second one`);
      const midOrder = await w.order(orderId);
      const expectState: Record<FaultPoint, string[]> = {
        "after-keygen": ["verified"], "after-csr": ["issued"], "after-issue": ["issued"], "after-install": ["issued"], "after-enc-key": ["issued"], "after-enc-cert": ["issued"], "after-recovered-key": [],
        "during-cleanup": ["completed"],
      };
      assert.ok(expectState[fault].includes(midOrder.state), `${fault}: order ${midOrder.state}`);
      if (midOrder.newSerial) newSerials.add(midOrder.newSerial);
      if (fault === "after-keygen") assert.ok(mid.privateKeys.some((k) => k.label === objectLabels.pending(orderId!)), "the pending key is on the token");
      if (fault === "after-install") assert.ok(mid.certificates.some((c) => c.label === objectLabels.pending(orderId!)), "the new certificate is installed, still pending");
      if (fault === "during-cleanup") assert.equal(mid.certificates.length + mid.privateKeys.length, 3, `one of two invalid objects removed:\n${mid.raw}`);
    }

    const again = w.ukey(["renew", "--token", tk.serial, "--json"]);
    assert.equal(again.status, 0, again.stderr);
    const out = again.json<RenewResult>();
    assert.equal(out.orderId, orderId, "the same order, not a second one");
    assert.equal(out.resumed, true);
    assert.match(again.stderr, /Resuming/);
    // Every run that found the order issued was given the same certificate for the same key.
    assert.deepEqual([...newSerials], newSerials.size ? [out.certificate.serialHex] : [], "the same key gets the same certificate");
    assertFinal(w.objects(tk.label), out.certificate.serialHex);
    assert.equal((await w.order(orderId!)).state, "completed");
    assert.equal((await api<{ state: string }>(`/api/v1/renewal-info/${tk.certId}`)).state, "superseded");
  });
}

test("the pending key lost after issuance (token re-initialised, key deleted): re-keyed, the undelivered certificate revoked", async () => {
  const tk = tokens.rekey!;
  const killed = w.ukey(["renew", "--token", tk.serial], { env: { UKEY_AGENT_FAULT: "after-issue" } });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  const mid = w.objects(tk.label);
  const orderId = pendingOrderOf(mid);
  const undelivered = await w.certificate((await w.order(orderId)).newSerial!);
  const pendingKey = mid.privateKeys.find((k) => k.label === objectLabels.pending(orderId))!;
  for (const type of ["privkey", "pubkey"]) {
    const d = spawnSync("pkcs11-tool", ["--module", w.hsm.module, "--token-label", tk.label, "--login", "--pin", w.hsm.pin, "--delete-object", "--type", type, "--id", pendingKey.id],
      { env: { ...process.env, SOFTHSM2_CONF: w.hsm.conf }, encoding: "utf8" });
    assert.equal(d.status, 0, d.stderr);
  }
  // The pending label is gone with the key: the server returns the open order for the old certificate.
  const again = w.ukey(["renew", "--token", tk.serial, "--json"]);
  assert.equal(again.status, 0, again.stderr);
  const out = again.json<RenewResult>();
  assert.equal(out.orderId, orderId);
  assert.equal(out.resumed, true);
  assert.notEqual(out.certificate.serialHex, undelivered.serial);
  assert.equal((await api<{ state: string }>(`/api/v1/renewal-info/${undelivered.certId}`)).state, "revoked", "the certificate whose key is gone can never be used");
  assertFinal(w.objects(tk.label), out.certificate.serialHex);
});
