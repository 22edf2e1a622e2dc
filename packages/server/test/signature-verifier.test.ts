import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createPrivateKey, sign } from "node:crypto";
import { pemToDer, verifyCsr } from "@ukey/ca";
import { UkeyError } from "@ukey/policy";
import { SignatureVerifier } from "../src/signature-verifier.js";
import { keyArgs, openssl, opensslCsr, tempDir } from "./support/fixtures.js";

// The same checks on the calling thread and in the worker: same values, same
// catalogue codes. CSRs and certificates from the real openssl CLI.
const t = tempDir();
after(() => t.cleanup());

function selfSigned(name: string, args: readonly string[]): { der: Buffer; key: ReturnType<typeof createPrivateKey> } {
  const key = t.path(`${name}.key`);
  const cert = t.path(`${name}.crt`);
  const r = openssl(["req", "-x509", ...args, "-nodes", "-keyout", key, "-out", cert, "-subj", `/CN=${name}`, "-days", "2"]);
  assert.equal(r.status, 0, r.out);
  return { der: pemToDer(readFileSync(cert, "utf8"), "CERTIFICATE"), key: createPrivateKey(readFileSync(key)) };
}

const p256Csr = readFileSync(opensslCsr(t, "p256", keyArgs.p256, "/CN=Zhang San/O=Example Bank").csr, "utf8");
const p384Csr = readFileSync(opensslCsr(t, "p384", keyArgs.p384).csr, "utf8");
const tampered = (() => {
  const der = pemToDer(p256Csr, "CERTIFICATE REQUEST");
  const bad = Buffer.from(der);
  bad[bad.length - 5]! ^= 0x01; // inside the signature value
  return bad;
})();
const p256Cert = selfSigned("holder256", keyArgs.p256);
const p384Cert = selfSigned("holder384", keyArgs.p384);
const rsa2048Cert = selfSigned("holder-rsa2048", keyArgs.rsa2048);
// An imported legacy certificate: a key too weak to issue for still proves possession.
const rsa1024Cert = selfSigned("holder-rsa1024", keyArgs.rsa1024);
// A compressed EC point in the certificate (read through the DER decoder, not as coordinates).
const compressedCert = (() => {
  const key = t.path("compressed.key");
  assert.equal(openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", t.path("plain.key")]).status, 0);
  assert.equal(openssl(["ec", "-in", t.path("plain.key"), "-conv_form", "compressed", "-out", key]).status, 0);
  const r = openssl(["req", "-x509", "-key", key, "-out", t.path("compressed.crt"), "-subj", "/CN=compressed", "-days", "2"]);
  assert.equal(r.status, 0, r.out);
  const der = pemToDer(readFileSync(t.path("compressed.crt"), "utf8"), "CERTIFICATE");
  assert.equal(der.indexOf(Buffer.from([0x03, 0x22, 0x00])) > 0, true, "the certificate carries a 33-byte (compressed) point");
  return { der, key: createPrivateKey(readFileSync(key)) };
})();
const message = Buffer.from("ukey-renew possession v1\norder\nchallenge");
const signed = (key: ReturnType<typeof createPrivateKey>, hash = "sha256", m = message) => sign(hash, m, { key, dsaEncoding: "der" });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof UkeyError, String(e));
    return e.code;
  }
  return "no error";
}

/** A verifier whose checks all go to the worker; fails loudly if the worker never comes up. */
async function offloaded(): Promise<SignatureVerifier> {
  const v = new SignatureVerifier({ offloadAbove: 0 });
  const deadline = Date.now() + 60_000;
  while (!v.offloaded) {
    assert.ok(Date.now() < deadline, "the signature worker did not start within 60 s");
    await v.possessionValid(p256Cert.der, message, signed(p256Cert.key));
    await new Promise((r) => setTimeout(r, 20));
  }
  return v;
}

const places: Array<[string, () => Promise<SignatureVerifier>]> = [
  ["on the calling thread", async () => new SignatureVerifier({ offloadAbove: Infinity })],
  ["in the worker", offloaded],
];

for (const [place, make] of places) {
  test(`${place}: checks give what the functions give`, async () => {
    const v = await make();
    try {
      const worker = place === "in the worker";
      const csr = await v.verifyCsr(p256Csr);
      const direct = verifyCsr(p256Csr);
      assert.ok(Buffer.isBuffer(csr.spki) && csr.spki.equals(direct.spki));
      assert.ok(csr.der.equals(direct.der));
      assert.ok(csr.requestedSubjectDer.equals(direct.requestedSubjectDer));
      assert.equal(csr.algorithm, "p256");
      assert.equal(csr.requestedSubject, direct.requestedSubject);
      assert.match(csr.requestedSubject, /Zhang San/);
      assert.equal((await v.verifyCsr(Buffer.from(p384Csr))).algorithm, "p384");
      assert.equal(await codeOf(v.verifyCsr(tampered)), "CSR_SIGNATURE_INVALID");
      assert.equal(await codeOf(v.verifyCsr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")), "CSR_MALFORMED");
      assert.equal(await codeOf(v.verifyCsr(Buffer.alloc(70_000, 0x30))), "REQUEST_TOO_LARGE");

      assert.equal(await v.possessionValid(p256Cert.der, message, signed(p256Cert.key)), true);
      assert.equal(await v.possessionValid(p384Cert.der, message, signed(p384Cert.key, "sha384")), true, "P-384 proofs use SHA-384");
      assert.equal(await v.possessionValid(p256Cert.der, message, signed(p384Cert.key)), false, "another key");
      for (const [name, c] of [["RSA-2048", rsa2048Cert], ["RSA-1024", rsa1024Cert], ["compressed P-256", compressedCert]] as const) {
        assert.equal(await v.possessionValid(c.der, message, signed(c.key)), true, name);
        assert.equal(await v.possessionValid(c.der, message, signed(p256Cert.key)), false, `${name}: another key`);
      }
      assert.equal(await v.possessionValid(p256Cert.der, message, signed(p256Cert.key, "sha256", Buffer.from("another message"))), false);
      assert.equal(await v.possessionValid(p256Cert.der, message, Buffer.from("not a signature")), false);
      assert.equal(await v.possessionValid(Buffer.from("not a certificate"), message, signed(p256Cert.key)), false);
      // Many at once (they cross in one message) each get their own answer.
      const many = await Promise.all(Array.from({ length: 40 }, (_, i) =>
        v.possessionValid(p256Cert.der, message, i % 2 ? signed(p256Cert.key) : Buffer.from("bad"))));
      assert.deepEqual(many, Array.from({ length: 40 }, (_, i) => i % 2 === 1));
      assert.equal(v.offloaded, worker, worker ? "the checks above ran in the worker" : "no worker below the threshold");
    } finally {
      await v.close();
    }
  });
}

test("after close the checks run on the calling thread", async () => {
  const v = await offloaded();
  await v.close();
  assert.equal(v.offloaded, false);
  assert.equal(await v.possessionValid(p256Cert.der, message, signed(p256Cert.key)), true);
  assert.equal(await codeOf(v.verifyCsr(tampered)), "CSR_SIGNATURE_INVALID");
  await v.close();
});

test("checks move to the worker only above the threshold", async () => {
  const v = new SignatureVerifier({ offloadAbove: 1000 });
  try {
    for (let i = 0; i < 20; i++) await v.possessionValid(p256Cert.der, message, signed(p256Cert.key));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(v.offloaded, false);
  } finally {
    await v.close();
  }
});
