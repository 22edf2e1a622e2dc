import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { FaultPoint, RenewResult } from "../src/flows/flow-types.js";
import { derOfPem } from "../src/flows/certificate-id.js";
import { objectLabels } from "../src/keys/key-store.js";
import { Pkcs11Backend } from "../src/keys/pkcs11-backend.js";
import { runUkeyServer } from "../../server/test/support/fixtures.js";
import { createAgentWorld, type AgentWorld, type TokenObjects } from "./support/agent-world.js";

// Issue 15 part 4 on PKCS#11: an RSA signing + encryption pair renewed with `ukey renew` and downloaded with
// `ukey download` onto SoftHSM2 (real), against the real server and its key management centre. The encryption key
// arrives as "cms-enveloped-data-v2" and is unwrapped on the token (never in the agent). The agent is killed
// (SIGKILL) after each of the pair's steps and run again: the same order finishes. Afterwards the token holds the new
// pair (signing key and certificate at CKA_ID X, encryption key and certificate at X‖02) and the old pair's
// encryption key and certificate: clean-up never removes an encryption key unasked.

let w: AgentWorld;
const cases = ["plain", "after-enc-key", "after-enc-cert"] as const;
const tokens: Record<string, { serial: string; oldSign: string; oldEnc: string; oldId: string }> = {};
let enrolment: { referenceNumber: string; authorizationCode: string };
let downloadToken: string;

before(async () => {
  w = createAgentWorld("ukey-rsa-pair-");
  const cfgFile = `${w.dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8")) as { profiles: unknown[]; kmc?: unknown };
  cfg.profiles.push({
    id: "rsa-pair", keyAlgorithms: ["rsa2048"], validity: { days: 30 }, renewal: { windows: { est: null } }, verification: { idNumber: false, oneTimeCode: null },
    certificates: { signing: { keyUsage: ["digitalSignature", "nonRepudiation"] }, encryption: { keyUsage: ["keyEncipherment", "dataEncipherment"] } },
  });
  cfg.kmc = { masterKey: { type: "file" } };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  w.env.UKEY_KMC_PASSPHRASE_FILE = w.t.write("kmc-passphrase", "the key management centre's own passphrase\n");
  const init = runUkeyServer(["kmc", "init", "--data-dir", w.dataDir], w.env);
  assert.equal(init.status, 0, init.stderr);
  for (const c of cases) {
    const serial = w.addToken(`rsa-${c}`);
    tokens[c] = { serial, ...await issuePair(serial) };
  }
  downloadToken = w.addToken("rsa-download");
  const r = runUkeyServer(["enrol", "--data-dir", w.dataDir, "--holder", "H2", "--profile", "rsa-pair", "--json"], w.env);
  assert.equal(r.status, 0, r.stderr);
  enrolment = r.json();
  await w.start();
});
after(async () => {
  await w?.cleanup();
});

/** An RSA pair issued at the counter (ukey-server issue, server stopped) onto a SoftHSM2 token, installed as the agent does. */
async function issuePair(serial: string): Promise<{ oldSign: string; oldEnc: string; oldId: string }> {
  const backend = new Pkcs11Backend(w.hsm.module);
  try {
    const s = await backend.open(serial, w.hsm.pin);
    try {
      const key = await s.generateKeyPair("rsa2048", "issuing", undefined, { unwrap: true });
      const csr = w.t.write(`csr-${serial}.pem`, await s.createCsr(key.id, ""));
      const out = w.t.path(`cert-${serial}.pem`);
      const r = runUkeyServer(["issue", "--data-dir", w.dataDir, "--holder", "H1", "--profile", "rsa-pair", "--csr", csr, "--out", out, "--token-serial", serial, "--json"], w.env);
      assert.equal(r.status, 0, r.stderr);
      const issued = r.json<{ serial: string; encryptionCertificate: { serial: string; pem: string }; envelope: { format: string; value: string } }>();
      assert.equal(issued.envelope.format, "cms-enveloped-data-v2");
      const label = objectLabels.current(issued.serial);
      await s.installCertificate(derOfPem(readFileSync(out, "utf8")), key.id, label);
      const enc = await s.importRsaEnvelope!(key.id, Buffer.from(issued.envelope.value, "base64"), spkiOfPem(issued.encryptionCertificate.pem));
      await s.installCertificate(derOfPem(issued.encryptionCertificate.pem), enc.id, label);
      await s.relabel(key.id, label);
      return { oldSign: issued.serial, oldEnc: issued.encryptionCertificate.serial, oldId: key.id };
    } finally {
      await s.close();
    }
  } finally {
    await backend.close();
  }
}

function spkiOfPem(pem: string): Uint8Array {
  return new X509Certificate(pem).publicKey.export({ format: "der", type: "spki" });
}

const hex = (serial: string) => serial.toLowerCase().replace(/^0+/, "");
const same = (a: string | undefined, b: string) => !!a && hex(a) === hex(b);

function renew(serial: string, fault?: FaultPoint) {
  return w.ukey(["renew", "--token", serial, "--json", "--yes"], fault ? { env: { UKEY_AGENT_FAULT: fault } } : {});
}

/** The new pair at X and X‖02 with one current label, the old pair's encryption half kept, nothing else of the old pair or pending. */
function assertFinal(o: TokenObjects, out: { certificate: { serialHex: string }; encryptionCertificate?: { serialHex: string } }, old?: { oldEnc: string; oldId: string }): void {
  const sign = o.certificates.find((c) => same(c.serialHex, out.certificate.serialHex));
  const enc = o.certificates.find((c) => out.encryptionCertificate && same(c.serialHex, out.encryptionCertificate.serialHex));
  assert.ok(sign && enc, o.raw);
  assert.equal(enc.id, `${sign.id}02`, "the encryption certificate's CKA_ID is the signing one's followed by 02");
  const label = objectLabels.current(out.certificate.serialHex);
  assert.equal(sign.label, label);
  assert.equal(enc.label, label, "one label for the pair");
  assert.deepEqual(o.privateKeys.filter((k) => k.id === sign.id || k.id === enc.id).map((k) => k.label), [label, label]);
  assert.ok(!/ukey-pending/.test(o.raw), `no pending objects left:\n${o.raw}`);
  if (old) {
    assert.ok(o.certificates.some((c) => same(c.serialHex, old.oldEnc) && c.id === `${old.oldId}02`), `the old encryption certificate is kept:\n${o.raw}`);
    assert.ok(o.privateKeys.some((k) => k.id === `${old.oldId}02`), `the old encryption key is kept:\n${o.raw}`);
  }
  // The new encryption key: sensitive, not extractable, decrypts; the signing key only signs.
  const block = (id: string) => o.raw.split(/\n(?=\S)/).find((b) => b.startsWith("Private Key Object") && new RegExp(`ID:\\s+${id}\\n`).test(b)) ?? "";
  assert.match(block(enc.id), /Usage:\s+decrypt, unwrap\n\s+Access:\s+sensitive\s*$/);
  assert.match(block(sign.id), /Usage:\s+sign\n/);
}

test("an RSA pair renewed on a PKCS#11 token: the encryption key unwrapped on the token, the old encryption key kept (issue 15)", () => {
  const t = tokens.plain!;
  const r = renew(t.serial);
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<RenewResult>();
  assert.ok(out.encryptionCertificate, "the pair's encryption certificate is reported");
  assertFinal(w.objects("rsa-plain"), out, t);
});

for (const fault of ["after-enc-key", "after-enc-cert"] as const) {
  test(`killed ${fault}, the next run finishes the same order and leaves the same pair`, () => {
    const t = tokens[fault]!;
    const killed = renew(t.serial, fault);
    assert.equal(killed.signal, "SIGKILL", `${killed.status} ${killed.stderr}`);
    const r = renew(t.serial);
    assert.equal(r.status, 0, r.stderr);
    const out = r.json<RenewResult>();
    assert.equal(out.resumed, true);
    assertFinal(w.objects(`rsa-${fault}`), out, t);
    // Exactly two RSA pairs' worth of encryption objects: nothing unwrapped twice.
    assert.equal(w.objects(`rsa-${fault}`).privateKeys.filter((k) => k.id.endsWith("02")).length, 2);
  });
}

test("an RSA pair downloaded with two codes onto an empty PKCS#11 token", () => {
  const r = w.ukey(["download", "--token", downloadToken, "--ref", enrolment.referenceNumber, "--code", enrolment.authorizationCode, "--json", "--yes"]);
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<{ certificate: { serialHex: string }; encryptionCertificate?: { serialHex: string } }>();
  assert.ok(out.encryptionCertificate, r.stdout);
  const o = w.objects("rsa-download");
  assertFinal(o, out);
  assert.equal(o.privateKeys.length, 2, o.raw);
});
