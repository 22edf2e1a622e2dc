import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { sm2 as smSm2 } from "sm-crypto-v2";
import {
  defaultKeyVendors, describeError, isUkeyError, mergeKeyVendorTables, parseKeyVendorTable, type KeyVendorTable, type Pkcs11Sm2Mechanisms,
} from "@ukey/policy";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { ecdsaRawToDer } from "../../src/keys/certificate-fields.js";
import { CK } from "../../src/keys/cryptoki.js";
import { Pkcs11Backend } from "../../src/keys/pkcs11-backend.js";
import {
  SM2_EC_PARAMS, sm2DerToRaw, sm2KeyAttributes, sm2PointOfEcPoint, sm2SignatureRaw, sm2SignRequest,
} from "../../src/keys/pkcs11-sm2.js";
import { SM2_DEFAULT_ID, sm2Digest, sm2PointOfSpki, sm2Spki, sm2VerifyDigest } from "../../src/keys/sm2.js";
import { openSession } from "../../src/flows/token-access.js";
import type { Prompter } from "../../src/prompter.js";

// SM2 on PKCS#11 keys through the vendor table's values (issue 15, part 3).
// No PKCS#11 module with SM2 runs here (SoftHSM2, the one module here, has
// none), and PKCS#11 is not mocked: what the agent does around the module
// call is tested against the OpenSSL CLI (Z, e = SM3(Z || M), r || s and
// DER), and on SoftHSM2 the refusal before anything is written. Key
// generation and signing on a PKCS#11 token with SM2 are NOT exercised.

let tmp: string;
before(() => { tmp = mkdtempSync(join(tmpdir(), "p11-sm2-")); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8" });
  assert.ok(!r.error, `openssl must be installed: ${String(r.error)}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const pem = (der: Buffer) => `-----BEGIN PUBLIC KEY-----\n${der.toString("base64").replace(/(.{64})/g, "$1\n")}\n-----END PUBLIC KEY-----\n`;

// The values xipki's vendor.conf publishes for TASS and Sansec HSMs (docs/key-vendors.md), matched here to SoftHSM2.
const tass = { keyType: "0x80000004", keyPairGen: "0x80008001", sm3WithSm2: "0x80008100", sm2: "0x80008000", signatureFormat: "der" };
const sansecDigest = { keyType: "0x80000004", keyPairGen: "0x80008001", sm3WithSm2: "0x80008100", sm2: "0x80008104", signs: "digest" };
const softHsmAs = (pkcs11Sm2: unknown): KeyVendorTable => mergeKeyVendorTables(defaultKeyVendors, parseKeyVendorTable([{
  id: "pkcs11-softhsm2",
  match: { manufacturerId: "SoftHSM project", model: "SoftHSM v2" },
  vendor: { zh: "SoftHSM（测试用软件令牌）", en: "SoftHSM (software token for tests)" },
  pkcs11Sm2,
}]));
const valuesOf = (table: KeyVendorTable): Pkcs11Sm2Mechanisms => table.find((e) => e.id === "pkcs11-softhsm2")!.pkcs11Sm2!;

test("e = SM3(Z || M) with the standard ID is what OpenSSL signs and verifies with distid:1234567812345678", () => {
  // OpenSSL signs, the agent's digest verifies it.
  const key = join(tmp, "sm2.pem");
  const msg = join(tmp, "msg");
  const message = Buffer.from("CertificationRequestInfo stand-in: 证书请求");
  writeFileSync(msg, message);
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", key]).status, 0);
  const spkiDer = createPublicKey(readFileSync(key)).export({ format: "der", type: "spki" });
  const point = sm2PointOfSpki(spkiDer);
  assert.ok(point, "OpenSSL's SM2 SubjectPublicKeyInfo is id-ecPublicKey on the SM2 curve");
  const sigPath = join(tmp, "openssl.sig");
  const signed = openssl(["dgst", "-sm3", "-sign", key, "-sigopt", `distid:${SM2_DEFAULT_ID}`, "-out", sigPath, msg]);
  assert.equal(signed.status, 0, signed.out);
  const rs = sm2DerToRaw(readFileSync(sigPath));
  assert.equal(sm2VerifyDigest(sm2Digest(message, point), rs, point), true, "OpenSSL's signature verifies over the agent's e");
  assert.equal(sm2VerifyDigest(sm2Digest(message, point, "another-id"), rs, point), false, "another ID gives another e");
  assert.equal(sm2VerifyDigest(sm2Digest(Buffer.concat([message, Buffer.from("x")]), point), rs, point), false);

  // The agent's e, signed raw (as a module's digest mechanism does), DER-encoded, verifies in OpenSSL.
  const pair = smSm2.generateKeyPairHex();
  const ownPoint = Buffer.from(pair.publicKey, "hex");
  const values = valuesOf(softHsmAs(sansecDigest));
  const request = sm2SignRequest(values, message, ownPoint);
  assert.equal(request.mechanism.mechanism, 0x80008104);
  assert.equal(request.mechanism.parameter, undefined, "a digest mechanism takes no ID");
  assert.deepEqual(request.data, sm2Digest(message, ownPoint), "the module is handed e");
  const raw = Buffer.from(smSm2.doSignature(request.data, pair.privateKey, { hash: false, der: false }), "hex");
  const der = ecdsaRawToDer(sm2SignatureRaw(values, raw));
  writeFileSync(join(tmp, "agent.sig"), der);
  writeFileSync(join(tmp, "agent.pub"), pem(sm2Spki(ownPoint)));
  const ok = openssl(["dgst", "-sm3", "-verify", join(tmp, "agent.pub"), "-sigopt", `distid:${SM2_DEFAULT_ID}`, "-signature", join(tmp, "agent.sig"), msg]);
  assert.equal(ok.status, 0, ok.out);
  assert.match(ok.out, /Verified OK/);
  const emptyId = openssl(["dgst", "-sm3", "-verify", join(tmp, "agent.pub"), "-signature", join(tmp, "agent.sig"), msg]);
  assert.notEqual(emptyId.status, 0, "the standard ID is in the signature: the empty ID does not verify it");

  // A module that signs the message is given it whole, with the standard ID as the mechanism parameter.
  const byMessage = sm2SignRequest(valuesOf(softHsmAs(tass)), message, ownPoint);
  assert.deepEqual(byMessage.mechanism, { mechanism: 0x80008100, parameter: Buffer.from("1234567812345678") });
  assert.deepEqual(byMessage.data, message);
  assert.deepEqual(byMessage.digest, request.digest, "and its signature is still checked over e");
});

test("r || s to DER and back, and what is neither is refused", () => {
  const hex = (s: string) => Buffer.from(s.replace(/\s/g, ""), "hex");
  const cases = [
    Buffer.alloc(64, 0x11),
    Buffer.concat([Buffer.alloc(32, 0x80), Buffer.alloc(32, 0xff)]), // high bits: both INTEGERs need a 00 octet
    Buffer.concat([Buffer.alloc(3), Buffer.alloc(29, 0x42), Buffer.alloc(31), Buffer.from([1])]), // leading zeros: short INTEGERs
  ];
  for (const rs of cases) {
    const der = ecdsaRawToDer(rs);
    assert.deepEqual(sm2DerToRaw(der), rs);
    // OpenSSL reads the same two INTEGERs.
    writeFileSync(join(tmp, "sig.der"), der);
    const parsed = openssl(["asn1parse", "-inform", "DER", "-in", join(tmp, "sig.der")]);
    assert.equal(parsed.status, 0, parsed.out);
    assert.equal((parsed.out.match(/INTEGER/g) ?? []).length, 2);
  }
  assert.equal(ecdsaRawToDer(cases[1]!).subarray(0, 5).toString("hex"), "3046022100");
  const malformed = (der: Buffer) => () => sm2DerToRaw(der);
  const isDer = (e: unknown) => isUkeyError(e, "DER_MALFORMED");
  assert.throws(malformed(Buffer.concat([ecdsaRawToDer(cases[0]!), Buffer.from([0])])), isDer); // trailing octet
  assert.throws(malformed(hex("3008 0202 0001 0202 0001")), isDer); // padded INTEGERs: BER, not DER
  assert.throws(malformed(hex("3009 020101 020101 020101")), isDer); // three INTEGERs
  assert.throws(malformed(hex("3006 020181 020101")), isDer); // a negative r
  assert.throws(malformed(Buffer.concat([hex("3026 0221 01"), Buffer.alloc(32, 1), hex("020101")])), isDer); // r of 33 octets
  assert.throws(malformed(hex("0440")), isDer);

  const raw = valuesOf(softHsmAs({ ...tass, signatureFormat: "raw" }));
  const der = valuesOf(softHsmAs(tass));
  assert.deepEqual(sm2SignatureRaw(raw, cases[0]!), cases[0]);
  assert.deepEqual(sm2SignatureRaw(der, ecdsaRawToDer(cases[1]!)), cases[1]);
  assert.throws(() => sm2SignatureRaw(raw, ecdsaRawToDer(cases[0]!)), (e) => isUkeyError(e, "TOKEN_OPERATION_FAILED") && /70 octets, not the 64 of r \|\| s/.test(String(e.params.reason)));
  assert.throws(() => sm2SignatureRaw(der, cases[0]!), (e) => isUkeyError(e, "TOKEN_OPERATION_FAILED") && /not the DER/.test(String(e.params.reason)));
});

test("CKA_EC_POINT: a DER OCTET STRING or the bare point, on the SM2 curve only", () => {
  const point = Buffer.from(smSm2.generateKeyPairHex().publicKey, "hex");
  assert.equal(point.length, 65);
  assert.deepEqual(sm2PointOfEcPoint(point), point, "bare 04 || x || y");
  assert.deepEqual(sm2PointOfEcPoint(Buffer.concat([Buffer.from([0x04, 0x41]), point])), point, "OCTET STRING, short length");
  assert.deepEqual(sm2PointOfEcPoint(Buffer.concat([Buffer.from([0x04, 0x81, 0x41]), point])), point, "OCTET STRING, long length");
  assert.equal(sm2PointOfEcPoint(undefined), undefined);
  assert.equal(sm2PointOfEcPoint(point.subarray(0, 64)), undefined, "truncated");
  assert.equal(sm2PointOfEcPoint(Buffer.concat([Buffer.from([0x03, 0x41]), point])), undefined, "not an OCTET STRING");
  assert.equal(sm2PointOfEcPoint(Buffer.concat([Buffer.from([0x04, 0x42]), point, Buffer.from([0])])), undefined, "wrong length");
  const off = Buffer.from(point);
  off[64] = off[64]! ^ 1;
  assert.equal(sm2PointOfEcPoint(off), undefined, "not on the SM2 curve");
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "der", type: "spki" }).subarray(-65);
  assert.equal(sm2PointOfEcPoint(p256), undefined, "a P-256 point is not an SM2 key");

  // What key generation puts in the template: the vendor's key type and, unless told not to, the curve.
  assert.equal(SM2_EC_PARAMS.toString("hex"), "06082a811ccf5501822d");
  writeFileSync(join(tmp, "oid.der"), SM2_EC_PARAMS);
  assert.match(openssl(["asn1parse", "-inform", "DER", "-in", join(tmp, "oid.der")]).out, /OBJECT\s+:(sm2|SM2|1\.2\.156\.10197\.1\.301)$/m);
  assert.deepEqual(sm2KeyAttributes(valuesOf(softHsmAs(tass))), [{ type: CK.CKA_KEY_TYPE, value: 0x80000004 }, { type: CK.CKA_EC_PARAMS, value: SM2_EC_PARAMS }]);
  assert.deepEqual(sm2KeyAttributes(valuesOf(softHsmAs({ ...tass, ecParams: false }))), [{ type: CK.CKA_KEY_TYPE, value: 0x80000004 }]);
});

test("the vendor entry: how the module signs, in what format, with or without the curve; bad entries refused", () => {
  assert.deepEqual(valuesOf(softHsmAs(tass)), { keyType: 0x80000004, keyPairGen: 0x80008001, sm3WithSm2: 0x80008100, sm2: 0x80008000, signatureFormat: "der" });
  assert.deepEqual(valuesOf(softHsmAs({ ...sansecDigest, ecParams: false })),
    { keyType: 0x80000004, keyPairGen: 0x80008001, sm3WithSm2: 0x80008100, sm2: 0x80008104, signs: "digest", ecParams: false });
  const refused = (pkcs11Sm2: unknown, reason: RegExp) => assert.throws(() => softHsmAs(pkcs11Sm2), (e) => {
    assert.ok(isUkeyError(e, "KEY_VENDOR_TABLE_INVALID"), String(e));
    assert.match(String(e.params.reason), reason);
    return true;
  });
  refused({ ...sansecDigest, sm2: undefined }, /keyVendors\[0\]\.pkcs11Sm2\.sm2: signs "digest" needs the mechanism that signs a digest/);
  refused({ ...tass, signs: "hash" }, /pkcs11Sm2\.signs/);
  refused({ ...tass, signatureFormat: "asn1" }, /pkcs11Sm2\.signatureFormat/);
  refused({ ...tass, ecParams: "yes" }, /pkcs11Sm2\.ecParams/);
  refused({ ...tass, sm2: 0x1041 }, /pkcs11Sm2\.sm2: must be vendor-defined/); // CKM_ECDSA
  // The refusal an operator sees: both languages and a remedy.
  const d = describeError("KEY_VENDOR_TABLE_INVALID", { reason: "keyVendors[0].pkcs11Sm2.sm2: …" });
  assert.match(d.message["zh-CN"], /厂商表/);
  assert.match(d.message.en, /key vendor table/);
  assert.match(d.remedy["zh-CN"], /keyVendors/);
  assert.match(d.remedy.en, /docs\/key-vendors\.md/);
});

/** The token's objects, counted by pkcs11-tool in its own process (not through the agent's code). */
function objectCount(hsm: SoftHsmToken): number {
  const r = spawnSync("pkcs11-tool", ["--module", hsm.module, "--token-label", hsm.tokenLabel, "--login", "--pin", hsm.pin, "--list-objects"],
    { encoding: "utf8", env: process.env });
  assert.equal(r.status, 0, `pkcs11-tool must be installed and list the objects: ${String(r.error ?? "")}${r.stderr}`);
  return (r.stdout.match(/^(Private Key|Public Key|Certificate|Data|Secret Key) Object/gm) ?? []).length;
}

test("SoftHSM2 with a vendor entry naming mechanisms it lacks: generateKeyPair(\"sm2\") refuses with TOKEN_MECHANISM_MISSING before writing anything", async () => {
  const hsm = createSoftHsmToken("sm2-vendor", "123456", "654321");
  const backends: Pkcs11Backend[] = [];
  try {
    // An EC pair first, so that the count is not trivially zero.
    const plain = new Pkcs11Backend(hsm.module);
    backends.push(plain);
    const [token] = await plain.listTokens();
    assert.ok(token);
    const s0 = await plain.open(token.serial, hsm.pin);
    await s0.generateKeyPair("p256", "existing");
    await s0.close();
    const before = objectCount(hsm);
    assert.equal(before, 2);

    const offered = await plain.mechanisms(token.serial);
    console.log(`# NOT RUN: SM2 key generation and SM3withSM2 signing on a PKCS#11 token were not exercised: no PKCS#11 module with SM2 exists here (SoftHSM2 lists ${offered.length} mechanisms, none vendor-defined).`
      + " A vendor must provide a module whose C_GetMechanismList lists its SM2 key pair generation and signing mechanisms (CKM_VENDOR_DEFINED + n),"
      + " an SM2 key type (CKK_VENDOR_DEFINED + n) with CKA_EC_POINT readable on the public key, and those values for the keyVendors entry (docs/key-vendors.md).");
    await plain.close();
    backends.pop();

    const cases: [string, KeyVendorTable, string][] = [
      ["TASS's values", softHsmAs(tass), "SM2 key pair generation (0x80008001)"],
      ["no pkcs11Sm2 for this key", defaultKeyVendors, "SM2"],
      // Past the first check (a mechanism SoftHSM2 has, which the schema would refuse: written here directly), the digest signer is checked too.
      ["Sansec's digest signer", [{ ...softHsmAs(sansecDigest).find((e) => e.id === "pkcs11-softhsm2")!,
        pkcs11Sm2: { ...valuesOf(softHsmAs(sansecDigest)), keyPairGen: CK.CKM_EC_KEY_PAIR_GEN } }], "SM2 (digest) (0x80008104)"],
      ["an SM3withSM2 signer", [{ ...softHsmAs(tass).find((e) => e.id === "pkcs11-softhsm2")!,
        pkcs11Sm2: { ...valuesOf(softHsmAs(tass)), keyPairGen: CK.CKM_EC_KEY_PAIR_GEN } }], "SM3withSM2 (0x80008100)"],
    ];
    for (const [name, keyVendors, mechanism] of cases) {
      const backend = new Pkcs11Backend(hsm.module, { keyVendors });
      backends.push(backend);
      const session = await backend.open(token.serial, hsm.pin);
      await assert.rejects(session.generateKeyPair("sm2", "sm2-key", "5a"), (e) => {
        assert.ok(isUkeyError(e, "TOKEN_MECHANISM_MISSING"), `${name}: ${String(e)}`);
        assert.equal(e.params.mechanism, mechanism, name);
        assert.equal(e.params.module, hsm.module);
        return true;
      });
      await session.close();
      assert.equal(objectCount(hsm), before, `${name}: nothing was written to the token`);
      // The existing pair is still read as it was.
      const again = await backend.open(token.serial, hsm.pin);
      assert.deepEqual((await again.listKeys()).map((k) => [k.label, k.algorithm]), [["existing", "p256"]]);
      await again.close();
      await backend.close();
      backends.pop();
    }

    // The institution's table (as renew and download pass it to login) reaches a backend opened with the built-in one.
    const backend = new Pkcs11Backend(hsm.module);
    backends.push(backend);
    const no = () => Promise.reject(new Error("not asked in this test"));
    const prompter: Prompter = { pin: async () => hsm.pin, idNumber: no, oneTimeCode: no, stepUp: no, confirm: no, progress: () => undefined };
    const builtIn = await openSession(backend, prompter, token.serial, "renew");
    assert.equal(builtIn.pkcs11Sm2, undefined, "the built-in table has no SM2 values for SoftHSM2");
    await builtIn.close();
    const institution = await openSession(backend, prompter, token.serial, "renew", { vendors: softHsmAs(tass) });
    assert.equal(institution.pkcs11Sm2?.keyPairGen, 0x80008001);
    await assert.rejects(institution.generateKeyPair("sm2", "sm2-key"), (e) => isUkeyError(e, "TOKEN_MECHANISM_MISSING") && e.params.mechanism === "SM2 key pair generation (0x80008001)");
    await institution.close();
    assert.equal(objectCount(hsm), before);
  } finally {
    for (const b of backends) await b.close();
    hsm.cleanup();
  }
});
