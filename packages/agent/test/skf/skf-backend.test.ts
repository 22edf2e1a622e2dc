import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { isUkeyError } from "@ukey/policy";
import { buildEnvelopedKeyBlob, sm2GenerateKeyPair } from "@ukey/ca";
import { SkfBackend } from "../../src/keys/skf-backend.js";
import { sm2PointOfSpki } from "../../src/keys/sm2.js";
import { openSoftkeyBackend, type SoftkeyDir } from "./support/softkey.js";
import { isRefusal } from "../support/refusals.js";

// Issue 15: the agent's SKF (GM/T 0016) key store over koffi, against
// skf-softkey, the project's software stand-in for a vendor's SKF library.

const USER_PIN = "12345678";
const ADMIN_PIN = "88888888";
const DEV_AUTH_KEY = Buffer.from("1234567812345678");
const DISTID = "distid:1234567812345678";

let keys: SoftkeyDir;
let backend: SkfBackend;
const work = mkdtempSync(join(tmpdir(), "ukey-skf-backend-"));

let close: (() => Promise<void>) | undefined;

before(async () => {
  ({ keys, backend, close } = await openSoftkeyBackend());
});
after(async () => {
  await close?.();
  rmSync(work, { recursive: true, force: true });
});


function openssl(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8", input, cwd: work });
  if (r.error) throw new Error(`openssl cannot run (install the openssl package): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Checks an SM2 CSR's signature with the OpenSSL CLI over its CertificationRequestInfo, with the ID `distid`. */
function opensslVerifiesCsr(csrPem: string, distid: string): boolean {
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64");
  const csr = AsnConvert.parse(der, CertificationRequest);
  const info = Buffer.from(AsnConvert.serialize(csr.certificationRequestInfo));
  const name = `csr-${Math.random().toString(16).slice(2)}`;
  writeFileSync(join(work, `${name}.info`), info);
  writeFileSync(join(work, `${name}.sig`), Buffer.from(csr.signature));
  writeFileSync(join(work, `${name}.pem`), csrPem);
  const pub = openssl(["req", "-in", `${name}.pem`, "-noout", "-pubkey"]);
  assert.equal(pub.status, 0, pub.stderr);
  writeFileSync(join(work, `${name}.pub`), pub.stdout);
  const r = openssl(["dgst", "-sm3", "-verify", `${name}.pub`, "-sigopt", distid, "-signature", `${name}.sig`, `${name}.info`]);
  return r.status === 0 && /Verified OK/.test(r.stdout);
}

/** An SM2 CA made by the OpenSSL CLI, and a certificate from it for `spkiPem`'s key. */
function issueWithOpenssl(csrPem: string, serial: string, forcePubkeyPem?: string): Buffer {
  if (!existsSync(join(work, "ca.pem"))) {
    assert.equal(openssl(["ecparam", "-name", "SM2", "-genkey", "-noout", "-out", "ca.key"]).status, 0);
    const r = openssl(["req", "-new", "-x509", "-key", "ca.key", "-sm3", "-sigopt", DISTID, "-subj", "/CN=Test SM2 CA", "-days", "30", "-out", "ca.pem"]);
    assert.equal(r.status, 0, r.stderr);
  }
  writeFileSync(join(work, "leaf.csr"), csrPem);
  const args = ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-sm3", "-sigopt", DISTID, "-vfyopt", DISTID,
    "-set_serial", serial, "-days", "30", "-outform", "DER", "-out", "leaf.der"];
  if (forcePubkeyPem) {
    writeFileSync(join(work, "force.pub"), forcePubkeyPem);
    args.push("-force_pubkey", "force.pub");
  }
  const r = openssl(args);
  assert.equal(r.status, 0, r.stderr);
  return Buffer.from(spawnSync("cat", [join(work, "leaf.der")]).stdout);
}

const spkiPem = (spki: Uint8Array) => `-----BEGIN PUBLIC KEY-----\n${Buffer.from(spki).toString("base64").replace(/.{1,64}/g, "$&\n")}-----END PUBLIC KEY-----\n`;

test("lists the software keys with their serial, label, vendor and PIN tries", async () => {
  keys.create("list-a", { serial: "PF20FA0000000001", label: "Zhang San", manufacturer: "Soft Feitian", userRetries: 6 });
  keys.create("list-b", { serial: "2100000000000002", label: "Li Si" });
  try {
    const tokens = await backend.listTokens();
    const a = tokens.find((t) => t.serial === "PF20FA0000000001");
    const b = tokens.find((t) => t.serial === "2100000000000002");
    assert.ok(a && b, JSON.stringify(tokens));
    assert.equal(a.backend, "skf");
    assert.equal(a.label, "Zhang San");
    assert.equal(a.manufacturer, "Soft Feitian");
    assert.deepEqual({ ...a.pin, minLength: undefined }, {
      initialized: true, locked: false, countLow: false, finalTry: false, toBeChanged: a.pin.toBeChanged, triesLeft: 6, minLength: undefined,
    });
    keys.unplug("list-b");
    assert.equal((await backend.listTokens()).some((t) => t.serial === "2100000000000002"), false, "an unplugged key is not listed");
    await assert.rejects(backend.open("2100000000000002", USER_PIN), isRefusal("TOKEN_NOT_PRESENT"));
  } finally {
    keys.remove("list-a");
    keys.plug("list-b");
    keys.remove("list-b");
  }
});

test("a wrong PIN tells the tries left, the last one locks, and the admin PIN unblocks it", async () => {
  keys.create("pin", { serial: "SKFPIN0001", userRetries: 3 });
  try {
    await assert.rejects(backend.open("SKFPIN0001", "00000000"), isRefusal("TOKEN_PIN_INCORRECT", { triesLeft: 2, pin: "user" }));
    await assert.rejects(backend.open("SKFPIN0001", "00000001"), isRefusal("TOKEN_PIN_INCORRECT", { triesLeft: 1 }));
    assert.equal((await backend.listTokens()).find((t) => t.serial === "SKFPIN0001")?.pin.finalTry, true);
    await assert.rejects(backend.open("SKFPIN0001", "00000002"), isRefusal("TOKEN_PIN_LOCKED"));
    await assert.rejects(backend.open("SKFPIN0001", USER_PIN), isRefusal("TOKEN_PIN_LOCKED"), "the right PIN does not open a locked key");
    assert.equal((await backend.listTokens()).find((t) => t.serial === "SKFPIN0001")?.pin.locked, true);
    await assert.rejects(backend.unblockPin("SKFPIN0001", "11111111", "abc123456"), isRefusal("TOKEN_PIN_INCORRECT", { pin: "admin" }));
    await assert.rejects(backend.unblockPin("SKFPIN0001", ADMIN_PIN, "12 34"), isRefusal("PIN_TOO_WEAK"));
    const after = await backend.unblockPin("SKFPIN0001", ADMIN_PIN, "abc123456");
    assert.equal(after.pin.locked, false);
    assert.equal(after.pin.triesLeft, 3);
    const s = await backend.open("SKFPIN0001", "abc123456");
    await s.changePin("abc123456", "xyz987654");
    await assert.rejects(s.changePin("abc123456", "qqq111222"), isRefusal("TOKEN_PIN_INCORRECT", { triesLeft: 2 }));
    await s.close();
    await (await backend.open("SKFPIN0001", "xyz987654")).close();
  } finally {
    keys.remove("pin");
  }
});

test("an SM2 key made in a container signs a CSR that OpenSSL verifies with the standard ID; its certificates and envelope go into the container", async () => {
  keys.create("gen", { serial: "SKFGEN0001" });
  try {
    const s = await backend.open("SKFGEN0001", USER_PIN);
    try {
      // Not a pending label: its mark container (skf-pair-bad-input.test.ts) would be a second container here.
      const key = await s.generateKeyPair("sm2", "issuing");
      assert.equal(key.algorithm, "sm2");
      const point = sm2PointOfSpki(key.spki)!;
      assert.ok(point);
      const shown = keys.show("gen").applications[0]!.containers;
      assert.equal(shown.length, 1);
      assert.equal(shown[0]!.signPublicKey, point.toString("hex"), "the key the agent reports is the one in the container");
      assert.deepEqual((await s.listKeys()).map((k) => k.id), [key.id]);

      const csr = await s.createCsr(key.id, "CN=Zhang San, O=Example Bank, C=CN");
      assert.equal(opensslVerifiesCsr(csr, DISTID), true, "OpenSSL verifies the CSR with distid 1234567812345678");
      assert.equal(opensslVerifiesCsr(csr, "distid:1234567812345679"), false, "and not with another ID (the check can fail)");

      // The signing certificate, issued by an SM2 CA made with the OpenSSL CLI.
      const cert = issueWithOpenssl(csr, "0x0a1b");
      const installed = await s.installCertificate(cert, key.id, "ukey-renew 0a1b");
      assert.equal(installed.serialHex, "0a1b");
      assert.ok(Buffer.from(keys.show("gen").applications[0]!.containers[0]!.signCertificate, "hex").equals(cert), "stored as the signing certificate");
      const listed = await s.listCertificates();
      assert.equal(listed.length, 1);
      assert.ok(Buffer.from(listed[0]!.der).equals(cert));
      assert.equal(listed[0]!.hasKey, true);
      assert.equal(listed[0]!.id, key.id);

      // The encryption key pair, enveloped by packages/ca for this container's signing key.
      const enc = sm2GenerateKeyPair();
      const imported = await s.importEnvelopedKey!(key.id, buildEnvelopedKeyBlob(enc, point));
      assert.ok(sm2PointOfSpki(imported.spki)!.equals(enc.publicKey), "the imported key is the envelope's");
      assert.equal(keys.show("gen").applications[0]!.containers[0]!.encPublicKey, enc.publicKey.toString("hex"));
      // An envelope made for another holder's key cannot be opened by this one, and changes nothing.
      const other = sm2GenerateKeyPair();
      await assert.rejects(s.importEnvelopedKey!(key.id, buildEnvelopedKeyBlob(sm2GenerateKeyPair(), other.publicKey)), (e: unknown) => isUkeyError(e) && e.code !== "TOKEN_OPERATION_FAILED" || assert.fail(String(e)));
      assert.equal(keys.show("gen").applications[0]!.containers[0]!.encPublicKey, enc.publicKey.toString("hex"), "the encryption key is unchanged");

      // The encryption certificate lands in the encryption half.
      const encCert = issueWithOpenssl(csr, "0x0a1c", spkiPem(imported.spki));
      await s.installCertificate(encCert, key.id, "enc");
      const c = keys.show("gen").applications[0]!.containers[0]!;
      assert.ok(Buffer.from(c.encCertificate, "hex").equals(encCert));
      assert.ok(Buffer.from(c.signCertificate, "hex").equals(cert), "the signing certificate is untouched");
      assert.deepEqual((await s.listCertificates()).map((x) => [x.serialHex, x.hasKey]), [["0a1b", true], ["0a1c", true]]);

      // A certificate for neither key is refused.
      const stranger = issueWithOpenssl(csr, "0x0a1d", spkiPem(Buffer.concat([Buffer.from("3059301306072a8648ce3d020106082a811ccf5501822d034200", "hex"), other.publicKey])));
      await assert.rejects(s.installCertificate(stranger, key.id, "x"), isRefusal("CERT_KEY_MISMATCH"));

      // Without the PIN (a session of its own, once this one is closed): the same view.
      await s.close();
      assert.deepEqual((await backend.listCertificates("SKFGEN0001")).map((x) => [x.id, x.serialHex, x.hasKey]), [[key.id, "0a1b", true], [key.id, "0a1c", true]]);
      const again = await backend.open("SKFGEN0001", USER_PIN);
      await again.deleteObjects([key.id, key.id]);
      await again.close();
      assert.deepEqual(keys.show("gen").applications[0]!.containers, []);
      await assert.rejects(s.sign(key.id, Buffer.from("x")), isRefusal("TOKEN_OPERATION_FAILED"), "a closed session signs nothing");
    } finally {
      await s.close();
    }
  } finally {
    keys.remove("gen");
  }
});

test("a library that is not SKF, or lacks a function, is refused with its own code", async () => {
  const libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"].find(existsSync);
  assert.ok(libc, "libc.so.6 not found");
  await assert.rejects(SkfBackend.open(libc), isRefusal("SKF_LIBRARY_INVALID"));
  const softhsm = ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"].find(existsSync);
  assert.ok(softhsm, "SoftHSM2 is not installed (scripts/ensure-system-deps.sh installs it)");
  await assert.rejects(SkfBackend.open(softhsm), isRefusal("SKF_LIBRARY_INVALID"));
  const text = join(work, "not-a-library.so");
  writeFileSync(text, "not a library\n");
  await assert.rejects(SkfBackend.open(text), isRefusal("SKF_LIBRARY_INVALID"));
  await assert.rejects(SkfBackend.open(join(work, "absent.so")), isRefusal("TOKEN_DRIVER_MISSING"));
  // An SKF library without SKF_ImportECCKeyPair: two functions, built here.
  const src = join(work, "partial.c");
  writeFileSync(src, "unsigned int SKF_EnumDev(int p, char *l, unsigned int *n) { (void)p; (void)l; *n = 0; return 0; }\n"
    + "unsigned int SKF_ConnectDev(const char *n, void **h) { (void)n; (void)h; return 0x0A000023; }\n");
  const so = join(work, "libpartial-skf.so");
  const cc = spawnSync("gcc", ["-shared", "-fPIC", "-o", so, src], { encoding: "utf8" });
  assert.equal(cc.status, 0, `gcc (installed by ensure-skf-softkey.sh): ${cc.stderr}${cc.error?.message ?? ""}`);
  await assert.rejects(SkfBackend.open(so), isRefusal("SKF_FUNCTION_MISSING", { function: "SKF_DisConnectDev" }));
});

test("initialisation: device authentication first, then a new application; the forgotten-PIN path erases the containers", async () => {
  keys.create("blank", { serial: "SKFINIT001", app: null });
  try {
    const t = (await backend.listTokens()).find((x) => x.serial === "SKFINIT001");
    assert.equal(t?.pin.initialized, false);
    await assert.rejects(backend.open("SKFINIT001", USER_PIN), isRefusal("TOKEN_NOT_INITIALISED"));
    await assert.rejects(backend.initialiseDevice("SKFINIT001", { devAuthKey: Buffer.alloc(16, 1), adminPin: ADMIN_PIN, userPin: "first1234" }),
      isRefusal("TOKEN_DEVICE_AUTH_FAILED"));
    assert.deepEqual(keys.show("blank").applications, [], "nothing was created");
    const info = await backend.initialiseDevice("SKFINIT001", { devAuthKey: DEV_AUTH_KEY, adminPin: ADMIN_PIN, userPin: "first1234" });
    assert.equal(info.pin.initialized, true);
    assert.deepEqual(keys.show("blank").applications.map((a) => a.name), ["UKEY-RENEW"]);
    const s = await backend.open("SKFINIT001", "first1234");
    await s.generateKeyPair("sm2", "k");
    await s.close();
    // Forgotten user PIN: the admin PIN erases the containers and sets a new one.
    await assert.rejects(backend.initToken("SKFINIT001", "00000000", "second123"), isRefusal("TOKEN_PIN_INCORRECT", { pin: "admin" }));
    assert.equal(keys.show("blank").applications[0]!.containers.length, 1, "a wrong admin PIN changes nothing");
    await backend.initToken("SKFINIT001", ADMIN_PIN, "second123");
    assert.deepEqual(keys.show("blank").applications[0]!.containers, []);
    await (await backend.open("SKFINIT001", "second123")).close();
  } finally {
    keys.remove("blank");
  }
});

test("the key's button: refused is TOKEN_CONFIRMATION_CANCELLED, not pressed in time TOKEN_CONFIRMATION_TIMEOUT, and the agent keeps running while it waits", async () => {
  keys.create("button", { serial: "SKFBTN0001", buttonTimeoutMs: 300 });
  try {
    const s = await backend.open("SKFBTN0001", USER_PIN);
    try {
      const key = await s.generateKeyPair("sm2", "k");
      keys.button("button", "refuse");
      await assert.rejects(s.sign(key.id, Buffer.from("data")), isRefusal("TOKEN_CONFIRMATION_CANCELLED"));
      keys.button("button", "timeout");
      await assert.rejects(s.sign(key.id, Buffer.from("data")), isRefusal("TOKEN_CONFIRMATION_TIMEOUT"));
      keys.button("button", "wait");
      let settled = false;
      const pending = s.sign(key.id, Buffer.from("data")).finally(() => { settled = true; });
      // While the key waits for its button, the agent's event loop is free (the call runs on koffi's worker thread).
      let ticks = 0;
      const timer = setInterval(() => { ticks++; }, 10);
      await new Promise((r) => setTimeout(r, 150));
      clearInterval(timer);
      assert.equal(settled, false, "the signature waits for the button");
      assert.ok(ticks >= 5, `the event loop ran while the key waited (${ticks} ticks in 150 ms)`);
      keys.press("button", "ok");
      const sig = await pending;
      assert.ok(sig.length > 64);
    } finally {
      await s.close();
    }
  } finally {
    keys.remove("button");
  }
});

test("a full key refuses a new key with TOKEN_STORAGE_FULL and keeps nothing half-made", async () => {
  keys.create("full", { serial: "SKFFULL001", maxContainers: 1 });
  try {
    const s = await backend.open("SKFFULL001", USER_PIN);
    try {
      await s.generateKeyPair("sm2", "a");
      await assert.rejects(s.generateKeyPair("sm2", "b"), isRefusal("TOKEN_STORAGE_FULL"));
      assert.equal(keys.show("full").applications[0]!.containers.length, 1);
      await assert.rejects(s.generateKeyPair("p256", "c"), isRefusal("KEY_ALGORITHM_UNSUPPORTED"));
    } finally {
      await s.close();
    }
  } finally {
    keys.remove("full");
  }
});

test("openBackend takes the SKF library named by UKEY_SKF_LIBRARY, or a well-known one with a key present, before the file token", async () => {
  const { openBackend } = await import("../../src/keys/open-backend.js");
  const home = join(work, "home");
  const named = await openBackend({ env: { UKEY_SKF_LIBRARY: keys.build.library }, home, discovered: [] });
  assert.equal(named.kind, "skf");
  await named.close();
  await assert.rejects(openBackend({ env: { UKEY_SKF_LIBRARY: join(work, "absent.so") }, home, discovered: [] }), isRefusal("TOKEN_DRIVER_MISSING"));
  // No key present: the well-known SKF library is passed over.
  const none = await openBackend({ env: {}, home, discovered: [], discoveredSkf: [keys.build.library] });
  assert.equal(none.kind, "pkcs12");
  await none.close();
  keys.create("found", { serial: "SKFFOUND01" });
  try {
    const found = await openBackend({ env: {}, home, discovered: [], discoveredSkf: ["/usr/lib/x86_64-linux-gnu/libc.so.6", keys.build.library] });
    assert.equal(found.kind, "skf");
    assert.deepEqual((await found.listTokens()).map((t) => t.serial), ["SKFFOUND01"]);
    await found.close();
  } finally {
    keys.remove("found");
  }
});

test("while the key waits for its button the holder is told \"请在 UKey 上按确认键（OK 键）\"; a key that answers at once says nothing", async () => {
  const { login } = await import("../../src/flows/token-access.js");
  keys.create("press", { serial: "SKFPRESS01", buttonTimeoutMs: 5000 });
  const events: { step: string; zh: string; en: string }[] = [];
  const holder = {
    pin: async () => USER_PIN,
    idNumber: async () => { throw new Error("not asked"); },
    oneTimeCode: async () => { throw new Error("not asked"); },
    stepUp: async () => { throw new Error("not asked"); },
    confirm: async () => false,
    progress: (e: { step: string; zh: string; en: string }) => { events.push(e); },
  };
  try {
    const { session: s } = await login(backend, holder, "SKFPRESS01", "test");
    try {
      const key = await s.generateKeyPair("sm2", "k");
      await s.sign(key.id, Buffer.from("warm-up"));
      assert.equal(events.length, 0, "no button, no message");
      keys.button("press", "wait");
      const pending = s.sign(key.id, Buffer.from("data"));
      await new Promise((r) => setTimeout(r, 700));
      // The default table knows no timeout for this key: the holder is told the key cancels by itself after a while.
      assert.deepEqual(events.map((e) => [e.step, e.zh, e.en]), [["press-button", "请在 UKey 上按确认键（OK 键）：长时间不按，UKey 会取消这次操作", "Press OK on your UKey: if it is not pressed for a while, the UKey cancels the operation"]]);
      keys.press("press", "cancel");
      await assert.rejects(pending, isRefusal("TOKEN_CONFIRMATION_CANCELLED"));
    } finally {
      await s.close();
    }
  } finally {
    keys.remove("press");
  }
});
