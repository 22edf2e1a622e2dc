import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { formatPolicyDate } from "@ukey/policy";
import type { IssuedCertificate, TokenStatus } from "../src/flows/flow-types.js";
import { objectLabels } from "../src/keys/key-store.js";
import { runUkeyServer } from "../../server/test/support/fixtures.js";
import { createAgentWorld, type AgentWorld, type TokenObjects } from "./support/agent-world.js";

// Download with two codes onto an empty (initialised) SoftHSM2 token, and
// the forgotten-PIN path: initialise the token (SO PIN, new PIN twice),
// then download again. Real server, real CLI, pkcs11-tool to check.
let w: AgentWorld;
let fresh: string;
let forgot: string;
let interrupted: string;
const enrolments: { referenceNumber: string; authorizationCode: string }[] = [];

before(async () => {
  w = createAgentWorld("ukey-agent-download-");
  fresh = w.addToken("fresh");
  forgot = w.addToken("forgot");
  await w.issueOnToken("H1", "e2e", "p256", forgot);
  interrupted = w.addToken("interrupted");
  for (let i = 0; i < 3; i++) {
    const r = runUkeyServer(["enrol", "--data-dir", w.dataDir, "--holder", "H2", "--profile", "e2e", "--json"], w.env);
    assert.equal(r.status, 0, r.stderr);
    enrolments.push(r.json());
  }
  await w.start();
});
after(async () => {
  await w?.cleanup();
});

function assertOneCurrent(o: TokenObjects, serialHex: string): void {
  assert.equal(o.certificates.length, 1, o.raw);
  assert.equal(o.privateKeys.length, 1, o.raw);
  assert.equal(o.publicKeys.length, 1, o.raw);
  assert.equal(o.certificates[0]!.serialHex, serialHex);
  assert.equal(o.certificates[0]!.label, objectLabels.current(serialHex));
  assert.equal(o.privateKeys[0]!.label, objectLabels.current(serialHex));
  assert.equal(o.privateKeys[0]!.id, o.certificates[0]!.id);
}

test("downloads with a reference number and authorization code onto an empty token; a wrong or spent code changes nothing", () => {
  const e = enrolments[0]!;
  const wrong = w.ukey(["download", "--token", fresh, "--ref", e.referenceNumber, "--code", "2222-3333-4444"]);
  assert.equal(wrong.status, 3, wrong.stderr);
  assert.match(wrong.stderr, /CODE_INVALID/);
  assert.deepEqual(w.objects("fresh").privateKeys, [], "the key made for a refused download is removed");

  // Issue 16 (seed 004 §4.5): the certificate the codes authorize is shown before the key is touched; no terminal, no --yes: nothing happens.
  const unconfirmed = w.ukey(["download", "--no-yes", "--token", fresh, "--ref", e.referenceNumber, "--code", e.authorizationCode, "--json"]);
  assert.equal(unconfirmed.status, 2, unconfirmed.stderr);
  assert.equal(unconfirmed.json<{ error: { code: string } }>().error.code, "CONFIRMATION_REQUIRED");
  const now = Date.now();
  assert.match(unconfirmed.stderr, new RegExp(`The certificate to download onto the key:\n  Name Holder H2 · Organisation [^\n]+ · ID H2\n[\\s\\S]*Valid ${formatPolicyDate(now)} to ${formatPolicyDate(now + 30 * 86_400_000)}`));
  assert.doesNotMatch(unconfirmed.stderr, /CN=|serialNumber=/, "readable fields, not a DN");
  assert.deepEqual(w.objects("fresh").privateKeys, [], "no key made before the holder confirmed");

  const r = w.ukey(["download", "--token", fresh, "--ref", e.referenceNumber, "--code", e.authorizationCode.toLowerCase(), "--json"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /The certificate to download onto the key:/, "--yes still shows it");
  const cert = r.json<{ certificate: IssuedCertificate }>().certificate;
  assert.match(cert.subject, /CN=Holder H2/);
  assertOneCurrent(w.objects("fresh"), cert.serialHex);

  const spent = w.ukey(["download", "--token", fresh, "--ref", e.referenceNumber, "--code", e.authorizationCode]);
  assert.equal(spent.status, 3, spent.stderr);
  assert.match(spent.stderr, /CODE_ALREADY_USED/);
  assertOneCurrent(w.objects("fresh"), cert.serialHex);
});

test("forgotten PIN: initialise (confirm, SO PIN, new PIN twice), then download again", () => {
  const before = w.objects("forgot");
  assert.equal(before.certificates.length, 1);
  const soPin = w.t.write("so-pin", `${w.hsm.soPin}\n`);
  const newPin = w.t.write("new-pin", "246810\n");

  const no = w.ukey(["init", "--token", forgot, "--so-pin-file", soPin, "--new-pin-file", newPin], { input: "no\n" });
  assert.equal(no.status, 1, no.stderr);
  assert.match(no.stderr, /OPERATION_CANCELLED/);
  assert.match(no.stderr, /CN=Holder H1/, "what would be lost was shown");
  assert.equal(w.objects("forgot").certificates.length, 1, "nothing changed");

  const wrongSo = w.t.write("wrong-so", "00000000\n");
  const bad = w.ukey(["init", "--token", forgot, "--so-pin-file", wrongSo, "--new-pin-file", newPin], { input: "yes\n" });
  assert.equal(bad.status, 4, bad.stderr);
  assert.match(bad.stderr, /TOKEN_PIN_INCORRECT/);
  assert.equal(w.objects("forgot").certificates.length, 1, "nothing changed");

  const weak = w.t.write("weak", "12\n");
  const tooWeak = w.ukey(["init", "--token", forgot, "--so-pin-file", soPin, "--new-pin-file", weak], { input: "yes\n" });
  assert.equal(tooWeak.status, 4, tooWeak.stderr);
  assert.match(tooWeak.stderr, /PIN_TOO_WEAK/);

  const ok = w.ukey(["init", "--token", forgot, "--so-pin-file", soPin, "--new-pin-file", newPin, "--json"], { input: "yes\n" });
  assert.equal(ok.status, 0, ok.stderr);
  const token = ok.json<{ token: { serial: string } }>().token;
  assert.equal(token.serial, forgot);
  assert.deepEqual(w.objects("forgot", "246810").certificates, [], "erased");
  const oldPin = w.ukey(["status", "--token", forgot, "--pin-file", w.pinFile]);
  assert.equal(oldPin.status, 4, "the forgotten PIN no longer opens the token");
  assert.match(oldPin.stderr, /TOKEN_PIN_INCORRECT/);

  const e = enrolments[1]!;
  const d = w.ukey(["download", "--token", forgot, "--ref", e.referenceNumber, "--code", e.authorizationCode, "--pin-file", newPin, "--json"]);
  assert.equal(d.status, 0, d.stderr);
  const cert = d.json<{ certificate: IssuedCertificate }>().certificate;
  assertOneCurrent(w.objects("forgot", "246810"), cert.serialHex);
  const s = w.ukey(["status", "--token", forgot, "--pin-file", newPin, "--json"]);
  assert.equal(s.status, 0, s.stderr);
  const st = s.json<{ tokens: TokenStatus[] }>().tokens[0]!;
  assert.equal(st.certificates[0]!.certificate.serialHex, cert.serialHex);
});

test("PIN change: the current PIN, then the new one twice; a mismatch changes nothing", () => {
  const cur = w.t.write("cur-pin", "246810\n");
  const next = w.t.write("next-pin", "135791\n");
  const mismatch = w.ukey(["pin", "change", "--token", forgot, "--pin-file", cur], { input: "111111\n222222\n" });
  assert.equal(mismatch.status, 4, mismatch.stderr);
  assert.match(mismatch.stderr, /PIN_CONFIRMATION_MISMATCH/);
  assert.equal(w.objects("forgot", "246810").certificates.length, 1, "the PIN is unchanged");
  const wrong = w.ukey(["pin", "change", "--token", forgot, "--new-pin-file", next]);
  assert.equal(wrong.status, 4, wrong.stderr);
  assert.match(wrong.stderr, /TOKEN_PIN_INCORRECT/);
  const r = w.ukey(["pin", "change", "--token", forgot, "--pin-file", cur, "--new-pin-file", next]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(w.objects("forgot", "135791").certificates.length, 1);
});

test("a download killed after the server answered: the same codes with the same key finish it (the server delivers again)", () => {
  const e = enrolments[2]!;
  const killed = w.ukey(["download", "--token", interrupted, "--ref", e.referenceNumber, "--code", e.authorizationCode], { env: { UKEY_AGENT_FAULT: "after-csr" } });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  const mid = w.objects("interrupted");
  assert.equal(mid.certificates.length, 0, "nothing installed yet");
  assert.equal(mid.privateKeys.length, 1);
  assert.equal(mid.privateKeys[0]!.label, objectLabels.pending(`download-${e.referenceNumber}`));
  const again = w.ukey(["download", "--token", interrupted, "--ref", e.referenceNumber, "--code", e.authorizationCode, "--json"]);
  assert.equal(again.status, 0, again.stderr);
  const cert = again.json<{ certificate: IssuedCertificate }>().certificate;
  const after = w.objects("interrupted");
  assertOneCurrent(after, cert.serialHex);
  assert.equal(after.privateKeys[0]!.id, mid.privateKeys[0]!.id, "the pending key was used, the code not spent twice");
});
