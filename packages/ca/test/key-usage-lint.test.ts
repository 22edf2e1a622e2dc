import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { defaultProfile, presetNames, resolveProfile, type CertificateProfile } from "@ukey/policy";
import { newSerial } from "../src/index.js";
import { makeTestCa, subjectKey, type TestCa } from "./support/hierarchy.js";

// Issue 17, part 5: every certificate a preset issues passes the key-usage lints third-party tools run
// (zlint e_ecdsa_allowed_ku, e_rsa_allowed_ku_ee, e_key_usage_and_extended_key_usage_inconsistent; RFC 8813 3).
// The rules are written out here from those lints, apart from the code that chooses the bits.
let ca: TestCa;
before(async () => { ca = await makeTestCa({ validityDays: 15000 }); });
after(() => ca.cleanup());

const F = x509.KeyUsageFlags;
const named: Array<[string, number]> = [
  ["digitalSignature", F.digitalSignature], ["nonRepudiation", F.nonRepudiation], ["keyEncipherment", F.keyEncipherment],
  ["dataEncipherment", F.dataEncipherment], ["keyAgreement", F.keyAgreement], ["keyCertSign", F.keyCertSign], ["cRLSign", F.cRLSign],
];
const names = (bits: number) => named.filter(([, b]) => bits & b).map(([n]) => n);
const ds = F.digitalSignature, nr = F.nonRepudiation, ke = F.keyEncipherment, ka = F.keyAgreement;

/** zlint's eku_ku_map: the exact keyUsage combinations consistent with each EKU (RFC 5280 4.2.1.12). */
const ekuKu: Record<string, number[]> = {
  "1.3.6.1.5.5.7.3.1": [ds, ke, ka, ds | ke, ds | ka],
  "1.3.6.1.5.5.7.3.2": [ds, ka, ds | ka],
  "1.3.6.1.5.5.7.3.3": [ds],
  "1.3.6.1.5.5.7.3.4": [ds, nr, ke, ka, ds | nr, ds | ke, ds | ka, nr | ke, nr | ka, ds | nr | ke, ds | nr | ka],
};

/** The lint findings for one certificate; empty when it passes. */
function lint(der: Buffer): string[] {
  const cert = new x509.X509Certificate(der);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const found: string[] = [];
  if (!ku) return ["no keyUsage"];
  if (!ku.critical) found.push("keyUsage not critical");
  const bits = ku.usages as number;
  const alg = cert.publicKey.algorithm.name;
  if (alg === "ECDSA" && bits & (F.keyEncipherment | F.dataEncipherment)) found.push(`e_ecdsa_allowed_ku: ${names(bits)}`);
  if (alg === "RSASSA-PKCS1-v1_5" && bits & ~(F.digitalSignature | F.nonRepudiation | F.keyEncipherment | F.dataEncipherment)) {
    found.push(`e_rsa_allowed_ku_ee: ${names(bits)}`);
  }
  const ekus = (eku?.usages ?? []).map(String);
  const consistent = (e: string) => ekuKu[e] === undefined || ekuKu[e]!.includes(bits);
  // One EKU: it must agree; several: at least one must (zlint's multiPurpose).
  if (ekus.length === 1 ? !consistent(ekus[0]!) : ekus.length > 1 && !ekus.some(consistent)) {
    found.push(`e_key_usage_and_extended_key_usage_inconsistent: ${names(bits)} with ${ekus}`);
  }
  return found;
}

test("every preset's certificates pass the key-usage lints, for each algorithm it allows", async () => {
  const profiles: CertificateProfile[] = [defaultProfile, ...presetNames.map((p) => resolveProfile({ id: p, preset: p }))];
  let checked = 0;
  for (const profile of profiles) {
    const builder = ca.builder(profile);
    for (const algorithm of profile.keyAlgorithms) {
      if (algorithm !== "p256" && algorithm !== "p384" && algorithm !== "rsa2048") continue;
      const der = await builder.sign(builder.buildTbs({
        serial: newSerial(), subject: { rdns: [["CN", "lint"]] }, spki: subjectKey(algorithm).spki,
        notBefore: new Date("2025-03-02T00:00:00Z"), notAfter: new Date("2027-03-02T00:00:00Z"), profile,
      }));
      assert.deepEqual(lint(der), [], `${profile.id} with ${algorithm}`);
      checked++;
    }
  }
  assert.ok(checked >= 10, `linted ${checked} certificates`);
});

test("the securities gateway's EC and RSA certificates carry digitalSignature only (issue 17: was keyEncipherment)", async () => {
  const profile = resolveProfile({ id: "gw", preset: "securities-gateway" });
  const builder = ca.builder(profile);
  for (const algorithm of ["p256", "rsa2048"] as const) {
    const der = await builder.sign(builder.buildTbs({
      serial: newSerial(), subject: { rdns: [["CN", "gw"]] }, spki: subjectKey(algorithm).spki,
      notBefore: new Date("2025-03-02T00:00:00Z"), notAfter: new Date("2027-03-02T00:00:00Z"), profile,
    }));
    assert.deepEqual(names(new x509.X509Certificate(der).getExtension(x509.KeyUsagesExtension)!.usages as number), ["digitalSignature"], algorithm);
  }
});

test("the linter itself finds what it should", async () => {
  // keyEncipherment on an EC key with clientAuth: the findings the issue reported of the securities gateway.
  const keys = await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01", name: "CN=bad", notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000), keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.KeyUsagesExtension(F.digitalSignature | F.keyEncipherment, true), new x509.ExtendedKeyUsageExtension(["1.3.6.1.5.5.7.3.2"])],
  }, webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1]);
  const found = lint(Buffer.from(cert.rawData));
  assert.equal(found.length, 2, String(found));
  assert.match(found[0]!, /e_ecdsa_allowed_ku/);
  assert.match(found[1]!, /inconsistent/);
});
