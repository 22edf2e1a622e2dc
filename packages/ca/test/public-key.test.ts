import { test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isUkeyError } from "@ukey/policy";
import { certificateSpki, keyAlgorithmOfSpki, pemToDer, publicKeyFromSpki } from "../src/index.js";
import { openssl, tempDir } from "./support/openssl.js";

const path = (t: { dir: string }, name: string) => join(t.dir, name);
const spkiOf = (k: ReturnType<typeof generateKeyPairSync>["publicKey"]) => k.export({ type: "spki", format: "der" });

test("publicKeyFromSpki gives the key the DER decoder gives, for every algorithm issued here", () => {
  const keys = [
    generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey,
    generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey,
    generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey,
  ];
  for (const k of keys) {
    const spki = spkiOf(k);
    const key = publicKeyFromSpki(spki, keyAlgorithmOfSpki(spki));
    assert.ok(key.export({ type: "spki", format: "der" }).equals(spki), k.asymmetricKeyType);
    assert.ok(publicKeyFromSpki(spki).equals(k), "without the algorithm too");
  }
});

test("publicKeyFromSpki takes a compressed EC point (through the DER decoder)", () => {
  const t = tempDir();
  try {
    const key = path(t, "c.key");
    assert.equal(openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]).status, 0);
    const r = openssl(["ec", "-in", key, "-pubout", "-conv_form", "compressed", "-outform", "DER", "-out", path(t, "c.spki")]);
    assert.equal(r.status, 0, r.stderr);
    const spki = readFileSync(path(t, "c.spki"));
    assert.equal(spki.length, 59, "a compressed P-256 SPKI");
    const k = publicKeyFromSpki(spki, "p256");
    assert.ok(k.equals(createPublicKey({ key: readFileSync(key), format: "pem" })));
  } finally {
    t.cleanup();
  }
});

test("publicKeyFromSpki refuses a point that is not on the curve", () => {
  const spki = Buffer.from(spkiOf(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey));
  spki[spki.length - 3]! ^= 0x01;
  assert.throws(() => publicKeyFromSpki(spki, "p256"));
  assert.throws(() => createPublicKey({ key: spki, format: "der", type: "spki" }), "the DER decoder refuses it too");
});

test("certificateSpki reads the SPKI bytes of a certificate; anything else is DER_MALFORMED", () => {
  const t = tempDir();
  try {
    const r = openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path(t, "k.pem"), "-out", path(t, "c.pem"), "-subj", "/CN=spki", "-days", "1"]);
    assert.equal(r.status, 0, r.stderr);
    const der = pemToDer(readFileSync(path(t, "c.pem")).toString("utf8"), "CERTIFICATE");
    const want = createPublicKey({ key: readFileSync(path(t, "k.pem")), format: "pem" }).export({ type: "spki", format: "der" });
    assert.ok(certificateSpki(der).equals(want));
    for (const bad of [Buffer.from("not a certificate"), Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]), der.subarray(0, 40)]) {
      assert.throws(() => certificateSpki(bad), (e: unknown) => isUkeyError(e) && e.code === "DER_MALFORMED");
    }
  } finally {
    t.cleanup();
  }
});
