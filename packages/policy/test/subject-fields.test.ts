import { test } from "node:test";
import assert from "node:assert/strict";
import { keyAlgorithmLabel, shortSerial, subjectFields } from "../src/subject-fields.js";

// Issue 16: subjects and serials as a holder reads them, not a raw DN or 40 hex digits.
const subjects: [string, string, ReturnType<typeof subjectFields>][] = [
  ["RFC 4514 order, as the server writes it", "C=CN, O=示例银行, CN=张三, serialNumber=H1",
    { country: "CN", organisation: "示例银行", name: "张三", id: "H1" }],
  ["OpenSSL's slashes", "/C=CN/O=Example Bank/OU=Retail/CN=Li Si/serialNumber=C0001",
    { country: "CN", organisation: "Example Bank Retail", name: "Li Si", id: "C0001" }],
  ["an escaped comma stays in the value", "CN=Wang\\, Wu, O=ACME\\, Inc.",
    { name: "Wang, Wu", organisation: "ACME, Inc." }],
  ["e-mail and the dotted serialNumber OID", "CN=Zhao, 2.5.4.5=ID-9, emailAddress=z@example.cn",
    { name: "Zhao", id: "ID-9", email: "z@example.cn" }],
  ["not a DN: no fields", "hello world", {}],
];
for (const [name, dn, want] of subjects) test(`subjectFields: ${name}`, () => assert.deepEqual(subjectFields(dn), want));

test("shortSerial: the last eight hex digits in two groups, upper case, short serials whole", () => {
  assert.equal(shortSerial("7a3f00c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7"), "D4E5 F6A7");
  assert.equal(shortSerial("00:0a:1b"), "A1B");
  assert.equal(shortSerial("01a2b3c4d5"), "A2B3 C4D5");
  assert.equal(shortSerial("0"), "0");
});

test("keyAlgorithmLabel: names as certificate viewers show them", () => {
  assert.deepEqual(["p256", "p384", "rsa2048", "sm2", "ed448"].map(keyAlgorithmLabel), ["ECDSA P-256", "ECDSA P-384", "RSA 2048", "SM2", "ed448"]);
});
