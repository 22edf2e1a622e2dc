import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { isUkeyError } from "@ukey/policy";
import { FileKeyStore, KEY_FILE_PBKDF2_ITERATIONS } from "../src/index.js";
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

test("writes key files under PBKDF2-HMAC-SHA256 with 600,000 iterations that openssl pkcs8 opens with the passphrase", async () => {
  const store = new FileKeyStore(`${tmp.dir}/strong`, "correct horse\n");
  const created = await store.create("issuing", "p256");
  const path = store.pathOf("issuing");
  assert.deepEqual(await store.protectionOf("issuing"), { scheme: "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC", iterations: KEY_FILE_PBKDF2_ITERATIONS });
  assert.ok(KEY_FILE_PBKDF2_ITERATIONS >= 600_000);
  const asn = openssl(["asn1parse", "-in", path]);
  assert.match(asn.stdout, /PBKDF2/);
  assert.match(asn.stdout, /hmacWithSHA256/);
  assert.match(asn.stdout, /INTEGER\s+:0927C0/, "600000 iterations");
  assert.doesNotMatch(asn.stdout, /cons: OCTET STRING/, "DER: the encrypted key is one primitive OCTET STRING");
  const p = openssl(["pkcs8", "-in", path, "-passin", "pass:correct horse"]);
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /BEGIN PRIVATE KEY/);
  const pub = openssl(["pkey", "-in", path, "-passin", "pass:correct horse", "-pubout", "-outform", "DER"]);
  assert.equal(pub.status, 0, pub.stderr);
  assert.deepEqual((await store.load("issuing")).spki, created.spki);
});

/** Key files as earlier releases (Node's export: OpenSSL's defaults) or other tools wrote them. */
const weakFiles: Array<[string, string, (plainPem: string, out: string) => void]> = [
  ["as earlier releases wrote them (OpenSSL's default: 2,048 iterations)", "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC 2048", (plain, out) => {
    writeFileSync(out, createPrivateKey(plain).export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "correct horse" }), { mode: 0o600 });
  }],
  ["with PBKDF2-HMAC-SHA1 and AES-128 (openssl -v2prf hmacWithSHA1)", "PBES2/PBKDF2-HMAC-SHA1/2.16.840.1.101.3.4.1.2 10000", (plain, out) => {
    const r = openssl(["pkcs8", "-topk8", "-out", out, "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1", "-iter", "10000", "-passout", "pass:correct horse"], Buffer.from(plain));
    assert.equal(r.status, 0, r.stderr);
  }],
  ["with scrypt (openssl -scrypt), which only OpenSSL reads", "unknown 0", (plain, out) => {
    const r = openssl(["pkcs8", "-topk8", "-out", out, "-scrypt", "-passout", "pass:correct horse"], Buffer.from(plain));
    assert.equal(r.status, 0, r.stderr);
  }],
];

for (const [name, found, write] of weakFiles) {
  test(`upgrades a key file written ${name}, and the key still works`, async () => {
    const dir = `${tmp.dir}/upgrade-${weakFiles.findIndex((w) => w[0] === name)}`;
    const store = new FileKeyStore(dir, "correct horse\n");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    write(privateKey.export({ type: "pkcs8", format: "pem" }) as string, store.pathOf("issuing"));
    const before = await store.protectionOf("issuing");
    assert.equal(`${before.scheme} ${before.iterations}`, found);
    const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
    assert.deepEqual((await store.load("issuing")).spki, spki, "the old file opens as it is");

    const done = await store.upgrade("issuing");
    assert.deepEqual(done?.from, before);
    assert.deepEqual(done?.to, { scheme: "PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC", iterations: KEY_FILE_PBKDF2_ITERATIONS });
    assert.deepEqual(await store.protectionOf("issuing"), done?.to);
    assert.equal(statSync(store.pathOf("issuing")).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ["issuing.key.pem"], "no temporary file left");
    const loaded = await store.load("issuing");
    assert.deepEqual(loaded.spki, spki, "the same key");
    const data = Buffer.from("signed after the upgrade");
    assert.ok(verify("sha256", data, { key: createPublicKey(privateKey), dsaEncoding: "der" }, await loaded.sign(data)));
    const p = openssl(["pkcs8", "-in", store.pathOf("issuing"), "-passin", "pass:correct horse"]);
    assert.equal(p.status, 0, p.stderr);
    const upgraded = readFileSync(store.pathOf("issuing"));
    assert.equal(await store.upgrade("issuing"), undefined, "a current file is left alone");
    assert.deepEqual(readFileSync(store.pathOf("issuing")), upgraded);
  });
}

test("a wrong passphrase gives CA_PASSPHRASE_WRONG and changes no key file, old or new", async () => {
  const dir = `${tmp.dir}/wrong`;
  const store = new FileKeyStore(dir, "correct horse");
  await store.create("root", "p256");
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  writeFileSync(store.pathOf("issuing"), privateKey.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "correct horse" }), { mode: 0o600 });
  const wrong = new FileKeyStore(dir, "incorrect horse");
  const before = { root: readFileSync(store.pathOf("root")), issuing: readFileSync(store.pathOf("issuing")) };
  await assert.rejects(wrong.load("root"), code("CA_PASSPHRASE_WRONG"));
  await assert.rejects(wrong.load("issuing"), code("CA_PASSPHRASE_WRONG"));
  // The weak file would be rewritten: it is decrypted first, and the wrong passphrase stops it.
  await assert.rejects(wrong.upgrade("issuing"), code("CA_PASSPHRASE_WRONG"));
  // The current file needs no rewrite, so nothing is decrypted.
  assert.equal(await wrong.upgrade("root"), undefined);
  assert.deepEqual(readFileSync(store.pathOf("root")), before.root, "root unchanged");
  assert.deepEqual(readFileSync(store.pathOf("issuing")), before.issuing, "issuing unchanged");
  assert.deepEqual(readdirSync(dir).sort(), ["issuing.key.pem", "root.key.pem"]);
});
