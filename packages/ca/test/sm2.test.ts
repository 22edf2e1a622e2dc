import { after, test } from "node:test";
import assert from "node:assert/strict";
import { derToPem } from "../src/index.js";
import {
  SM2_DEFAULT_ID, sm2Digest, sm2GenerateKeyPair, sm2KeyFromPkcs8, sm2Pkcs8, sm2PointOfSpki, sm2PublicKeyOf, sm2Sign,
  sm2SignatureValues, sm2SignWithNonceForTest, sm2Spki, sm2Verify, sm2Z, type Sm2KeyPair,
} from "../src/sm2.js";
import { openssl, tempDir } from "./support/openssl.js";

// GM/T 0003.5-2012 (GB/T 32918.5-2017) Annex A, the digital signature example on the recommended curve.
const kat = {
  d: "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8",
  x: "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020",
  y: "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13",
  message: "message digest",
  z: "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3",
  e: "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640",
  k: "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21",
  r: "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3",
  s: "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA",
};
const katKey: Sm2KeyPair = { privateKey: Buffer.from(kat.d, "hex"), publicKey: Buffer.from(`04${kat.x}${kat.y}`, "hex") };
const katMessage = Buffer.from(kat.message, "latin1");
const hex = (b: Buffer) => b.toString("hex").toUpperCase();

const tmp = tempDir("ukey-sm2-");
after(() => tmp.cleanup());

test("GM/T 0003.5 A.2: the public key of the example private key", () => {
  assert.equal(hex(sm2PublicKeyOf(katKey.privateKey)), hex(katKey.publicKey));
});

test("GM/T 0003.5 A.2: Z of the example key with ID 1234567812345678", () => {
  assert.equal(hex(sm2Z(katKey.publicKey)), kat.z);
  assert.equal(hex(sm2Z(katKey.publicKey, SM2_DEFAULT_ID)), kat.z);
  assert.notEqual(hex(sm2Z(katKey.publicKey, "")), kat.z, "the empty ID gives another Z");
});

test("GM/T 0003.5 A.2: e = SM3(Z || M)", () => {
  assert.equal(hex(sm2Digest(katMessage, katKey.publicKey)), kat.e);
});

test("GM/T 0003.5 A.2: the signature with the example's k is (r, s)", () => {
  const sig = sm2SignWithNonceForTest(katMessage, katKey, Buffer.from(kat.k, "hex"));
  const rs = sm2SignatureValues(sig);
  assert.ok(rs);
  assert.equal(rs.r.toString(16).toUpperCase().padStart(64, "0"), kat.r);
  assert.equal(rs.s.toString(16).toUpperCase().padStart(64, "0"), kat.s);
  assert.ok(sm2Verify(katMessage, sig, katKey.publicKey));
});

test("the example signature verifies with the standard ID only", () => {
  const sig = sm2SignWithNonceForTest(katMessage, katKey, Buffer.from(kat.k, "hex"));
  assert.equal(sm2Verify(katMessage, sig, katKey.publicKey, ""), false);
  assert.equal(sm2Verify(katMessage, sig, katKey.publicKey, "1234567812345679"), false);
  assert.equal(sm2Verify(Buffer.from("message digesT"), sig, katKey.publicKey), false);
});

test("a random-k signature verifies, and differs each time", () => {
  const a = sm2Sign(katMessage, katKey);
  const b = sm2Sign(katMessage, katKey);
  assert.notDeepEqual(a, b);
  assert.ok(sm2Verify(katMessage, a, katKey.publicKey));
  assert.ok(sm2Verify(katMessage, b, katKey.publicKey));
});

test("signatures outside [1, n-1], not minimal DER or with trailing bytes are not valid", () => {
  const sig = sm2Sign(katMessage, katKey);
  const n = "FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123";
  const int = (h: string) => { const b = Buffer.from(h, "hex"); return Buffer.concat([Buffer.from([2, b.length]), b]); };
  const sq = (...p: Buffer[]) => { const c = Buffer.concat(p); return Buffer.concat([Buffer.from([0x30, c.length]), c]); };
  const cases: Array<[string, Buffer]> = [
    ["r = 0", sq(int("00"), int("01"))],
    ["s = n", sq(int("01"), int(`00${n}`))],
    ["r with a needless leading zero", sq(int("0001"), int("01"))],
    ["negative s", sq(int("01"), int("FF"))],
    ["three integers", sq(int("01"), int("01"), int("01"))],
    ["trailing byte", Buffer.concat([sig, Buffer.from([0])])],
    ["truncated", sig.subarray(0, sig.length - 1)],
    ["empty", Buffer.alloc(0)],
  ];
  for (const [name, bad] of cases) assert.equal(sm2Verify(katMessage, bad, katKey.publicKey), false, name);
});

test("a public key off the curve verifies nothing and is refused for an SPKI", () => {
  const off = Buffer.from(katKey.publicKey);
  off[64] = off[64]! ^ 1;
  const sig = sm2Sign(katMessage, katKey);
  assert.equal(sm2Verify(katMessage, sig, off), false);
  assert.throws(() => sm2Spki(off), (e: Error & { code?: string }) => e.code === "DER_MALFORMED");
});

test("SPKI is id-ecPublicKey with the SM2 curve, and reads back", () => {
  const spki = sm2Spki(katKey.publicKey);
  assert.equal(spki.subarray(0, 27).toString("hex"),
    "3059301306072a8648ce3d020106082a811ccf5501822d03420004");
  assert.deepEqual(sm2PointOfSpki(spki), katKey.publicKey);
  const pem = tmp.write("kat-pub.pem", derToPem(spki, "PUBLIC KEY"));
  const text = openssl(["pkey", "-pubin", "-in", pem, "-noout", "-text"]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /SM2/);
});

test("PKCS#8 round trip, read by openssl pkey", () => {
  const key = sm2GenerateKeyPair();
  const der = sm2Pkcs8(key);
  assert.deepEqual(sm2KeyFromPkcs8(der), key);
  const pem = tmp.write("gen.pem", derToPem(der, "PRIVATE KEY"));
  const out = openssl(["pkey", "-in", pem, "-pubout", "-outform", "DER"]);
  assert.equal(out.status, 0, out.stderr);
  const back = openssl(["pkey", "-in", pem, "-outform", "DER"]);
  assert.equal(back.status, 0, back.stderr);
});

test("interoperates with the OpenSSL CLI (distid:1234567812345678) in both directions", () => {
  const key = sm2GenerateKeyPair();
  const keyPem = tmp.write("io.pem", derToPem(sm2Pkcs8(key), "PRIVATE KEY"));
  const pubPem = tmp.write("io-pub.pem", derToPem(sm2Spki(key.publicKey), "PUBLIC KEY"));
  const msg = Buffer.from("ukey-renew 证书更新 interoperability");
  const msgFile = tmp.write("io.msg", msg);

  // ours -> openssl
  const sigFile = tmp.write("io.sig", sm2Sign(msg, key));
  const v = openssl(["dgst", "-sm3", "-verify", pubPem, "-sigopt", `distid:${SM2_DEFAULT_ID}`, "-signature", sigFile, msgFile]);
  assert.equal(v.status, 0, v.stderr + v.stdout);
  assert.match(v.stdout, /Verified OK/);
  // ... and openssl with the empty ID refuses it, so the ID is really in the signature.
  const vEmpty = openssl(["dgst", "-sm3", "-verify", pubPem, "-signature", sigFile, msgFile]);
  assert.notEqual(vEmpty.status, 0);

  // openssl -> ours
  const s = openssl(["dgst", "-sm3", "-sign", keyPem, "-sigopt", `distid:${SM2_DEFAULT_ID}`, "-out", `${tmp.dir}/o.sig`, msgFile]);
  assert.equal(s.status, 0, s.stderr);
  const osig = openssl(["base64", "-A", "-in", `${tmp.dir}/o.sig`]).stdout;
  assert.ok(sm2Verify(msg, Buffer.from(osig, "base64"), key.publicKey));
  // openssl without -sigopt signs with the empty ID: not valid under the standard one.
  const s2 = openssl(["dgst", "-sm3", "-sign", keyPem, "-out", `${tmp.dir}/o2.sig`, msgFile]);
  assert.equal(s2.status, 0, s2.stderr);
  const osig2 = Buffer.from(openssl(["base64", "-A", "-in", `${tmp.dir}/o2.sig`]).stdout, "base64");
  assert.equal(sm2Verify(msg, osig2, key.publicKey), false);
  assert.ok(sm2Verify(msg, osig2, key.publicKey, ""));
});
