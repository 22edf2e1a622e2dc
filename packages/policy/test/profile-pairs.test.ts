import { test } from "node:test";
import assert from "node:assert/strict";
import { effectiveKeyUsage, isPairProfile, pairViewsOf, parseCertificateProfile, resolveProfile, isUkeyError } from "../src/index.js";

// Issue 13: profiles that issue a signing + encryption certificate pair.
const pair = { signing: { keyUsage: ["digitalSignature", "nonRepudiation"] }, encryption: { keyUsage: ["keyAgreement", "dataEncipherment"] } };

test("an SM2 profile with a pair: each certificate gets its own key usage, the encryption one no EKU", () => {
  const p = parseCertificateProfile({ id: "gm", keyAlgorithms: ["sm2"], extKeyUsage: ["clientAuth"], certificates: pair, renewal: { windows: { est: null } } });
  assert.equal(isPairProfile(p), true);
  const v = pairViewsOf(p);
  assert.deepEqual(effectiveKeyUsage(v.signing, "sm2"), ["digitalSignature"], "clientAuth keeps digitalSignature only, as for single certificates");
  assert.deepEqual(v.encryption!.keyUsage, ["keyAgreement", "dataEncipherment"]);
  assert.deepEqual(v.encryption!.extKeyUsage, []);
  assert.deepEqual(effectiveKeyUsage(v.encryption!, "sm2"), ["keyAgreement", "dataEncipherment"]);
  assert.equal(pairViewsOf(p).encryption, v.encryption, "the same view on every call (CA builders are cached per profile)");
});

test("single-certificate profiles are unchanged: no pair, their own signing view", () => {
  const p = parseCertificateProfile({ id: "personal" });
  assert.equal(isPairProfile(p), false);
  assert.equal(pairViewsOf(p).signing, p);
  assert.equal(pairViewsOf(p).encryption, undefined);
  assert.equal(isPairProfile(parseCertificateProfile({ id: "x", keyAlgorithms: ["sm2"], certificates: null })), false);
});

test("gov-supervision (seed 004) is an SM2 pair; with certificates null and other algorithms, one certificate as before", () => {
  const p = resolveProfile({ id: "gov", preset: "gov-supervision" });
  assert.deepEqual(p.keyAlgorithms, ["sm2"]);
  assert.deepEqual(p.certificates, pair);
  assert.equal(p.renewal.windows.est, null);
  const single = resolveProfile({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  assert.equal(isPairProfile(single), false);
  assert.deepEqual(effectiveKeyUsage(single, "p256"), ["digitalSignature"]);
});

const rsaPair = { signing: { keyUsage: ["digitalSignature", "nonRepudiation"] }, encryption: { keyUsage: ["keyEncipherment", "dataEncipherment"] } };

test("an RSA pair: the encryption certificate enciphers keys and data, as RSA keys may (RFC 4055)", () => {
  const p = parseCertificateProfile({ id: "rsa", keyAlgorithms: ["rsa2048", "rsa3072"], extKeyUsage: ["clientAuth"], certificates: rsaPair, renewal: { windows: { est: null } } });
  assert.equal(isPairProfile(p), true);
  const v = pairViewsOf(p);
  assert.deepEqual(effectiveKeyUsage(v.encryption!, "rsa2048"), ["keyEncipherment", "dataEncipherment"]);
  assert.deepEqual(effectiveKeyUsage(v.signing, "rsa3072"), ["digitalSignature"]);
});

const refusals: Array<[string, unknown, string, string]> = [
  ["refuses a pair of SM2 and RSA keys (the envelope follows the signing key)", { id: "r", keyAlgorithms: ["sm2", "rsa2048"], certificates: pair }, "PROFILE_PAIR_ALGORITHM_UNSUPPORTED", "keyAlgorithms"],
  ["refuses an RSA pair whose encryption certificate agrees keys", { id: "r", keyAlgorithms: ["rsa2048"], certificates: pair }, "PROFILE_PAIR_ALGORITHM_UNSUPPORTED", "certificates.encryption.keyUsage"],
  ["refuses an RSA pair without keyEncipherment", { id: "r", keyAlgorithms: ["rsa2048"], certificates: { ...rsaPair, encryption: { keyUsage: ["dataEncipherment"] } } }, "PROFILE_PAIR_ALGORITHM_UNSUPPORTED", "certificates.encryption.keyUsage"],
  ["refuses an ECDSA pair (ECDSA keys cannot encipher)", { id: "r", keyAlgorithms: ["p256"], certificates: pair }, "PROFILE_PAIR_ALGORITHM_UNSUPPORTED", "keyAlgorithms"],
  ["refuses a pair that also accepts P-256", { id: "r", keyAlgorithms: ["sm2", "p256"], certificates: pair }, "PROFILE_PAIR_ALGORITHM_UNSUPPORTED", "keyAlgorithms"],
  ["refuses keyEncipherment on the signing certificate", { id: "r", keyAlgorithms: ["sm2"], renewal: { windows: { est: null } }, certificates: { ...pair, signing: { keyUsage: ["keyEncipherment"] } } }, "PROFILE_INVALID", "certificates.signing.keyUsage.0"],
  ["refuses digitalSignature on the encryption certificate", { id: "r", keyAlgorithms: ["sm2"], certificates: { ...pair, encryption: { keyUsage: ["digitalSignature"] } } }, "PROFILE_INVALID", "certificates.encryption.keyUsage.0"],
  ["refuses an empty encryption key usage", { id: "r", keyAlgorithms: ["sm2"], certificates: { ...pair, encryption: { keyUsage: [] } } }, "PROFILE_INVALID", "certificates.encryption.keyUsage"],
  ["refuses a pair without its encryption half", { id: "r", keyAlgorithms: ["sm2"], certificates: { signing: pair.signing } }, "PROFILE_INVALID", "certificates.encryption"],
  ["refuses EST for a pair (it cannot carry the envelope)", { id: "r", keyAlgorithms: ["sm2"], certificates: pair }, "PROFILE_INVALID", "renewal.windows.est"],
  ["refuses an unknown key in a pair", { id: "r", keyAlgorithms: ["sm2"], certificates: { ...pair, archive: {} } }, "PROFILE_INVALID", "certificates.archive"],
];
for (const [name, input, code, path] of refusals) {
  test(name, () => {
    assert.throws(() => parseCertificateProfile(input), (e: unknown) => {
      assert.ok(isUkeyError(e, code as "PROFILE_INVALID"), String(e));
      assert.equal((e as unknown as { path: unknown[] }).path.join("."), path);
      return true;
    });
  });
}
