import { test } from "node:test";
import assert from "node:assert/strict";
import { isUkeyError } from "@ukey/policy";
import { derToPem, newSerial, normaliseSerial, pemToDer, serialBytes, serialHex, splitPemBundle } from "../src/index.js";
import { oid, oidToString, readWhole, smallInteger, x509Time } from "../src/der.js";

const code = (c: string) => (e: unknown) => isUkeyError(e) && e.code === c;

test("newSerial is a positive 128-bit integer and never repeats", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const s = newSerial();
    assert.equal(s[0]! & 0x80, 0, "positive");
    assert.ok(s.length === 16 || (s.length === 17 && s[0] === 0 && s[1]! & 0x80), `length ${s.length}`);
    seen.add(serialHex(s));
  }
  assert.equal(seen.size, 2000);
});

test("serialHex gives minimal even-length lower-case hex", () => {
  const cases: Array<[string, string]> = [
    ["008f12", "8f12"],
    ["0f12", "0f12"],
    ["00000f12", "0f12"],
    ["7fAB", "7fab"],
    ["00", "00"],
  ];
  for (const [input, want] of cases) assert.equal(serialHex(Buffer.from(input, "hex")), want, input);
});

test("normaliseSerial accepts what people paste and refuses the rest", () => {
  const good: Array<[string, string]> = [
    ["3A:F2:01", "3af201"],
    ["0x3af201", "3af201"],
    ["  3a f2 01 ", "3af201"],
    ["f12", "0f12"],
    ["00:8F:12", "8f12"],
    ["a".repeat(40), "a".repeat(40)],
  ];
  for (const [input, want] of good) assert.equal(normaliseSerial(input), want, input);
  for (const bad of ["", "0", "00:00", "xyz", "3a-f2", "g1", "a".repeat(41), "0x"]) {
    assert.throws(() => normaliseSerial(bad), code("SERIAL_MALFORMED"), bad);
  }
  assert.deepEqual(serialBytes("01:02"), Buffer.from([1, 2]));
});

const der = Buffer.from("3006020101020102", "hex");

test("PEM round trip tolerates CRLF, indentation and surrounding text", () => {
  const pem = derToPem(der, "CERTIFICATE");
  assert.equal(pem, "-----BEGIN CERTIFICATE-----\nMAYCAQECAQI=\n-----END CERTIFICATE-----\n");
  const messy = `subject=CN = x\r\n  -----BEGIN CERTIFICATE-----\r\n  MAYC\r\n  AQECAQI=\r\n-----END CERTIFICATE-----\r\n`;
  assert.deepEqual(pemToDer(messy, "CERTIFICATE"), der);
  assert.deepEqual(pemToDer(pem, ["X509 CRL", "CERTIFICATE"]), der);
});

test("PEM errors name what is wrong", () => {
  const cases: Array<[string, string, string]> = [
    ["no block", "hello", "PEM_MALFORMED"],
    ["wrong label", derToPem(der, "X509 CRL"), "PEM_MALFORMED"],
    ["not base64", "-----BEGIN CERTIFICATE-----\nMAY*AQECAQI=\n-----END CERTIFICATE-----", "PEM_MALFORMED"],
    ["empty body", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "PEM_MALFORMED"],
    ["mismatched END", "-----BEGIN CERTIFICATE-----\nMAYCAQECAQI=\n-----END X509 CRL-----", "PEM_MALFORMED"],
    ["truncated DER", "-----BEGIN CERTIFICATE-----\nMAYCAQECAQ==\n-----END CERTIFICATE-----", "DER_MALFORMED"],
    ["trailing bytes", `-----BEGIN CERTIFICATE-----\n${Buffer.concat([der, Buffer.from([0])]).toString("base64")}\n-----END CERTIFICATE-----`, "DER_MALFORMED"],
  ];
  for (const [name, text, want] of cases) assert.throws(() => pemToDer(text, "CERTIFICATE"), code(want), name);
  assert.throws(() => derToPem(Buffer.from([0x30, 0x05, 0x01]), "CERTIFICATE"), code("DER_MALFORMED"));
});

test("splitPemBundle returns every block in order", () => {
  const other = Buffer.from("3003020103", "hex");
  const blocks = splitPemBundle(`${derToPem(der, "CERTIFICATE")}junk between\n${derToPem(other, "X509 CRL")}`);
  assert.deepEqual(blocks.map((b) => b.label), ["CERTIFICATE", "X509 CRL"]);
  assert.deepEqual(blocks[1]!.der, other);
  assert.throws(() => splitPemBundle(`${derToPem(der, "CERTIFICATE")}-----BEGIN CERTIFICATE-----\nMAYC`), code("PEM_MALFORMED"));
});

test("DER reader refuses indefinite and non-minimal lengths", () => {
  const cases: Array<[string, string]> = [
    ["indefinite", "3080020101 0000"],
    ["non-minimal long form", "30810302 0101"],
    ["length past end", "3005020101"],
    ["empty", ""],
  ];
  for (const [name, hex] of cases) assert.throws(() => readWhole(Buffer.from(hex.replace(/ /g, ""), "hex")), code("DER_MALFORMED"), name);
});

test("DER encoders match known encodings", () => {
  assert.equal(oid("1.2.840.10045.3.1.7").toString("hex"), "06082a8648ce3d030107");
  assert.equal(oidToString(oid("2.5.29.37").subarray(2)), "2.5.29.37");
  assert.equal(oidToString(oid("1.3.6.1.4.1.311.21.7").subarray(2)), "1.3.6.1.4.1.311.21.7");
  assert.equal(smallInteger(0).toString("hex"), "020100");
  assert.equal(smallInteger(128).toString("hex"), "02020080");
  assert.equal(x509Time(new Date("2049-12-31T23:59:59.999Z")).toString("latin1").slice(2), "491231235959Z");
  assert.equal(x509Time(new Date("2050-01-01T00:00:00Z")).toString("latin1").slice(2), "20500101000000Z");
  assert.equal(x509Time(new Date("2050-01-01T00:00:00Z"))[0], 0x18);
  assert.equal(x509Time(new Date("1999-01-01T00:00:00Z"))[0], 0x17);
});
