import { after, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { isUkeyError } from "@ukey/policy";
import {
  buildEnvelopedKeyBlob, derToPem, ENVELOPED_KEY_BLOB_SIZE, openEnvelopedKeyBlob, parseEnvelopedKeyBlob, SGD_SM4_ECB, sm2CipherDer,
  parseSm2EnvelopedKey, sm2EnvelopedKeyFromBlob, sm2GenerateKeyPair, sm2Pkcs8, sm2PointOfSpki, type Sm2KeyPair,
} from "../src/index.js";
import { openssl, tempDir } from "./support/openssl.js";

// Issue 13: the GM/T 0016 ENVELOPEDKEYBLOB (docs/envelopes.md), opened by the
// OpenSSL CLI alone: SM2 decryption of the SM4 key with the holder's key,
// SM4-ECB decryption of the private key, and `openssl pkey -check` that the
// recovered private key belongs to the enveloped public key.

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;
const tmp = tempDir("ukey-envelope-");
after(() => tmp.cleanup());
const vector = JSON.parse(readFileSync(resolve(import.meta.dirname, "fixtures/enveloped-key-blob.json"), "utf8")) as Record<string, string>;
const hexKey = (d: string, p: string): Sm2KeyPair => ({ privateKey: Buffer.from(d, "hex"), publicKey: Buffer.from(p, "hex") });

/** Opens `blob` with the OpenSSL CLI and the holder's PEM key; returns the recovered private scalar after `pkey -check`. */
function opensslOpen(name: string, blob: Buffer, holderKeyPem: string): Buffer {
  const e = parseEnvelopedKeyBlob(blob);
  const cipher = tmp.write(`${name}.sm2cipher.der`, sm2CipherDer(e));
  const sm4KeyPath = `${tmp.dir}/${name}.sm4key`;
  const d1 = openssl(["pkeyutl", "-decrypt", "-inkey", holderKeyPem, "-in", cipher, "-out", sm4KeyPath]);
  assert.equal(d1.status, 0, d1.stderr);
  const sm4Key = readFileSync(sm4KeyPath);
  assert.equal(sm4Key.length, 16);
  const encPriv = tmp.write(`${name}.encpriv`, e.encryptedPrivateKey);
  const dPath = `${tmp.dir}/${name}.d`;
  const d2 = openssl(["enc", "-d", "-sm4-ecb", "-nopad", "-K", sm4Key.toString("hex"), "-in", encPriv, "-out", dPath]);
  assert.equal(d2.status, 0, d2.stderr);
  const d = readFileSync(dPath);
  const pem = tmp.write(`${name}.recovered.pem`, derToPem(sm2Pkcs8({ privateKey: d, publicKey: e.publicKey }), "PRIVATE KEY"));
  const check = openssl(["pkey", "-in", pem, "-check", "-noout"]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /Key is valid/);
  return d;
}

test("the committed test vector (docs/envelopes.md) opens with the OpenSSL CLI to the encryption private key", () => {
  const holder = hexKey(vector.holderSigningPrivateKey!, vector.holderSigningPublicKey!);
  const holderPem = tmp.write("vector-holder.pem", derToPem(sm2Pkcs8(holder), "PRIVATE KEY"));
  const blob = Buffer.from(vector.envelopedKeyBlob!, "hex");
  const d = opensslOpen("vector", blob, holderPem);
  assert.equal(d.toString("hex"), vector.encryptionPrivateKey);
  assert.equal(parseEnvelopedKeyBlob(blob).publicKey.toString("hex"), vector.encryptionPublicKey);
  assert.deepEqual(openEnvelopedKeyBlob(blob, holder), hexKey(vector.encryptionPrivateKey!, vector.encryptionPublicKey!));
  const docs = readFileSync(resolve(import.meta.dirname, "../../../docs/envelopes.md"), "utf8").replace(/\s+/g, "");
  assert.ok(docs.includes(vector.envelopedKeyBlob!), "docs/envelopes.md shows the vector");
});

test("a new envelope for an OpenSSL-made holder key: 388 octets in the documented layout, opened by OpenSSL", () => {
  const holderPem = `${tmp.dir}/holder.pem`;
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", holderPem]).status, 0);
  const pubDer = `${tmp.dir}/holder.spki.der`;
  assert.equal(openssl(["pkey", "-in", holderPem, "-pubout", "-outform", "DER", "-out", pubDer]).status, 0);
  const holderPoint = sm2PointOfSpki(readFileSync(pubDer));
  const enc = sm2GenerateKeyPair();
  const blob = buildEnvelopedKeyBlob(enc, holderPoint);
  assert.equal(blob.length, ENVELOPED_KEY_BLOB_SIZE);
  assert.equal(blob.readUInt32LE(0), 1);
  assert.equal(blob.readUInt32LE(4), SGD_SM4_ECB);
  assert.equal(blob.readUInt32LE(8), 256);
  assert.deepEqual(blob.subarray(12, 44), Buffer.alloc(32), "cbEncryptedPriKey is right-aligned");
  assert.equal(blob.readUInt32LE(76), 256);
  assert.deepEqual(blob.subarray(112, 144), enc.publicKey.subarray(1, 33), "PubKey.X, right-aligned");
  assert.deepEqual(blob.subarray(176, 208), enc.publicKey.subarray(33), "PubKey.Y, right-aligned");
  assert.equal(blob.readUInt32LE(368), 16);
  assert.deepEqual(opensslOpen("fresh", blob, holderPem), enc.privateKey);
  // Each envelope has its own SM4 key and SM2 randomness.
  assert.notDeepEqual(buildEnvelopedKeyBlob(enc, holderPoint), blob);
});

test("a truncated, extended or altered envelope is ENVELOPE_MALFORMED; another holder's key does not open it", () => {
  const holder = sm2GenerateKeyPair();
  const enc = sm2GenerateKeyPair();
  const blob = buildEnvelopedKeyBlob(enc, holder.publicKey);
  const alter = (at: number, f: (b: Buffer) => void = (b) => { b[at] = b[at]! ^ 1; }) => {
    const b = Buffer.from(blob);
    f(b);
    return b;
  };
  const cases: Array<[string, Buffer]> = [
    ["truncated", blob.subarray(0, 300)],
    ["one octet short", blob.subarray(0, blob.length - 1)],
    ["one octet more", Buffer.concat([blob, Buffer.from([0])])],
    ["version 2", alter(0, (b) => b.writeUInt32LE(2, 0))],
    ["SM1 instead of SM4", alter(4, (b) => b.writeUInt32LE(0x101, 4))],
    ["CipherLen 17", alter(368, (b) => b.writeUInt32LE(17, 368))],
    ["high half of cbEncryptedPriKey not zero", alter(12)],
    ["PubKey off the curve", alter(207)],
    ["C3 altered", alter(340)],
    ["C2 altered", alter(380)],
    ["encrypted private key altered", alter(60)],
  ];
  for (const [name, bad] of cases) assert.throws(() => openEnvelopedKeyBlob(bad, holder), code("ENVELOPE_MALFORMED"), name);
  assert.throws(() => openEnvelopedKeyBlob(blob, sm2GenerateKeyPair()), code("ENVELOPE_MALFORMED"));
  assert.deepEqual(openEnvelopedKeyBlob(blob, holder), enc);
});

test("GM/T 0009 SM2EnvelopedKey of the vector: openssl asn1parse reads it, and OpenSSL opens its parts to the encryption key", () => {
  const blob = Buffer.from(vector.envelopedKeyBlob!, "hex");
  const der = sm2EnvelopedKeyFromBlob(blob);
  const path = tmp.write("vector.sm2envelopedkey.der", der);
  const parsed = openssl(["asn1parse", "-inform", "DER", "-in", path]);
  assert.equal(parsed.status, 0, parsed.stderr);
  // The four fields at depth 1, found by openssl itself: AlgorithmIdentifier, SM2Cipher, two BIT STRINGs.
  const top = [...parsed.stdout.matchAll(/^\s*(\d+):d=1\s+hl=(\d+)\s+l=\s*(\d+) (cons|prim): (\S+)/gm)]
    .map((m) => ({ offset: Number(m[1]), hl: Number(m[2]), len: Number(m[3]), type: m[5] }));
  assert.deepEqual(top.map((f) => f.type), ["SEQUENCE", "SEQUENCE", "BIT", "BIT"]);
  assert.match(parsed.stdout, /OBJECT\s+:(sm4-ecb|SM4-ECB|1\.2\.156\.10197\.1\.104\.1)/);
  const cut = (f: (typeof top)[number], skip = 0) => der.subarray(f.offset + f.hl + skip, f.offset + f.hl + f.len);
  const cipherPath = tmp.write("vector.sm2cipher.der", der.subarray(top[1]!.offset, top[1]!.offset + top[1]!.hl + top[1]!.len));
  const holder = hexKey(vector.holderSigningPrivateKey!, vector.holderSigningPublicKey!);
  const holderPem = tmp.write("vector-holder-2.pem", derToPem(sm2Pkcs8(holder), "PRIVATE KEY"));
  const k = `${tmp.dir}/vector2.k`;
  assert.equal(openssl(["pkeyutl", "-decrypt", "-inkey", holderPem, "-in", cipherPath, "-out", k]).status, 0);
  const d = `${tmp.dir}/vector2.d`;
  const enc = openssl(["enc", "-d", "-sm4-ecb", "-nopad", "-K", readFileSync(k).toString("hex"), "-in", tmp.write("vector2.encpriv", cut(top[3]!, 1)), "-out", d]);
  assert.equal(enc.status, 0, enc.stderr);
  assert.equal(readFileSync(d).toString("hex"), vector.encryptionPrivateKey);
  assert.equal(cut(top[2]!, 1).toString("hex"), vector.encryptionPublicKey);
  // Read back into the same fields, and shown in the docs.
  assert.deepEqual(parseSm2EnvelopedKey(der), parseEnvelopedKeyBlob(blob));
  const docs = readFileSync(resolve(import.meta.dirname, "../../../docs/envelopes.md"), "utf8").replace(/\s+/g, "");
  assert.ok(docs.includes(der.toString("hex")), "docs/envelopes.md shows the SM2EnvelopedKey of the vector");
});

test("a damaged SM2EnvelopedKey is ENVELOPE_MALFORMED", () => {
  const der = sm2EnvelopedKeyFromBlob(Buffer.from(vector.envelopedKeyBlob!, "hex"));
  const flip = (at: number) => { const b = Buffer.from(der); b[at] = b[at]! ^ 0x01; return b; };
  const sm4At = der.indexOf(Buffer.from("2a811ccf55016801", "hex"));
  assert.ok(sm4At > 0, "the SM4-ECB OID is in the DER");
  for (const [name, bad] of [
    ["truncated", der.subarray(0, der.length - 3)],
    ["trailing octet", Buffer.concat([der, Buffer.from([0])])],
    ["another symmetric algorithm", flip(sm4At + 7)],
    ["public key off the curve", flip(der.length - 40)],
    ["empty", Buffer.alloc(0)],
  ] as Array<[string, Buffer]>) {
    assert.throws(() => parseSm2EnvelopedKey(bad), code("ENVELOPE_MALFORMED"), name);
  }
});
