import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as asn1js from "asn1js";
import { buildEnvelopedKeyBlob, sm2GenerateKeyPair } from "@ukey/ca";
import { ensureSoftkey, SoftkeyDir } from "./support/softkey.js";

// Issue 15: skf-softkey, the software SKF (GM/T 0016) key the agent's SKF
// tests run against, checked on its own (not through our agent) so that it
// cannot drift into agreeing with the agent alone: its C conformance program
// over the standard's behaviour, and SM2 checked by the OpenSSL CLI.

const SAR = {
  OK: 0x00000000, TIMEOUTERR: 0x0a00000f, INDATAERR: 0x0a000011, DEVICE_REMOVED: 0x0a000023, USER_CANCEL: 0x0b000011,
} as const;
const USER_PIN = "12345678";
const ADMIN_PIN = "88888888";
const DEV_AUTH_KEY = Buffer.from("1234567812345678").toString("hex");

let keys: SoftkeyDir;
const work = mkdtempSync(join(tmpdir(), "ukey-skf-test-"));

before(() => {
  const build = ensureSoftkey();
  console.log(`# skf-softkey is a software stand-in for a vendor's SKF library (GM/T 0016), not a vendor library: ${build.library}`);
  keys = new SoftkeyDir(build);
});
after(() => { keys?.cleanup(); rmSync(work, { recursive: true, force: true }); });

interface Run { status: number; stdout: string; stderr: string }
const conformance = (args: string[]): Run => {
  const r = spawnSync(keys.build.conformance, args, { encoding: "utf8", env: keys.env });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};
const openssl = (args: string[]): Run => {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  if (r.error) throw new Error(`openssl cannot run (install the openssl package): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};
/** The SAR code a conformance subcommand printed ("SAR 0x... step"), and the step. */
const sarOf = (r: Run): { code: number; step: string } => {
  const m = /^SAR (0x[0-9A-F]{8}) (\w+)$/m.exec(r.stdout);
  assert.ok(m, `no SAR line in:\n${r.stdout}${r.stderr}`);
  return { code: Number(m[1]), step: m[2]! };
};
const field = (r: Run, name: string): string => {
  const m = new RegExp(`^${name} ([0-9a-f]+)$`, "m").exec(r.stdout);
  assert.ok(m, `no ${name} in:\n${r.stdout}`);
  return m[1]!;
};
/** Every TAP line ok, as many as announced. */
function assertAllOk(r: Run, atLeast: number): void {
  const lines = r.stdout.split("\n");
  const failed = lines.filter((l) => l.startsWith("not ok"));
  assert.deepEqual(failed, [], r.stdout);
  const plan = /^1\.\.(\d+)$/m.exec(r.stdout);
  assert.ok(plan, r.stdout);
  assert.equal(lines.filter((l) => /^ok \d+ - /.test(l)).length, Number(plan[1]));
  assert.ok(Number(plan[1]) >= atLeast, `only ${plan[1]} checks ran`);
  assert.equal(r.status, 0, r.stderr);
}

/** Signs `message` on the key (making the container's SM2 key if it has none); the signature and key land in a new directory. */
function signOnKey(dev: string, container: string, message: string): { run: Run; dir: string; msg: string } {
  const dir = mkdtempSync(join(work, "sign-"));
  const msg = join(dir, "message.txt");
  writeFileSync(msg, message);
  return { run: conformance(["sign", dev, "DEFAULT_APP", USER_PIN, container, msg, dir]), dir, msg };
}
const opensslVerifies = (dir: string, msg: string) =>
  openssl(["dgst", "-sm3", "-verify", join(dir, "pub.pem"), "-sigopt", "distid:1234567812345678", "-signature", join(dir, "sig.der"), msg]);

test("GM/T 0016 behaviour: PIN retries and lockout, unblock, containers, SM2 and RSA signatures, handles, device authentication", () => {
  keys.create("conf", { userRetries: 5, adminRetries: 8 });
  const r = conformance(["checks", "conf", "DEFAULT_APP", USER_PIN, ADMIN_PIN, DEV_AUTH_KEY]);
  assert.match(r.stdout, /software stand-in for a vendor's SKF library, not a vendor library/);
  assertAllOk(r, 140);
  // What the checks left on the key, read by the admin tool from the state on disk.
  const shown = keys.show("conf");
  assert.deepEqual(shown.applications.map((a) => a.name), ["DEFAULT_APP"]);
  assert.deepEqual(shown.applications[0]!.containers, []);
  assert.deepEqual(shown.applications[0]!.userRetries, { max: 5, remain: 5, default: false });
});

test("a full key refuses with SAR_NO_ROOM, keeps what it had, and takes the object once there is room", () => {
  keys.create("small", { storage: 4700 });
  assertAllOk(conformance(["storage-full", "small", "DEFAULT_APP", USER_PIN]), 10);
  assert.ok(keys.show("small").usedSpace <= 4700);
});

test("SKF_ECCSignData over SM3(Z||M) verifies with the OpenSSL CLI and the standard ID; another message does not", () => {
  keys.create("signer");
  const s = signOnKey("signer", "sig", "renewal request of 张三");
  assert.equal(s.run.status, 0, s.run.stdout + s.run.stderr);
  const v = opensslVerifies(s.dir, s.msg);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /Verified OK/);
  writeFileSync(s.msg, "another message");
  assert.notEqual(opensslVerifies(s.dir, s.msg).status, 0);
  // The key persists: a second signature in a new process uses the same key.
  const again = signOnKey("signer", "sig", "second");
  assert.equal(field(again.run, "pub"), field(s.run, "pub"));
  assert.equal(opensslVerifies(again.dir, again.msg).status, 0);
});

/** SM2Cipher DER (what openssl pkeyutl -encrypt writes) → x1, y1, C3, C2. */
function sm2Cipher(der: Buffer): { x: Buffer; y: Buffer; c3: Buffer; c2: Buffer } {
  const parsed = asn1js.fromBER(new Uint8Array(der));
  assert.notEqual(parsed.offset, -1, "SM2Cipher DER");
  const [x, y, c3, c2] = (parsed.result as asn1js.Sequence).valueBlock.value as [asn1js.Integer, asn1js.Integer, asn1js.OctetString, asn1js.OctetString];
  const int32 = (i: asn1js.Integer) => { const b = Buffer.from(i.valueBlock.valueHexView); return Buffer.concat([Buffer.alloc(32), b]).subarray(-32); };
  return { x: int32(x), y: int32(y), c3: Buffer.from(c3.valueBlock.valueHexView), c2: Buffer.from(c2.valueBlock.valueHexView) };
}

/** An SM2 key pair made by the OpenSSL CLI: its PEM, d (32 octets) and 04||x||y. */
function opensslSm2Key(name: string): { pem: string; d: Buffer; pub: Buffer } {
  const pem = join(work, `${name}.pem`);
  const g = openssl(["genpkey", "-algorithm", "SM2", "-out", pem]);
  assert.equal(g.status, 0, g.stderr);
  const text = openssl(["pkey", "-in", pem, "-text", "-noout"]).stdout;
  const block = (label: string) => Buffer.from((new RegExp(`${label}:\\n((?:\\s+[0-9a-f:]+\\n)+)`).exec(text)?.[1] ?? "").replace(/[\s:]/g, ""), "hex");
  const d = Buffer.concat([Buffer.alloc(32), block("priv")]).subarray(-32);
  const pub = block("pub");
  assert.equal(pub.length, 65, text);
  return { pem, d, pub };
}

/**
 * The ENVELOPEDKEYBLOB of docs/envelopes.md, built with the OpenSSL CLI alone: a fresh SM4 key K encrypts d
 * (openssl enc -sm4-ecb), K is SM2-encrypted to the holder's key (openssl pkeyutl -encrypt).
 */
function opensslEnvelope(enc: { d: Buffer; pub: Buffer }, holderPubPem: string, name: string, pubInBlob = enc.pub): Buffer {
  const k = randomBytes(16);
  const kPath = join(work, `${name}.k`);
  const dPath = join(work, `${name}.d`);
  writeFileSync(kPath, k);
  writeFileSync(dPath, enc.d);
  const e1 = openssl(["pkeyutl", "-encrypt", "-pubin", "-inkey", holderPubPem, "-in", kPath, "-out", `${kPath}.der`]);
  assert.equal(e1.status, 0, e1.stderr);
  const e2 = openssl(["enc", "-sm4-ecb", "-nopad", "-K", k.toString("hex"), "-in", dPath, "-out", `${dPath}.enc`]);
  assert.equal(e2.status, 0, e2.stderr);
  const c = sm2Cipher(readFileSync(`${kPath}.der`));
  const encD = readFileSync(`${dPath}.enc`);
  const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const r64 = (b: Buffer) => Buffer.concat([Buffer.alloc(64 - b.length), b]);
  const blob = Buffer.concat([
    u32(1), u32(0x00000401), u32(256), r64(encD),
    u32(256), r64(pubInBlob.subarray(1, 33)), r64(pubInBlob.subarray(33, 65)),
    r64(c.x), r64(c.y), c.c3, u32(16), c.c2,
  ]);
  assert.equal(blob.length, 388);
  return blob;
}

test("SKF_ImportECCKeyPair takes an envelope built by the OpenSSL CLI; the imported key decrypts what OpenSSL encrypts to it", () => {
  keys.create("pair");
  const s = signOnKey("pair", "pair", "make the signing key");
  assert.equal(s.run.status, 0, s.run.stdout);
  const enc = opensslSm2Key("enc");
  const blobPath = join(work, "envelope.bin");
  writeFileSync(blobPath, opensslEnvelope(enc, join(s.dir, "pub.pem"), "good"));
  const imp = conformance(["import", "pair", "DEFAULT_APP", USER_PIN, "pair", blobPath]);
  assert.deepEqual(sarOf(imp), { code: SAR.OK, step: "import" }, imp.stdout);
  assert.equal(field(imp, "encpub"), enc.pub.toString("hex"));

  const secret = join(work, "secret");
  writeFileSync(secret, "以 SM2 加密的测试数据");
  const ct = openssl(["pkeyutl", "-encrypt", "-inkey", enc.pem, "-in", secret, "-out", `${secret}.der`]);
  assert.equal(ct.status, 0, ct.stderr);
  const dec = conformance(["decrypt", "pair", "DEFAULT_APP", USER_PIN, "pair", `${secret}.der`]);
  assert.deepEqual(sarOf(dec), { code: SAR.OK, step: "decrypt" }, dec.stdout);
  assert.equal(Buffer.from(field(dec, "plain"), "hex").toString("utf8"), "以 SM2 加密的测试数据");
  assert.equal(keys.show("pair").applications[0]!.containers[0]!.encPublicKey, enc.pub.toString("hex"));
});

test("the envelope the server sends (packages/ca buildEnvelopedKeyBlob) imports, its public key exported as built", () => {
  keys.create("server-env");
  const s = signOnKey("server-env", "pair", "make the signing key");
  assert.equal(s.run.status, 0, s.run.stdout);
  const enc = sm2GenerateKeyPair();
  const blobPath = join(work, "server-envelope.bin");
  writeFileSync(blobPath, buildEnvelopedKeyBlob(enc, Buffer.from(field(s.run, "pub"), "hex")));
  const imp = conformance(["import", "server-env", "DEFAULT_APP", USER_PIN, "pair", blobPath]);
  assert.deepEqual(sarOf(imp), { code: SAR.OK, step: "import" }, imp.stdout);
  assert.equal(field(imp, "encpub"), enc.publicKey.toString("hex"));
});

test("a key made to read the encrypted private key from the first 32 octets (as some vendors' libraries do) refuses the standard layout and takes the left-aligned one", () => {
  keys.create("left", { envelopeLayout: "left" });
  assert.equal(keys.show("left").envelopeLayout, "left");
  const s = signOnKey("left", "pair", "make the signing key");
  assert.equal(s.run.status, 0, s.run.stdout);
  const enc = sm2GenerateKeyPair();
  const standard = buildEnvelopedKeyBlob(enc, Buffer.from(field(s.run, "pub"), "hex"));
  const left = Buffer.from(standard);
  standard.copy(left, 12, 44, 76);
  left.fill(0, 44, 76);
  const paths = { standard: join(work, "left-standard.bin"), left: join(work, "left-left.bin") };
  writeFileSync(paths.standard, standard);
  writeFileSync(paths.left, left);
  assert.deepEqual(sarOf(conformance(["import", "left", "DEFAULT_APP", USER_PIN, "pair", paths.standard])), { code: SAR.INDATAERR, step: "import" });
  const imp = conformance(["import", "left", "DEFAULT_APP", USER_PIN, "pair", paths.left]);
  assert.deepEqual(sarOf(imp), { code: SAR.OK, step: "import" }, imp.stdout);
  assert.equal(field(imp, "encpub"), enc.publicKey.toString("hex"));
});

test("an envelope for another key, or whose public key is not its private key's, is refused (SAR_INDATAERR) and nothing is imported", () => {
  keys.create("wrong");
  const s = signOnKey("wrong", "c", "make the signing key");
  assert.equal(s.run.status, 0, s.run.stdout);
  const enc = opensslSm2Key("enc2");
  const stranger = opensslSm2Key("stranger");
  const strangerPub = join(work, "stranger.pub.pem");
  assert.equal(openssl(["pkey", "-in", stranger.pem, "-pubout", "-out", strangerPub]).status, 0);
  for (const [name, blob] of [
    ["for another holder", opensslEnvelope(enc, strangerPub, "other")],
    ["another public key", opensslEnvelope(enc, join(s.dir, "pub.pem"), "mismatch", stranger.pub)],
  ] as const) {
    const p = join(work, `${name}.bin`.replace(/ /g, "-"));
    writeFileSync(p, blob);
    const imp = conformance(["import", "wrong", "DEFAULT_APP", USER_PIN, "c", p]);
    assert.deepEqual(sarOf(imp), { code: SAR.INDATAERR, step: "import" }, `${name}: ${imp.stdout}`);
  }
  assert.equal(keys.show("wrong").applications[0]!.containers[0]!.encPublicKey, "");
});

test("the key's button: refuse gives SAR_USER_CANCEL, timeout SAR_TIMEOUTERR, wait holds until pressed (or cancelled)", async () => {
  keys.create("btn", { buttonTimeoutMs: 250 });
  assert.equal(signOnKey("btn", "c", "key made with auto").run.status, 0);

  keys.button("btn", "refuse");
  assert.deepEqual(sarOf(signOnKey("btn", "c", "m").run), { code: SAR.USER_CANCEL, step: "sign" });
  assert.deepEqual(sarOf(signOnKey("btn", "new", "m").run), { code: SAR.USER_CANCEL, step: "gen" }, "key generation asks too");

  keys.button("btn", "timeout");
  const t0 = Date.now();
  assert.deepEqual(sarOf(signOnKey("btn", "c", "m").run), { code: SAR.TIMEOUTERR, step: "sign" });
  assert.ok(Date.now() - t0 >= 250, "a timeout waits the device's button_timeout_ms");

  keys.button("btn", "wait");
  for (const answer of ["ok", "cancel"] as const) {
    const dir = mkdtempSync(join(work, "wait-"));
    const msg = join(dir, "m.txt");
    writeFileSync(msg, `pressed ${answer}`);
    const child = spawn(keys.build.conformance, ["sign", "btn", "DEFAULT_APP", USER_PIN, "c", msg, dir], { env: keys.env });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => { stdout += b.toString(); });
    const done = new Promise<number>((res) => child.on("close", (code) => res(code ?? -1)));
    const pending = join(keys.dir, "btn", "pending");
    for (let i = 0; i < 300 && !existsSync(pending); i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(readFileSync(pending, "utf8").trim(), "ECCSignData", "the key shows which operation waits for the button");
    keys.press("btn", answer);
    const status = await done;
    assert.deepEqual(sarOf({ status, stdout, stderr: "" }), { code: answer === "ok" ? SAR.OK : SAR.USER_CANCEL, step: "sign" });
    if (answer === "ok") assert.equal(opensslVerifies(dir, msg).status, 0);
    assert.equal(existsSync(pending), false);
  }
  assert.deepEqual(sarOf(signOnKey("btn", "c", "nobody presses").run), { code: SAR.TIMEOUTERR, step: "sign" });
  const log = readFileSync(join(keys.dir, "btn", "button.log"), "utf8").trim().split("\n");
  assert.deepEqual(log, [
    "GenECCKeyPair ok", "ECCSignData ok", "ECCSignData cancel", "GenECCKeyPair cancel", "ECCSignData timeout",
    "ECCSignData ok", "ECCSignData cancel", "ECCSignData timeout",
  ]);
});

test("unplugged, the key is gone (SAR_DEVICE_REMOVED) and comes back with its keys; pulled out while it waits for the button, the operation fails", async () => {
  keys.create("usb");
  const first = signOnKey("usb", "c", "before");
  assert.equal(first.run.status, 0);
  keys.unplug("usb");
  assert.deepEqual(sarOf(signOnKey("usb", "c", "m").run), { code: SAR.DEVICE_REMOVED, step: "login" });
  keys.plug("usb");
  const back = signOnKey("usb", "c", "after");
  assert.equal(field(back.run, "pub"), field(first.run, "pub"));

  keys.button("usb", "wait");
  const dir = mkdtempSync(join(work, "pull-"));
  const msg = join(dir, "m.txt");
  writeFileSync(msg, "m");
  const child = spawn(keys.build.conformance, ["sign", "usb", "DEFAULT_APP", USER_PIN, "c", msg, dir], { env: keys.env });
  let stdout = "";
  child.stdout.on("data", (b: Buffer) => { stdout += b.toString(); });
  const done = new Promise<number>((res) => child.on("close", (code) => res(code ?? -1)));
  const pending = join(keys.dir, "usb", "pending");
  for (let i = 0; i < 300 && !existsSync(pending); i++) await new Promise((r) => setTimeout(r, 5));
  keys.unplug("usb");
  const status = await done;
  assert.deepEqual(sarOf({ status, stdout, stderr: "" }), { code: SAR.DEVICE_REMOVED, step: "sign" });
});

test("SKF_WaitForDevEvent reports a key plugged in (1) and pulled out (2); SKF_CancelWaitForDevEvent ends a wait", async () => {
  const child = spawn(keys.build.conformance, ["wait-event", "2"], { env: keys.env });
  let stdout = "";
  child.stdout.on("data", (b: Buffer) => { stdout += b.toString(); });
  const done = new Promise<number>((res) => child.on("close", (code) => res(code ?? -1)));
  for (let i = 0; i < 300 && !stdout.includes("# waiting"); i++) await new Promise((r) => setTimeout(r, 5));
  keys.create("hotplug");
  for (let i = 0; i < 300 && !stdout.includes("event 1"); i++) await new Promise((r) => setTimeout(r, 5));
  keys.unplug("hotplug");
  assert.equal(await done, 0, stdout);
  assert.deepEqual(stdout.split("\n").filter((l) => l.startsWith("event ")), ["event 1 hotplug", "event 2 hotplug"]);
  const cancelled = conformance(["cancel-wait"]);
  assert.deepEqual(sarOf(cancelled), { code: 0x0a000022, step: "wait" }, "SAR_NOT_EVENTERR");
});

test("fixtures: skf-softkey-admin gen-key and put-cert leave a key as an earlier session would; the library signs with that key", () => {
  keys.create("seeded");
  const pub = keys.genKey("seeded", "DEFAULT_APP", "old");
  assert.equal(pub.length, 65);
  const certPem = join(work, "seeded.pem");
  const certDer = join(work, "seeded.der");
  assert.equal(openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(work, "seeded.key"),
    "-out", certPem, "-days", "1", "-subj", "/CN=seeded"]).status, 0);
  assert.equal(openssl(["x509", "-in", certPem, "-outform", "DER", "-out", certDer]).status, 0);
  keys.putCert("seeded", "DEFAULT_APP", "old", "sign", certDer);
  const c = keys.show("seeded").applications[0]!.containers[0]!;
  assert.deepEqual([c.name, c.type, c.signPublicKey, c.signCertificate], ["old", "ECC", pub.toString("hex"), readFileSync(certDer).toString("hex")]);
  const s = signOnKey("seeded", "old", "signed with the seeded key");
  assert.equal(field(s.run, "pub"), pub.toString("hex"));
  assert.equal(opensslVerifies(s.dir, s.msg).status, 0);
});

test("exports the 42 SKF functions docs/skf-softkey.md lists; the -noimport build lacks SKF_ImportECCKeyPair alone", () => {
  const exported = (lib: string) => {
    const r = spawnSync("nm", ["-D", "--defined-only", lib], { encoding: "utf8" });
    if (r.error) throw new Error(`nm cannot run (binutils comes with gcc): ${r.error.message}`);
    return r.stdout.split("\n").map((l) => l.split(" ")[2]).filter((n): n is string => !!n).sort();
  };
  const doc = readFileSync(join(import.meta.dirname, "../../../../docs/skf-softkey.md"), "utf8");
  const table = doc.slice(doc.indexOf("| group | functions |")).split("\n\n")[0]!;
  const documented = [...new Set([...table.matchAll(/`(SKF_\w+)`/g)].map((m) => m[1]!))].sort();
  const all = exported(keys.build.library);
  assert.equal(all.length, 42);
  assert.deepEqual(all, documented);
  assert.deepEqual(exported(keys.build.libraryWithoutImport), all.filter((n) => n !== "SKF_ImportECCKeyPair"));
});
