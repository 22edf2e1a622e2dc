import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { RenewResult } from "../../src/flows/flow-types.js";
import { objectLabels } from "../../src/keys/key-store.js";
import { SkfBackend, skfMarks } from "../../src/keys/skf-backend.js";
import { RSA_PUBLIC_KEY_BLOB_SIZE, SGD_RSA, rsaBlobToSpki } from "../../src/keys/skf/skf-blobs.js";
import { openSkfLibrary } from "../../src/keys/skf/skf-library.js";
import { createAgentWorld, type AgentWorld } from "../support/agent-world.js";
import { SoftkeyDir } from "./support/softkey.js";
import { isRefusal } from "../support/refusals.js";

// Issue 15 part 1, "RSA containers too, where the library offers them": RSA 2048 keys made and used in SKF
// containers (SKF_GenRSAKeyPair, SKF_RSASignData over a SHA-256 DigestInfo), against skf-softkey, the project's
// software stand-in for a vendor's GM/T 0016 library (docs/skf-softkey.md), then one RSA certificate renewed on it
// with `ukey renew` against the real server.

const here = dirname(fileURLToPath(import.meta.url));
const softkeySources = resolve(here, "../../../../native/skf-softkey");

let w: AgentWorld;
let keys: SoftkeyDir;
let backend: SkfBackend;
/** skf-softkey rebuilt here without SKF_GenRSAKeyPair and SKF_RSASignData: a vendor library with SM2 only. */
let withoutRsa: string;
/** skf-softkey rebuilt here with an SKF_GenRSAKeyPair that returns a blob whose modulus is even: a library that lies. */
let badBlob: string;

before(async () => {
  keys = new SoftkeyDir();
  console.log(`# SKF library under test: ${keys.build.library} — skf-softkey, the project's software stand-in for a vendor's SKF library, not a vendor's`);
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  w = createAgentWorld("ukey-skf-rsa-");
  backend = await SkfBackend.open(keys.build.library);
  ({ withoutRsa, badBlob } = buildVariants());
});
after(async () => {
  await backend?.close();
  await w?.cleanup();
  keys?.cleanup();
});

/** Compiles skf-softkey's sources once with SKF_GenRSAKeyPair renamed, and links them twice: without RSA, and with a corrupting SKF_GenRSAKeyPair. */
function buildVariants(): { withoutRsa: string; badBlob: string } {
  const dir = w.t.path("variants");
  const cc = (args: string[]) => {
    const r = spawnSync("gcc", args, { encoding: "utf8", cwd: dir });
    assert.equal(r.status, 0, `gcc (installed by ensure-skf-softkey.sh) ${args.join(" ")}: ${r.stderr}${r.error?.message ?? ""}`);
  };
  mkdirSync(dir, { recursive: true });
  const inc = `-I${softkeySources}/include`;
  const objects = ["skf", "state", "crypto"].map((f) => {
    cc(["-std=c11", "-O0", "-fPIC", "-fvisibility=hidden", inc, "-DSKF_GenRSAKeyPair=real_GenRSAKeyPair", "-c", "-o", `${f}.o`, `${softkeySources}/src/${f}.c`]);
    return `${f}.o`;
  });
  writeFileSync(join(dir, "hide-rsa.map"), "{ global: SKF_*; local: SKF_RSASignData; real_GenRSAKeyPair; *; };\n");
  cc(["-shared", "-Wl,--version-script=hide-rsa.map", "-o", "libskf-no-rsa.so", ...objects, "-lcrypto", "-lpthread"]);
  writeFileSync(join(dir, "bad-blob.c"), `#include "skf.h"
ULONG real_GenRSAKeyPair(HCONTAINER h, ULONG bits, RSAPUBLICKEYBLOB *blob);
__attribute__((visibility("default"))) ULONG SKF_GenRSAKeyPair(HCONTAINER h, ULONG bits, RSAPUBLICKEYBLOB *blob) {
  ULONG r = real_GenRSAKeyPair(h, bits, blob);
  if (r == 0) blob->Modulus[255] &= 0xfe;
  return r;
}
`);
  cc(["-std=c11", "-O0", "-fPIC", "-shared", inc, "-o", "libskf-bad-rsa-blob.so", "bad-blob.c", ...objects, "-lcrypto", "-lpthread"]);
  return { withoutRsa: join(dir, "libskf-no-rsa.so"), badBlob: join(dir, "libskf-bad-rsa-blob.so") };
}


function openssl(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8", input, cwd: w.t.path(".") });
  if (r.error) throw new Error(`openssl cannot run (install the openssl package): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function containers(device: string) {
  return keys.show(device).applications[0]!.containers;
}

/** An RSAPUBLICKEYBLOB of a Node-made key, as GM/T 0016 lays it out. */
function blobOf(bits: number): { blob: Buffer; spki: Buffer } {
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: bits, publicExponent: 65537 });
  const jwk = publicKey.export({ format: "jwk" });
  const n = Buffer.from(jwk.n!, "base64url"), e = Buffer.from(jwk.e!, "base64url");
  const blob = Buffer.alloc(RSA_PUBLIC_KEY_BLOB_SIZE);
  blob.writeUInt32LE(SGD_RSA, 0);
  blob.writeUInt32LE(bits, 4);
  n.copy(blob, 8 + 256 - n.length);
  e.copy(blob, 268 - e.length);
  return { blob, spki: publicKey.export({ format: "der", type: "spki" }) };
}

test("RSAPUBLICKEYBLOB: a well-formed blob of 1024 and 2048 bits reads as its key's SubjectPublicKeyInfo", () => {
  for (const bits of [1024, 2048]) {
    const { blob, spki } = blobOf(bits);
    assert.ok(rsaBlobToSpki(blob).equals(spki), `${bits} bits`);
  }
});

test("RSAPUBLICKEYBLOB: a blob that contradicts itself is refused", () => {
  const { blob } = blobOf(1024);
  const cases: [string, (b: Buffer) => Buffer][] = [
    ["shorter than 268 octets (the exponent cut off)", (b) => b.subarray(0, 264)],
    ["AlgID of SM2", (b) => { b.writeUInt32LE(0x00020100, 0); return b; }],
    ["BitLen 4096", (b) => { b.writeUInt32LE(4096, 4); return b; }],
    ["BitLen 1020 (not whole octets)", (b) => { b.writeUInt32LE(1020, 4); return b; }],
    ["BitLen 0", (b) => { b.writeUInt32LE(0, 4); return b; }],
    ["octets set above BitLen", (b) => { b[8] = 1; return b; }],
    ["modulus shorter than BitLen (1024 said, 1016 there)", (b) => { b.writeUInt32LE(1032, 4); return b; }],
    ["even modulus", (b) => { b[8 + 255]! &= 0xfe; return b; }],
    ["exponent 1", (b) => { b.fill(0, 264, 268); b[267] = 1; return b; }],
    ["even exponent", (b) => { b[267]! &= 0xfe; return b; }],
    ["exponent 0", (b) => { b.fill(0, 264, 268); return b; }],
  ];
  for (const [name, spoil] of cases) assert.throws(() => rsaBlobToSpki(spoil(Buffer.from(blob))), RangeError, name);
});

test("rsa2048 in an SKF container: the soft key's blob is the key's SPKI, signatures verify, the CSR passes openssl req -verify", async () => {
  keys.create("rsa-unit", { serial: "SKFRSA0001", userPin: w.hsm.pin });
  const s = await backend.open("SKFRSA0001", w.hsm.pin);
  let keyId: string;
  try {
    const key = await s.generateKeyPair("rsa2048", objectLabels.pending("order-rsa-1"));
    keyId = key.id;
    assert.equal(key.algorithm, "rsa2048");
    assert.equal(key.label, objectLabels.pending("order-rsa-1"));
    const made = containers("rsa-unit");
    assert.deepEqual(made.map((c) => [c.name, c.type]).sort(), [[skfMarks.keyContainer("order-rsa-1"), "RSA"], [skfMarks.markContainer("order-rsa-1"), "empty"]]);
    // The soft key stores modulus (256) || exponent (4): the same key as the SPKI the agent read from its blob.
    const stored = made.find((c) => c.type === "RSA")!.signPublicKey;
    const jwk = createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" }).export({ format: "jwk" });
    assert.equal(Buffer.from(jwk.n!, "base64url").toString("hex"), stored.slice(0, 512));
    assert.equal(Buffer.from(jwk.e!, "base64url").toString("hex"), stored.slice(512).replace(/^(00)+/, ""));
    assert.deepEqual((await s.listKeys()).map((k) => [k.id, k.algorithm]), [[key.id, "rsa2048"]]);

    const data = Buffer.from("待签名的数据 data to sign");
    const sig = await s.sign(key.id, data);
    assert.equal(sig.length, 256);
    const pub = createPublicKey({ key: Buffer.from(key.spki), format: "der", type: "spki" });
    assert.ok(verify("sha256", data, pub, sig), "PKCS#1 v1.5 SHA-256 signature");
    assert.ok(!verify("sha256", Buffer.from("other data"), pub, sig), "and over this data only");

    const csr = await s.createCsr(key.id, "CN=王晓明");
    writeFileSync(w.t.path("rsa.csr"), csr);
    const v = openssl(["req", "-in", "rsa.csr", "-noout", "-verify"]);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout + v.stderr, /verify OK/);
    assert.match(openssl(["req", "-in", "rsa.csr", "-noout", "-text"]).stdout, /Signature Algorithm: sha256WithRSAEncryption/);

    // Through the key's button like SM2: a signature that waits is told, and a refusal is the holder's cancel.
    keys.button("rsa-unit", "wait");
    let told = 0;
    s.onDeviceConfirmation = () => { told++; keys.press("rsa-unit"); };
    assert.ok(verify("sha256", data, pub, await s.sign(key.id, data)));
    assert.equal(told, 1, "the agent said: press OK on your UKey");
    s.onDeviceConfirmation = undefined;
    keys.button("rsa-unit", "refuse");
    await assert.rejects(s.sign(key.id, data), isRefusal("TOKEN_CONFIRMATION_CANCELLED"));
    keys.button("rsa-unit", "auto");

    // Other sizes and curves are refused before anything is written.
    const before = JSON.stringify(containers("rsa-unit"));
    for (const algorithm of ["rsa3072", "rsa4096", "p256"] as const) {
      await assert.rejects(s.generateKeyPair(algorithm, objectLabels.pending("order-rsa-2")), isRefusal("KEY_ALGORITHM_UNSUPPORTED", { algorithm }));
    }
    assert.equal(JSON.stringify(containers("rsa-unit")), before, "nothing changed");
  } finally {
    await s.close();
  }

  // The blob as SKF_ExportPublicKey gives it, read through the bindings, is the same key.
  const lib = await openSkfLibrary(keys.build.library);
  const dev = await lib.connectDev("rsa-unit");
  try {
    const app = await lib.openApplication(dev, (await lib.enumApplication(dev))[0]!);
    const c = await lib.openContainer(app, skfMarks.keyContainer("order-rsa-1"));
    const blob = await lib.exportPublicKey(c, true);
    assert.equal(blob.length, RSA_PUBLIC_KEY_BLOB_SIZE);
    assert.equal(blob.readUInt32LE(4), 2048);
    const s2 = await backend.open("SKFRSA0001", w.hsm.pin);
    try {
      assert.ok(rsaBlobToSpki(blob).equals(Buffer.from((await s2.listKeys()).find((k) => k.id === keyId)!.spki)));
    } finally {
      await s2.close();
    }
    await lib.closeContainer(c);
    await lib.closeApplication(app);
  } finally {
    await lib.disconnectDev(dev);
  }
});

test("a library without the RSA functions loads; rsa2048 on it is SKF_FUNCTION_MISSING naming the function, and nothing changes", async () => {
  keys.create("rsa-missing", { serial: "SKFRSA0002", userPin: w.hsm.pin });
  const rsa = await backend.open("SKFRSA0002", w.hsm.pin);
  let rsaKey: string;
  try {
    rsaKey = (await rsa.generateKeyPair("rsa2048", "made-elsewhere")).id;
  } finally {
    await rsa.close();
  }
  const partial = await SkfBackend.open(withoutRsa);
  try {
    const s = await partial.open("SKFRSA0002", w.hsm.pin);
    try {
      const before = JSON.stringify(containers("rsa-missing"));
      await assert.rejects(s.generateKeyPair("rsa2048", objectLabels.pending("order-rsa-3")), isRefusal("SKF_FUNCTION_MISSING", { function: "SKF_GenRSAKeyPair", module: withoutRsa }));
      assert.equal(JSON.stringify(containers("rsa-missing")), before, "no container, no mark");
      await assert.rejects(s.sign(rsaKey, Buffer.from("x")), isRefusal("SKF_FUNCTION_MISSING", { function: "SKF_RSASignData" }));
      // SM2 is untouched by the missing RSA functions.
      assert.equal((await s.generateKeyPair("sm2", "sm2-still")).algorithm, "sm2");
    } finally {
      await s.close();
    }
  } finally {
    await partial.close();
  }
});

test("a library whose SKF_GenRSAKeyPair returns a malformed blob: TOKEN_KEYGEN_FAILED, and the container it made is gone", async () => {
  keys.create("rsa-bad-blob", { serial: "SKFRSA0003", userPin: w.hsm.pin });
  const lying = await SkfBackend.open(badBlob);
  try {
    const s = await lying.open("SKFRSA0003", w.hsm.pin);
    try {
      await assert.rejects(s.generateKeyPair("rsa2048", "ukey-bad"), (e: unknown) => isRefusal("TOKEN_KEYGEN_FAILED")(e) && /RSAPUBLICKEYBLOB.*even modulus/.test((e as { detail?: string }).detail ?? ""));
      assert.deepEqual(containers("rsa-bad-blob"), [], "nothing left on the key");
    } finally {
      await s.close();
    }
  } finally {
    await lying.close();
  }
});

test("an RSA 2048 certificate on the software SKF key renewed with ukey renew: a new RSA container, its key in the certificate, the chain verifies", async () => {
  keys.create("rsa-renew", { serial: "SKFRSA0004", userPin: w.hsm.pin });
  const old = await w.issueOnToken("H1", "e2e", "rsa2048", "SKFRSA0004", await SkfBackend.open(keys.build.library));
  const oldContainer = containers("rsa-renew")[0]!;
  assert.equal(oldContainer.type, "RSA");
  await w.start();
  const r = w.ukey(["renew", "--token", "SKFRSA0004", "--json", "--yes", "--pin-file", w.pinFile, "--server", w.server!.url], {
    noDefaults: true, env: { UKEY_SKF_LIBRARY: keys.build.library, SKF_SOFTKEY_DIR: keys.dir },
  });
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<RenewResult>();
  const all = containers("rsa-renew");
  assert.deepEqual(all.map((c) => c.name), [skfMarks.keyContainer(out.orderId)], "the new container alone: the old one cleaned up, no mark");
  const fresh = all[0]!;
  assert.equal(fresh.type, "RSA");
  assert.notEqual(fresh.signPublicKey, oldContainer.signPublicKey, "a new key");
  writeFileSync(w.t.path("renewed.der"), Buffer.from(fresh.signCertificate, "hex"));
  assert.equal(openssl(["x509", "-inform", "DER", "-in", "renewed.der", "-out", "renewed.pem"]).status, 0);
  const text = openssl(["x509", "-in", "renewed.pem", "-noout", "-serial", "-modulus", "-text"]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /Public Key Algorithm: rsaEncryption/);
  assert.match(text.stdout, /Public-Key: \(2048 bit\)/);
  assert.equal(/serial=([0-9A-F]+)/.exec(text.stdout)?.[1]?.toLowerCase(), out.certificate.serialHex.toLowerCase());
  assert.equal(/Modulus=([0-9A-F]+)/.exec(text.stdout)?.[1]?.toLowerCase(), fresh.signPublicKey.slice(0, 512), "the certificate's key is the container's");
  const chain = out.certificate.pem.slice(out.certificate.pem.indexOf("-----END CERTIFICATE-----") + 25);
  writeFileSync(w.t.path("chain.pem"), chain);
  const v = openssl(["verify", "-x509_strict", "-CAfile", "chain.pem", "-partial_chain", "renewed.pem"]);
  assert.equal(v.status, 0, `openssl verify: ${v.stdout}${v.stderr}`);
  assert.equal((await w.certificate(old.serial)).status, "superseded", "the old certificate is superseded");
});
