import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { defaultProfile, isUkeyError, type CertificateProfile } from "@ukey/policy";
import { CertificateBuilder, derToPem, newSerial, type IssuanceInput, type SubjectSpec } from "../src/index.js";
import { epoch, makeTestCa, subjectKey, testUrls, type TestCa } from "./support/hierarchy.js";
import { openssl, tempDir } from "./support/openssl.js";
import { GeneralName, KeyUsageFlags, referenceTbs, type RefAttribute } from "./support/reference-tbs.js";

const tmp = tempDir();
let ca: TestCa;
let keys: Record<"p256" | "p384" | "rsa2048", { spki: Buffer }>;

before(async () => {
  // Valid into the 2060s, so that certificates past 2050 fit inside it.
  ca = await makeTestCa({ validityDays: 15000 });
  keys = { p256: subjectKey("p256"), p384: subjectKey("p384"), rsa2048: subjectKey("rsa2048") };
  tmp.write("root.pem", derToPem(ca.root.der, "CERTIFICATE"));
  tmp.write("issuing.pem", derToPem(ca.issuing.der, "CERTIFICATE"));
});
after(() => {
  ca.cleanup();
  tmp.cleanup();
});

const C = "2.5.4.6", O = "2.5.4.10", OU = "2.5.4.11", CN = "2.5.4.3", SN = "2.5.4.5", E = "1.2.840.113549.1.9.1";
const personalUsage = KeyUsageFlags.digitalSignature | KeyUsageFlags.nonRepudiation;

interface Case {
  name: string;
  key: keyof typeof keys;
  subject: SubjectSpec;
  refSubject: RefAttribute[];
  refSans: GeneralName[];
  notBefore: string;
  notAfter: string;
  serial?: Buffer;
}

const cases: Case[] = [
  {
    name: "EC P-256 subject without SANs",
    key: "p256",
    subject: { rdns: [["C", "CN"], ["O", "Example Bank"], ["CN", "Zhang San"]] },
    refSubject: [[C, "printableString", "CN"], [O, "utf8String", "Example Bank"], [CN, "utf8String", "Zhang San"]],
    refSans: [],
    notBefore: "2025-03-01T08:00:00Z",
    notAfter: "2030-02-28T08:00:00Z",
  },
  {
    name: "EC P-384 subject with a Chinese name, serialNumber, emailAddress and an email SAN",
    key: "p384",
    subject: {
      rdns: [["C", "CN"], ["O", "示例银行"], ["OU", "个人客户"], ["serialNumber", "110101199001011234"], ["emailAddress", "zs@example.test"], ["CN", "张三"]],
      sans: ["email:zs@example.test"],
    },
    refSubject: [[C, "printableString", "CN"], [O, "utf8String", "示例银行"], [OU, "utf8String", "个人客户"],
      [SN, "printableString", "110101199001011234"], [E, "ia5String", "zs@example.test"], [CN, "utf8String", "张三"]],
    refSans: [new GeneralName({ rfc822Name: "zs@example.test" })],
    notBefore: "2025-03-01T08:00:00.750Z",
    notAfter: "2030-02-28T08:00:00Z",
    serial: Buffer.from("00ff00112233445566778899aabbccddee", "hex"),
  },
  {
    name: "RSA subject with SANs of every kind",
    key: "rsa2048",
    subject: {
      rdns: [["C", "CN"], ["O", "Example Securities"], ["CN", "Li Si"]],
      sans: ["email:ls@example.test", "dns:ls.example.test", "uri:https://example.test/holders/42", "ip:192.0.2.7", "ip:2001:db8::7"],
    },
    refSubject: [[C, "printableString", "CN"], [O, "utf8String", "Example Securities"], [CN, "utf8String", "Li Si"]],
    refSans: [
      new GeneralName({ rfc822Name: "ls@example.test" }), new GeneralName({ dNSName: "ls.example.test" }),
      new GeneralName({ uniformResourceIdentifier: "https://example.test/holders/42" }),
      new GeneralName({ iPAddress: "192.0.2.7" }), new GeneralName({ iPAddress: "2001:db8::7" }),
    ],
    notBefore: "2025-03-01T08:00:00Z",
    notAfter: "2030-02-28T08:00:00Z",
  },
  {
    name: "validity past 2050 uses GeneralizedTime",
    key: "p256",
    subject: { rdns: [["C", "CN"], ["CN", "Wang Wu"]] },
    refSubject: [[C, "printableString", "CN"], [CN, "utf8String", "Wang Wu"]],
    refSans: [],
    notBefore: "2049-06-01T00:00:00Z",
    notAfter: "2054-06-01T00:00:00Z",
  },
  {
    name: "empty subject makes the SAN critical",
    key: "p256",
    subject: { rdns: [], sans: ["email:anon@example.test"] },
    refSubject: [],
    refSans: [new GeneralName({ rfc822Name: "anon@example.test" })],
    notBefore: "2025-03-01T08:00:00Z",
    notAfter: "2030-02-28T08:00:00Z",
  },
];

function input(c: Case, serial: Buffer): IssuanceInput {
  return { serial, subject: c.subject, spki: keys[c.key].spki, notBefore: new Date(c.notBefore), notAfter: new Date(c.notAfter), profile: defaultProfile };
}

test("TBS is byte for byte what asn1-x509 objects encode", () => {
  const builder = ca.builder();
  for (const c of cases) {
    const serial = c.serial ?? newSerial();
    const ours = builder.buildTbs(input(c, serial));
    const ref = referenceTbs({
      issuer: ca.issuing, signer: ca.issuingSigner, urls: testUrls, serial,
      notBefore: new Date(c.notBefore), notAfter: new Date(c.notAfter), subject: c.refSubject, spki: keys[c.key].spki,
      keyUsage: personalUsage, extKeyUsage: ["1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4"], sans: c.refSans,
    });
    assert.equal(ours.toString("hex"), ref.toString("hex"), c.name);
  }
});

test("openssl verifies every certificate and shows its extensions", async () => {
  const builder = ca.builder();
  for (const [i, c] of cases.entries()) {
    const der = await builder.sign(builder.buildTbs(input(c, newSerial())));
    const leafDer = tmp.write(`leaf${i}.der`, der);
    const leaf = tmp.write(`leaf${i}.pem`, derToPem(der, "CERTIFICATE"));
    const at = epoch(new Date(new Date(c.notBefore).getTime() + 86_400_000));
    const v = openssl(["verify", "-x509_strict", "-attime", at, "-CAfile", `${tmp.dir}/root.pem`, "-untrusted", `${tmp.dir}/issuing.pem`, leaf]);
    assert.equal(v.status, 0, `${c.name}: ${v.stdout}${v.stderr}`);
    assert.match(v.stdout, /: OK/);

    const text = openssl(["x509", "-in", leaf, "-noout", "-text"]).stdout;
    for (const want of [/Basic Constraints: critical\s+CA:FALSE/, /Key Usage: critical\s+Digital Signature, Non Repudiation/,
      /TLS Web Client Authentication, E-mail Protection/, /Subject Key Identifier/, /Authority Key Identifier/,
      /URI:http:\/\/ca\.example\.test\/crl\/issuing\.crl/, /OCSP - URI:http:\/\/ca\.example\.test\/ocsp/,
      /CA Issuers - URI:http:\/\/ca\.example\.test\/ca\/issuing\.cer/]) {
      assert.match(text, want, c.name);
    }
    if (c.subject.sans?.length) assert.match(text, c.subject.rdns.length ? /Subject Alternative Name: \n/ : /Subject Alternative Name: critical/, c.name);
    if (c.name.includes("2050")) assert.match(text, /Not After : Jun {2}1 00:00:00 2054 GMT/);

    // asn1parse can walk into the extension values: find the SKI's OCTET STRING and parse inside it.
    const parsed = openssl(["asn1parse", "-inform", "DER", "-in", leafDer]).stdout.split("\n");
    const skiLine = parsed.findIndex((l) => l.includes("X509v3 Subject Key Identifier"));
    const offset = /^\s*(\d+):/.exec(parsed[skiLine + 1] ?? "")?.[1];
    assert.ok(offset, c.name);
    const inner = openssl(["asn1parse", "-inform", "DER", "-in", leafDer, "-strparse", offset]);
    assert.equal(inner.status, 0, inner.stderr);
    assert.match(inner.stdout, /prim: OCTET STRING/);
  }
});

test("refuses inputs it cannot or must not certify", () => {
  const builder = ca.builder();
  const good = input(cases[0]!, newSerial());
  const p256Only: CertificateProfile = { ...defaultProfile, id: "p256-only", keyAlgorithms: ["p256"] };
  const ed25519 = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" });
  const table: Array<[string, () => unknown, string]> = [
    ["key the profile does not allow", () => new CertificateBuilder({ issuer: ca.issuing, signer: ca.issuingSigner, profile: p256Only, urls: testUrls })
      .buildTbs({ ...good, spki: keys.p384.spki, profile: p256Only }), "KEY_ALGORITHM_NOT_ALLOWED"],
    ["Ed25519 key", () => builder.buildTbs({ ...good, spki: ed25519 }), "KEY_ALGORITHM_UNSUPPORTED"],
    ["zero serial", () => builder.buildTbs({ ...good, serial: Buffer.from([0]) }), "SERIAL_MALFORMED"],
    ["negative serial", () => builder.buildTbs({ ...good, serial: Buffer.from([0x80, 1]) }), "SERIAL_MALFORMED"],
    ["21-octet serial", () => builder.buildTbs({ ...good, serial: Buffer.concat([Buffer.from([0]), Buffer.alloc(20, 0xff)]) }), "SERIAL_MALFORMED"],
    ["notAfter before notBefore", () => builder.buildTbs({ ...good, notAfter: good.notBefore }), "REQUEST_INVALID"],
    ["beyond the issuing CA", () => builder.buildTbs({ ...good, notAfter: new Date("2099-01-01T00:00:00Z") }), "REQUEST_INVALID"],
    ["no subject and no SAN", () => builder.buildTbs({ ...good, subject: { rdns: [] } }), "REQUEST_INVALID"],
    ["country not two letters", () => builder.buildTbs({ ...good, subject: { rdns: [["C", "China"]] } }), "REQUEST_INVALID"],
    ["unknown attribute", () => builder.buildTbs({ ...good, subject: { rdns: [["XX", "y"]] } }), "REQUEST_INVALID"],
    ["CN too long", () => builder.buildTbs({ ...good, subject: { rdns: [["CN", "x".repeat(65)]] } }), "REQUEST_INVALID"],
    ["bad DNS SAN", () => builder.buildTbs({ ...good, subject: { rdns: [["CN", "x"]], sans: ["dns:exa mple.test"] } }), "REQUEST_INVALID"],
    ["unknown SAN kind", () => builder.buildTbs({ ...good, subject: { rdns: [["CN", "x"]], sans: ["upn:x@y"] } }), "REQUEST_INVALID"],
    ["another profile's input", () => builder.buildTbs({ ...good, profile: p256Only }), "REQUEST_INVALID"],
  ];
  for (const [name, fn, want] of table) {
    assert.throws(fn, (e: unknown) => isUkeyError(e) && e.code === want || assert.fail(`${name}: ${String(e)}`), name);
  }
});
