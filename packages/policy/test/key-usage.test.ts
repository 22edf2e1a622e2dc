import { test } from "node:test";
import assert from "node:assert/strict";
import { effectiveKeyUsage, type KeyUsageName } from "../src/index.js";

test("key usage follows the key's algorithm and the extended key usage (issue 17)", () => {
  const cases: Array<[string, KeyUsageName[], string[], string, KeyUsageName[]]> = [
    ["EC key drops keyEncipherment (RFC 8813)", ["digitalSignature", "keyEncipherment"], [], "p256", ["digitalSignature"]],
    ["RSA key keeps keyEncipherment without EKU", ["digitalSignature", "keyEncipherment"], [], "rsa2048", ["digitalSignature", "keyEncipherment"]],
    ["RSA key drops keyAgreement", ["digitalSignature", "keyAgreement"], [], "rsa3072", ["digitalSignature"]],
    ["clientAuth drops keyEncipherment for RSA", ["digitalSignature", "keyEncipherment"], ["clientAuth"], "rsa2048", ["digitalSignature"]],
    ["clientAuth drops nonRepudiation", ["digitalSignature", "nonRepudiation"], ["clientAuth"], "p384", ["digitalSignature"]],
    ["clientAuth keeps keyAgreement for EC", ["digitalSignature", "keyAgreement"], ["clientAuth"], "p256", ["digitalSignature", "keyAgreement"]],
    ["two EKUs: the one keeping most", ["digitalSignature", "nonRepudiation"], ["clientAuth", "emailProtection"], "p256", ["digitalSignature", "nonRepudiation"]],
    ["an EKU by unknown OID constrains nothing", ["digitalSignature", "nonRepudiation"], ["1.2.3.4"], "p256", ["digitalSignature", "nonRepudiation"]],
    ["nothing left: digitalSignature", ["keyEncipherment"], [], "p256", ["digitalSignature"]],
    ["an algorithm of another family (SM2) is not filtered", ["digitalSignature", "keyEncipherment"], [], "sm2", ["digitalSignature", "keyEncipherment"]],
  ];
  for (const [name, keyUsage, extKeyUsage, algorithm, want] of cases) {
    assert.deepEqual(effectiveKeyUsage({ keyUsage, extKeyUsage }, algorithm), want, name);
  }
});
