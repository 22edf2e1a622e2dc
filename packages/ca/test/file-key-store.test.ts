import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { isUkeyError } from "@ukey/policy";
import { FileKeyStore } from "../src/index.js";
import { openssl, tempDir } from "./support/openssl.js";

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const tmp = tempDir();
after(() => tmp.cleanup());

test("creates encrypted, owner-only PKCS#8 keys that sign and load again", async () => {
  const store = new FileKeyStore(`${tmp.dir}/ca`, "correct horse\n");
  const cases = [["ec256", "p256", "sha256"], ["ec384", "p384", "sha384"], ["rsa", "rsa2048", "sha256"]] as const;
  for (const [name, algorithm, hash] of cases) {
    const created = await store.create(name, algorithm);
    assert.equal(created.algorithm, algorithm);
    const path = store.pathOf(name);
    assert.equal(statSync(path).mode & 0o777, 0o600, name);
    const pem = readFileSync(path, "utf8");
    assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    // openssl sees PBES2 with AES-256-CBC and opens it with the same passphrase (newline dropped).
    const p = openssl(["pkey", "-in", path, "-passin", "pass:correct horse", "-pubout", "-outform", "DER"]);
    assert.equal(p.status, 0, p.stderr);
    const asn = openssl(["asn1parse", "-in", path]);
    assert.match(asn.stdout, /PBES2/);
    assert.match(asn.stdout, /aes-256-cbc/);

    const loaded = await store.load(name);
    assert.deepEqual(loaded.spki, created.spki);
    const data = Buffer.from(`to be signed by ${name}`);
    const sig = await loaded.sign(data);
    const pub = createPublicKey({ key: loaded.spki, format: "der", type: "spki" });
    assert.ok(verify(hash, data, algorithm.startsWith("p") ? { key: pub, dsaEncoding: "der" } : pub, sig), name);
    if (algorithm.startsWith("p")) assert.equal(sig[0], 0x30, "DER ECDSA-Sig-Value");
  }
});

test("refuses to overwrite, a wrong passphrase, a damaged file and a missing key", async () => {
  const dir = `${tmp.dir}/errors`;
  const store = new FileKeyStore(dir, "s3cret");
  await store.create("root", "p256");
  const before = readFileSync(store.pathOf("root"));
  await assert.rejects(store.create("root", "p256"), code("CA_ALREADY_INITIALISED"));
  assert.deepEqual(readFileSync(store.pathOf("root")), before, "unchanged");

  await assert.rejects(new FileKeyStore(dir, "wrong").load("root"), code("CA_PASSPHRASE_WRONG"));
  await assert.rejects(store.load("issuing"), code("CA_NOT_INITIALISED"));

  const damaged = [
    ["not PEM", "hello"],
    ["cut short", before.toString("utf8").slice(0, 200) + "\n-----END ENCRYPTED PRIVATE KEY-----\n"],
    ["plain key", "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"],
  ] as const;
  for (const [name, text] of damaged) {
    writeFileSync(store.pathOf("damaged"), text);
    await assert.rejects(store.load("damaged"), code("CA_KEY_UNUSABLE"), name);
  }
  assert.throws(() => new FileKeyStore(dir, "\n"), code("CONFIG_INVALID"));
  assert.throws(() => store.pathOf("../etc/passwd"), code("REQUEST_INVALID"));
});
