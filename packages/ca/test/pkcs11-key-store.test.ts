import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPublicKey, verify } from "node:crypto";
import { defaultProfile, isUkeyError } from "@ukey/policy";
import { buildCrl, derToPem, newSerial, Pkcs11KeyStore, crlPemLabel } from "../src/index.js";
import { caNow, epoch, makeTestCa, subjectKey, type TestCa } from "./support/hierarchy.js";
import { openssl, tempDir } from "./support/openssl.js";
import { createSoftHsmToken, type SoftHsmToken } from "./support/softhsm.js";

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const tmp = tempDir();
let token: SoftHsmToken;
let store: Pkcs11KeyStore;
let ca: TestCa;

before(async () => {
  token = createSoftHsmToken();
  // Before any successful login: the token itself must judge the PIN.
  assert.throws(() => new Pkcs11KeyStore({ module: token.module, token: token.tokenLabel, pin: "wrong-pin" }), code("HSM_PIN_INCORRECT"));
  store = new Pkcs11KeyStore({ module: token.module, token: token.tokenLabel, pin: token.pin });
  ca = await makeTestCa({ keyStore: store });
});
after(() => {
  store?.close();
  ca?.cleanup();
  token?.cleanup();
  tmp.cleanup();
});

const opts = () => ({ module: token.module, token: token.tokenLabel, pin: token.pin });

test("a hierarchy made on the HSM issues certificates and CRLs that openssl verifies", async () => {
  const builder = ca.builder();
  const der = await builder.sign(builder.buildTbs({
    serial: newSerial(), subject: { rdns: [["C", "CN"], ["CN", "HSM holder"]] }, spki: subjectKey("p256").spki,
    notBefore: caNow, notAfter: new Date("2027-03-01T00:00:00Z"), profile: defaultProfile,
  }));
  const root = tmp.write("root.pem", derToPem(ca.root.der, "CERTIFICATE"));
  const issuing = tmp.write("issuing.pem", derToPem(ca.issuing.der, "CERTIFICATE"));
  const leaf = tmp.write("leaf.pem", derToPem(der, "CERTIFICATE"));
  const v = openssl(["verify", "-x509_strict", "-attime", epoch(new Date("2025-06-01T00:00:00Z")), "-CAfile", root, "-untrusted", issuing, leaf]);
  assert.equal(v.status, 0, v.stdout + v.stderr);

  const crl = tmp.write("hsm.crl", derToPem(await buildCrl({
    issuer: ca.issuing, signer: ca.issuingSigner, number: 1, thisUpdate: caNow, nextUpdate: new Date("2025-03-08T00:00:00Z"),
    revoked: [{ serial: "0a0b", revokedAt: caNow, reason: "superseded" }],
  }), crlPemLabel));
  const c = openssl(["crl", "-in", crl, "-CAfile", issuing, "-noout"]);
  assert.match(c.stdout + c.stderr, /verify OK/);
});

test("keys stay on the token: sensitive, never extractable, sign only", async () => {
  for (const name of ["root", "issuing"]) {
    assert.deepEqual(await store.privateKeyAttributes(name), { sensitive: true, extractable: false, neverExtractable: true }, name);
  }
  // pkcs11-tool, a second opinion from outside this code, reads the same attributes off the token.
  const listed = spawnSync("pkcs11-tool", ["--module", token.module, "--token-label", token.tokenLabel, "--login", "--pin", token.pin,
    "--list-objects", "--type", "privkey"], { encoding: "utf8", env: process.env });
  assert.ok(!listed.error, `pkcs11-tool must be installed: ${listed.error?.message}`);
  for (const label of ["ukey-ca-root", "ukey-ca-issuing"]) {
    const block = listed.stdout.split("Private Key Object").find((b) => b.includes(`label:      ${label}\n`));
    assert.ok(block, `${label} is listed: ${listed.stdout}`);
    assert.match(block, /Usage:\s+sign\n/, `${label} can only sign`);
    assert.match(block, /Access:\s+sensitive, always sensitive, never extractable, local/, label);
  }
});

test("signs EC P-384 and RSA keys generated on the token, also many at once", async () => {
  const cases = [["p384-test", "p384", "sha384"], ["rsa-test", "rsa2048", "sha256"]] as const;
  for (const [name, algorithm, hash] of cases) {
    const signer = await store.create(name, algorithm);
    assert.equal(signer.algorithm, algorithm);
    const pub = createPublicKey({ key: signer.spki, format: "der", type: "spki" });
    const data = Array.from({ length: 12 }, (_, i) => Buffer.from(`message ${i} for ${name}`));
    // Concurrent calls share one session; the store must queue them.
    const sigs = await Promise.all(data.map((d) => signer.sign(d)));
    sigs.forEach((sig, i) => {
      const ok = verify(hash, data[i]!, algorithm === "p384" ? { key: pub, dsaEncoding: "der" } : pub, sig);
      assert.ok(ok, `${name} signature ${i}`);
    });
  }
});

test("a second store finds the keys by token label or serial", async () => {
  for (const tokenName of [token.tokenLabel, token.tokenSerial]) {
    const again = new Pkcs11KeyStore({ ...opts(), token: tokenName });
    try {
      const signer = await again.load("issuing");
      assert.deepEqual(signer.spki, ca.issuingSigner.spki);
      const sig = await signer.sign(Buffer.from("x"));
      assert.ok(verify("sha256", Buffer.from("x"), { key: createPublicKey({ key: signer.spki, format: "der", type: "spki" }), dsaEncoding: "der" }, sig));
    } finally {
      again.close();
    }
  }
});

test("HSM errors carry their catalogue codes", async () => {
  const table: Array<[string, () => Promise<unknown> | unknown, string]> = [
    ["wrong PIN while another store is logged in", () => new Pkcs11KeyStore({ ...opts(), pin: "not-the-pin" }), "HSM_PIN_INCORRECT"],
    ["unknown token", () => new Pkcs11KeyStore({ ...opts(), token: "no-such-token" }), "HSM_TOKEN_NOT_FOUND"],
    ["module that does not exist", () => new Pkcs11KeyStore({ ...opts(), module: "/nonexistent/libpkcs11.so" }), "HSM_MODULE_LOAD_FAILED"],
    ["unknown key", () => store.load("nope"), "HSM_KEY_NOT_FOUND"],
    ["key that exists", () => store.create("issuing", "p256"), "CA_ALREADY_INITIALISED"],
  ];
  for (const [name, fn, want] of table) {
    await assert.rejects(async () => fn(), code(want), name);
  }
  const closed = new Pkcs11KeyStore(opts());
  const signer = await closed.load("root");
  closed.close();
  closed.close();
  await assert.rejects(signer.sign(Buffer.from("x")), code("HSM_OPERATION_FAILED"));
});
