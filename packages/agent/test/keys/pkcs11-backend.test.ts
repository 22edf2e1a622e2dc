import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createPublicKey, verify } from "node:crypto";
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isUkeyError } from "@ukey/policy";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { CK, Pkcs11Error } from "../../src/keys/cryptoki.js";
import { Pkcs11Backend, pkcs11ErrorToUkey } from "../../src/keys/pkcs11-backend.js";
import { vendorOf } from "../../src/keys/token-vendor.js";
import { objectLabels, type TokenSession } from "../../src/keys/key-store.js";
import { OpenSslCa, run, tempDir } from "./support/openssl.js";
import { rejectsWith } from "../support/refusals.js";

// One SoftHSM2 configuration for the file: SoftHSM2 reads SOFTHSM2_CONF at
// C_Initialize, and the module is loaded once per process.
let hsm: SoftHsmToken;
let tmp: { dir: string; cleanup(): void };
let ca: OpenSslCa;

before(() => {
  hsm = createSoftHsmToken("agent-keys", "123456", "654321");
  tmp = tempDir();
  ca = new OpenSslCa(tmp.dir);
});
after(() => {
  hsm.cleanup();
  tmp.cleanup();
});

/** Another token in the same SoftHSM2 configuration; returns its serial. */
function addToken(label: string, pin = "123456", soPin = "654321"): string {
  run("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPin]);
  const block = run("softhsm2-util", ["--show-slots"]).split(/Token info:/).find((b) => new RegExp(`Label:\\s+${label}\\s*$`, "m").test(b));
  const serial = block && /Serial number:\s+(\S+)/.exec(block)?.[1];
  if (!serial) throw new Error(`no serial for ${label}`);
  return serial;
}

async function withSession<T>(serial: string, pin: string, fn: (s: TokenSession, b: Pkcs11Backend) => Promise<T>): Promise<T> {
  const backend = new Pkcs11Backend(hsm.module);
  const s = await backend.open(serial, pin);
  try {
    return await fn(s, backend);
  } finally {
    await s.close();
    await backend.close();
  }
}

/** pkcs11-tool's view of the private key objects (logged in). */
function privateKeyDump(serial: string, pin: string): string {
  return run("pkcs11-tool", ["--module", hsm.module, "--token-label", tokenLabelOf(serial), "--login", "--pin", pin, "-O", "--type", "privkey"]);
}
function tokenLabelOf(serial: string): string {
  const block = run("softhsm2-util", ["--show-slots"]).split(/Token info:/).find((b) => new RegExp(`Serial number:\\s+${serial}\\s*$`, "m").test(b));
  return /Label:\s+(.*\S)\s*$/m.exec(block ?? "")?.[1] ?? "";
}

describe("PKCS#11 backend on SoftHSM2", () => {
  test("lists the token with serial, label, manufacturer, model and PIN flags", async () => {
    const backend = new Pkcs11Backend(hsm.module);
    try {
      const tokens = await backend.listTokens();
      const t = tokens.find((x) => x.serial === hsm.tokenSerial);
      assert.ok(t, JSON.stringify(tokens));
      assert.equal(t.label, "agent-keys");
      assert.equal(t.manufacturer, "SoftHSM project");
      assert.equal(t.model, "SoftHSM v2");
      assert.equal(t.backend, "pkcs11");
      assert.equal(t.pin.initialized, true);
      assert.equal(t.pin.locked, false);
      // SoftHSM2 reports CK_UNAVAILABLE_INFORMATION for memory.
      assert.equal(t.freePublicMemory, undefined);
      assert.equal(t.freePrivateMemory, undefined);
      // The empty slot SoftHSM2 always offers has no serial and is left out.
      assert.ok(tokens.every((x) => x.serial !== ""));
      assert.equal(vendorOf(t)?.id, "pkcs11-softhsm2");
      assert.equal(backend.kind, "pkcs11");
      assert.equal(backend.location, hsm.module);
    } finally {
      await backend.close();
    }
  });

  test("refuses a wrong PIN and an absent token", async () => {
    const backend = new Pkcs11Backend(hsm.module);
    try {
      await assert.rejects(backend.open(hsm.tokenSerial, "wrong99"), (e: unknown) => {
        assert.ok(isUkeyError(e, "TOKEN_PIN_INCORRECT"));
        assert.equal(e.params.pin, "user");
        return true;
      });
      await rejectsWith(backend.open("0000000000000000", "123456"), "TOKEN_NOT_PRESENT");
      // The failed attempt left no session or lock behind: the right PIN opens it.
      const s = await backend.open(hsm.tokenSerial, "123456");
      await s.close();
    } finally {
      await backend.close();
    }
  });

  test("generates P-256 and RSA-2048 keys that are sensitive and never extractable, and signs with them", async () => {
    await withSession(hsm.tokenSerial, "123456", async (s) => {
      const ec = await s.generateKeyPair("p256", "keygen-ec");
      const rsa = await s.generateKeyPair("rsa2048", "keygen-rsa", "0a0b0c");
      assert.equal(ec.algorithm, "p256");
      assert.equal(ec.id.length, 40);
      assert.equal(rsa.id, "0a0b0c");
      assert.equal(createPublicKey({ key: Buffer.from(rsa.spki), format: "der", type: "spki" }).asymmetricKeyDetails?.modulusLength, 2048);
      const data = Buffer.from("challenge from the server");
      const ecSig = await s.sign(ec.id, data);
      const rsaSig = await s.sign(rsa.id, data);
      assert.ok(verify("sha256", data, createPublicKey({ key: Buffer.from(ec.spki), format: "der", type: "spki" }), ecSig));
      assert.ok(verify("sha256", data, createPublicKey({ key: Buffer.from(rsa.spki), format: "der", type: "spki" }), rsaSig));
      const keys = await s.listKeys();
      assert.deepEqual(keys.filter((k) => k.label.startsWith("keygen-")).map((k) => [k.label, k.algorithm]).sort(),
        [["keygen-ec", "p256"], ["keygen-rsa", "rsa2048"]]);
      await rejectsWith(s.sign("ffee", data), "TOKEN_KEY_NOT_FOUND");
      await rejectsWith(s.generateKeyPair("p256", "again", "0a0b0c"), "TOKEN_OPERATION_FAILED");
    });
    // pkcs11-tool (OpenSC) reads the attributes from the token itself.
    const dump = privateKeyDump(hsm.tokenSerial, "123456");
    for (const label of ["keygen-ec", "keygen-rsa"]) {
      const block = dump.split(/Private Key Object/).find((b) => new RegExp(`label:\\s+${label}\\s*$`, "m").test(b));
      assert.ok(block, dump);
      const access = /Access:\s+(.*)$/m.exec(block)?.[1] ?? "";
      assert.match(access, /\bsensitive\b/, block);
      assert.match(access, /never extractable/, block);
      assert.doesNotMatch(access, /(^|, )extractable/, block);
      assert.match(block, /Usage:.*\bsign\b/, block);
    }
  });

  test("makes CSRs on the token that openssl verifies", async () => {
    await withSession(hsm.tokenSerial, "123456", async (s) => {
      for (const [algorithm, subject, expected] of [
        ["p256", "CN=Zhang San, O=Example Bank", /subject=CN = Zhang San, O = Example Bank/],
        ["p384", "/CN=Li Si", /subject=CN = Li Si/],
        ["rsa2048", "", /subject=\s*$/m],
        ["rsa3072", "CN=Zhao Liu, serialNumber=110101199001011234, C=CN", /subject=CN = Zhao Liu, serialNumber = 110101199001011234, C = CN/],
      ] as const) {
        const key = await s.generateKeyPair(algorithm, `csr-${algorithm}`);
        const pem = await s.createCsr(key.id, subject);
        const file = join(tmp.dir, `csr-${algorithm}.pem`);
        writeFileSync(file, pem);
        const out = run("openssl", ["req", "-in", file, "-verify", "-noout", "-subject", "-pubkey"]);
        assert.match(out, expected);
        // The CSR carries the token's key.
        const pub = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(out)![0];
        assert.deepEqual(createPublicKey(pub).export({ format: "der", type: "spki" }), Buffer.from(key.spki));
      }
      await rejectsWith(s.createCsr("abcd"), "TOKEN_KEY_NOT_FOUND");
    });
  });

  test("installs a certificate beside its key, reads it back, and stores it once", async () => {
    await withSession(hsm.tokenSerial, "123456", async (s, backend) => {
      const key = await s.generateKeyPair("p256", objectLabels.pending("order-1"));
      // A serial whose first digit is 0: serialHex keeps it, as the server writes serials (whole bytes).
      const der = ca.issue(await s.createCsr(key.id), "0a1b2c3d4e5f");
      const cert = await s.installCertificate(der, key.id, objectLabels.current("0a1b2c3d4e5f"));
      assert.equal(cert.serialHex, "0a1b2c3d4e5f");
      assert.equal(cert.subject, "CN=Zhang San, O=Example Bank");
      assert.equal(cert.issuer, "CN=Test Agent CA");
      assert.equal(cert.hasKey, true);
      assert.equal(cert.id, key.id);
      assert.ok(cert.notAfter > cert.notBefore);
      const again = await s.installCertificate(der, key.id, objectLabels.current("0a1b2c3d4e5f"));
      assert.deepEqual(again.der, cert.der);
      const listed = (await s.listCertificates()).filter((c) => c.serialHex === "0a1b2c3d4e5f");
      assert.equal(listed.length, 1, "stored once");
      assert.equal(listed[0]!.hasKey, true);
      assert.deepEqual(Buffer.from(listed[0]!.der), der);
      assert.equal(listed[0]!.label, "ukey-renew 0a1b2c3d4e5f");
      // pkcs11-tool sees the certificate object with the key's id.
      const dump = run("pkcs11-tool", ["--module", hsm.module, "--token-label", "agent-keys", "-O", "--type", "cert"]);
      assert.match(dump, new RegExp(`ID:\\s+${key.id}`));
      // Without the PIN: public objects only, the public key matches.
      await s.close();
      const pub = (await backend.listCertificates(hsm.tokenSerial)).filter((c) => c.serialHex === "0a1b2c3d4e5f");
      assert.equal(pub.length, 1);
      assert.equal(pub[0]!.hasKey, true);
      const withPin = (await backend.listCertificates(hsm.tokenSerial, "123456")).filter((c) => c.serialHex === "0a1b2c3d4e5f");
      assert.equal(withPin[0]!.hasKey, true);
    });
  });

  test("refuses a certificate for another key and leaves nothing behind", async () => {
    await withSession(hsm.tokenSerial, "123456", async (s) => {
      const mine = await s.generateKeyPair("p256", "mismatch-mine");
      const other = await s.generateKeyPair("p256", "mismatch-other");
      const der = ca.issue(await s.createCsr(other.id), "77");
      const before = (await s.listCertificates()).length;
      await rejectsWith(s.installCertificate(der, mine.id, "wrong"), "CERT_KEY_MISMATCH");
      assert.equal((await s.listCertificates()).length, before);
      await rejectsWith(s.installCertificate(Buffer.from("not a certificate"), mine.id, "x"), "DER_MALFORMED");
      await rejectsWith(s.installCertificate(der, "12345678", "x"), "TOKEN_KEY_NOT_FOUND");
      assert.equal((await s.listCertificates()).length, before);
    });
  });

  test("relabels and deletes the objects of an id", async () => {
    await withSession(hsm.tokenSerial, "123456", async (s) => {
      const key = await s.generateKeyPair("p256", objectLabels.pending("order-2"));
      const c = await s.installCertificate(ca.issue(await s.createCsr(key.id), "0102"), key.id, objectLabels.pending("order-2"));
      assert.equal(c.serialHex, "0102");
      await s.relabel(key.id, objectLabels.current(c.serialHex));
      assert.equal((await s.listKeys()).find((k) => k.id === key.id)?.label, "ukey-renew 0102");
      assert.equal((await s.listCertificates()).find((x) => x.id === key.id)?.label, "ukey-renew 0102");
      await rejectsWith(s.relabel("eeeeee", "x"), "TOKEN_KEY_NOT_FOUND");
      await s.deleteObjects([key.id, "eeeeee"]);
      assert.equal((await s.listKeys()).find((k) => k.id === key.id), undefined);
      assert.equal((await s.listCertificates()).find((c) => c.id === key.id), undefined);
      const dump = privateKeyDump(hsm.tokenSerial, "123456");
      assert.doesNotMatch(dump, new RegExp(key.id));
      await rejectsWith(s.deleteObjects(["not hex"]), "REQUEST_INVALID");
    });
  });

  test("changes the PIN, refusing a weak new PIN and a wrong old one with nothing changed", async () => {
    const serial = addToken("agent-pin");
    await withSession(serial, "123456", async (s) => {
      for (const weak of ["12345", "abc de1", "密码123456", "123-456"]) await rejectsWith(s.changePin("123456", weak), "PIN_TOO_WEAK");
      await rejectsWith(s.changePin("999999", "abcdef12"), "TOKEN_PIN_INCORRECT");
      await s.changePin("123456", "Abc12345");
    });
    const backend = new Pkcs11Backend(hsm.module);
    try {
      await rejectsWith(backend.open(serial, "123456"), "TOKEN_PIN_INCORRECT");
      await (await backend.open(serial, "Abc12345")).close();
    } finally {
      await backend.close();
    }
  });

  test("initialises a token with the SO PIN, then finds it again by serial", async () => {
    const serial = addToken("agent-init");
    await withSession(serial, "123456", async (s) => { await s.generateKeyPair("p256", "to be wiped"); });
    const backend = new Pkcs11Backend(hsm.module);
    try {
      await rejectsWith(backend.initToken(serial, "654321", "12345"), "PIN_TOO_WEAK");
      await rejectsWith(backend.initToken(serial, "000000", "newpin99"), "TOKEN_PIN_INCORRECT");
      // Refused attempts changed nothing: the old PIN and key are still there.
      let s = await backend.open(serial, "123456");
      assert.equal((await s.listKeys()).length, 1);
      await s.close();
      const token = await backend.initToken(serial, "654321", "newpin99", "agent-fresh");
      assert.equal(token.serial, serial);
      assert.equal(token.label, "agent-fresh");
      assert.equal(token.pin.initialized, true);
      assert.ok((await backend.listTokens()).some((t) => t.serial === serial && t.label === "agent-fresh"));
      await rejectsWith(backend.open(serial, "123456"), "TOKEN_PIN_INCORRECT");
      s = await backend.open(serial, "newpin99");
      assert.deepEqual(await s.listKeys(), []);
      assert.deepEqual(await s.listCertificates(), []);
      await s.close();
      await rejectsWith(backend.initToken("ffffffffffffffff", "654321", "newpin99"), "TOKEN_NOT_PRESENT");
    } finally {
      await backend.close();
    }
  });

  test("PKCS#11 failures the token cannot be made to show here map to holder-facing codes", () => {
    // SoftHSM2 has no storage limit and cannot be pulled out, so these
    // return values are given to the mapping as the binding reports them.
    const p11 = (name: keyof typeof CK) => new Pkcs11Error("C_Test", CK[name]);
    for (const [name, op, code] of [
      ["CKR_DEVICE_MEMORY", undefined, "TOKEN_STORAGE_FULL"],
      ["CKR_DEVICE_MEMORY", "TOKEN_KEYGEN_FAILED", "TOKEN_STORAGE_FULL"],
      ["CKR_DEVICE_REMOVED", undefined, "TOKEN_REMOVED_DURING_OPERATION"],
      ["CKR_TOKEN_NOT_PRESENT", "TOKEN_KEYGEN_FAILED", "TOKEN_REMOVED_DURING_OPERATION"],
      ["CKR_SESSION_HANDLE_INVALID", undefined, "TOKEN_REMOVED_DURING_OPERATION"],
      ["CKR_FUNCTION_FAILED", "TOKEN_KEYGEN_FAILED", "TOKEN_KEYGEN_FAILED"],
      ["CKR_FUNCTION_FAILED", undefined, "TOKEN_OPERATION_FAILED"],
    ] as const) {
      const e = p11(name);
      assert.equal(e.code, CK[name], name);
      const mapped = pkcs11ErrorToUkey(e, "generate a key pair", op);
      assert.equal(mapped.code, code, `${name} ${op ?? ""}`);
      assert.match(mapped.detail ?? "", new RegExp(name));
    }
  });

  test("a path that is not a PKCS#11 library gets a catalogue code", () => {
    for (const [path, code] of [
      ["/bin/ls", "HSM_MODULE_LOAD_FAILED"],
      ["/usr/lib/x86_64-linux-gnu/libc.so.6", "HSM_MODULE_LOAD_FAILED"],
      [join(tmp.dir, "no-such-module.so"), "TOKEN_DRIVER_MISSING"],
    ] as const) {
      assert.throws(() => new Pkcs11Backend(path), (e: unknown) => {
        assert.ok(isUkeyError(e, code), `${path}: ${String(e)}`);
        return true;
      });
    }
  });

  test("operations on one token are serialised: overlapping calls on a session and a second open", async () => {
    const backend = new Pkcs11Backend(hsm.module);
    try {
      const s = await backend.open(hsm.tokenSerial, "123456");
      // Two key generations and signatures with both keys, all started at
      // once. On one PKCS#11 session a second C_SignInit while a signature
      // is running fails (CKR_OPERATION_ACTIVE) or signs with the wrong key.
      const [a, b] = await Promise.all([s.generateKeyPair("rsa2048", "conc-a"), s.generateKeyPair("p256", "conc-b")]);
      const data = Buffer.alloc(50_000, 7);
      const jobs: Promise<[string, Uint8Array]>[] = [];
      for (let i = 0; i < 6; i++) {
        jobs.push(s.sign(a.id, data).then((sig) => [a.id, sig]));
        jobs.push(s.sign(b.id, data).then((sig) => [b.id, sig]));
        if (i % 3 === 0) jobs.push(s.generateKeyPair("p256", `conc-${i}`).then((k) => [k.id, new Uint8Array()]));
      }
      const spki = new Map([[a.id, a.spki], [b.id, b.spki]]);
      for (const [id, sig] of await Promise.all(jobs)) {
        if (!spki.has(id)) continue;
        assert.ok(verify("sha256", data, createPublicKey({ key: Buffer.from(spki.get(id)!), format: "der", type: "spki" }), sig), `signature of ${id}`);
      }
      // A second open waits until the first session closes.
      const order: string[] = [];
      const second = backend.open(hsm.tokenSerial, "123456").then((x) => { order.push("second opened"); return x; });
      await new Promise((r) => setImmediate(r));
      await s.listKeys();
      order.push("first closing");
      await s.close();
      const s2 = await second;
      assert.deepEqual(order, ["first closing", "second opened"]);
      await s2.deleteObjects((await s2.listKeys()).filter((k) => k.label.startsWith("conc-")).map((k) => k.id));
      await s2.close();
      await rejectsWith(s2.listKeys(), "TOKEN_OPERATION_FAILED");
    } finally {
      await backend.close();
    }
  });

  test("a closed backend finalises the module and can be loaded again", async () => {
    const one = new Pkcs11Backend(hsm.module);
    const two = new Pkcs11Backend(hsm.module);
    await one.close();
    assert.ok((await two.listTokens()).length > 0, "the module stays loaded while another backend uses it");
    await two.close();
    await rejectsWith(two.listTokens(), "TOKEN_OPERATION_FAILED");
    const three = new Pkcs11Backend(hsm.module);
    assert.ok((await three.listTokens()).some((t) => t.serial === hsm.tokenSerial));
    // Another name of the same library shares its one initialisation: closing it does not finalise the other.
    const link = join(tmp.dir, "module-link.so");
    symlinkSync(hsm.module, link);
    const four = new Pkcs11Backend(link);
    assert.equal(four.location, link);
    await four.close();
    assert.ok((await three.listTokens()).some((t) => t.serial === hsm.tokenSerial));
    await three.close();
  });

});
