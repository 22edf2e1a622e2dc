import { test } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { planCleanUp, type InvalidObject } from "../src/flows/clean-up.js";
import { objectLabels, type TokenCertificate, type TokenKey } from "../src/keys/key-store.js";

// What the clean-up may remove, decided over plain objects: table-driven,
// one rule per case. The current certificate, the only certificate of a
// subject and the pending key of an open order are never on the list.
const now = new Date("2026-06-01T00:00:00Z");
const day = 86_400_000;
const cert = (id: string, serialHex: string, daysLeft: number, label = objectLabels.current(serialHex), subject = "CN=Holder H1"): TokenCertificate => ({
  id, label, der: new Uint8Array(), serialHex, subject, issuer: "CN=Issuing CA",
  notBefore: new Date(now.getTime() - 400 * day), notAfter: new Date(now.getTime() + daysLeft * day), hasKey: true,
});
const key = (id: string, label = "k"): TokenKey => ({ id, label, algorithm: "p256", spki: new Uint8Array() });

type View = "superseded" | "revoked" | "live" | "unknown" | undefined;
const cases: { name: string; certs: TokenCertificate[]; keys: TokenKey[]; views?: Record<string, View>; orders?: Record<string, string | undefined | "unreachable">; keep?: string[]; superseded?: string[]; want: string[] }[] = [
  { name: "a valid certificate alone stays", certs: [cert("a", "01", 100)], keys: [key("a")], want: [] },
  { name: "an expired certificate alone stays (it may still be renewable)", certs: [cert("a", "01", -10)], keys: [key("a")], want: [] },
  { name: "an expired certificate replaced by a valid one of the same subject goes", certs: [cert("a", "01", -10), cert("b", "02", 300)], keys: [key("a"), key("b")], want: ["a"] },
  { name: "an expired certificate of another subject stays", certs: [cert("a", "01", -10, undefined, "CN=Someone Else"), cert("b", "02", 300)], keys: [key("a"), key("b")], want: [] },
  { name: "a certificate the server says is superseded goes", certs: [cert("a", "01", 20), cert("b", "02", 300)], keys: [key("a"), key("b")], views: { a: "superseded", b: "live" }, want: ["a"] },
  { name: "a revoked certificate goes", certs: [cert("a", "01", 20)], keys: [key("a")], views: { a: "revoked" }, want: ["a"] },
  { name: "what the caller keeps stays even when the server says superseded", certs: [cert("a", "01", 20)], keys: [key("a")], views: { a: "superseded" }, keep: ["a"], want: [] },
  { name: "a serial the caller knows is superseded goes without asking", certs: [cert("a", "01", 20), cert("b", "02", 300)], keys: [key("a"), key("b")], superseded: ["0001"], want: ["a"] },
  { name: "an installed certificate still pending stays", certs: [cert("a", "01", 20), cert("n", "02", 300, objectLabels.pending("o1"))], keys: [key("a"), key("n", objectLabels.pending("o1"))], views: { a: "live" }, orders: { o1: "installed" }, want: [] },
  { name: "an orphan key goes", certs: [cert("a", "01", 20)], keys: [key("a"), key("z", "stray")], want: ["z"] },
  { name: "the pending key of an open order stays", certs: [cert("a", "01", 20)], keys: [key("a"), key("p", objectLabels.pending("o1"))], orders: { o1: "verified" }, want: [] },
  { name: "the pending key of a failed or cancelled order goes", certs: [cert("a", "01", 20)], keys: [key("a"), key("p", objectLabels.pending("o1")), key("q", objectLabels.pending("o2"))], orders: { o1: "failed", o2: "cancelled" }, want: ["p", "q"] },
  { name: "the pending key of an order the server does not know goes", certs: [cert("a", "01", 20)], keys: [key("a"), key("p", objectLabels.pending("o9"))], orders: { o9: undefined }, want: ["p"] },
  { name: "the pending key stays while the server cannot be asked", certs: [cert("a", "01", 20)], keys: [key("a"), key("p", objectLabels.pending("o1"))], orders: { o1: "unreachable" }, want: [] },
  { name: "the pending key of a download stays", certs: [], keys: [key("d", objectLabels.pending("download-4992739872"))], orders: {}, want: [] },
];

for (const c of cases) {
  test(c.name, async () => {
    const plan = await planCleanUp(c.certs, c.keys, now, {
      ...(c.keep ? { keep: new Set(c.keep) } : {}),
      ...(c.superseded ? { superseded: c.superseded } : {}),
      serverView: async (x) => {
        if (c.superseded?.some((s) => s.replace(/^0+/, "") === x.serialHex.replace(/^0+/, ""))) assert.fail("a known serial is not asked about");
        return c.views?.[x.id];
      },
      orderState: async (id) => (c.orders && id in c.orders ? c.orders[id] : assert.fail(`order ${id} asked`)),
    });
    assert.deepEqual(plan.map((p) => p.id).sort(), c.want);
  });
}

// Issue 15: the key usage decides whether an old key may go without asking. An encryption key (a pair's
// encryption half, a certificate for both uses, or one whose certificate names no usage) goes only when the
// holder confirms: data encrypted to it is lost with it. Real certificates, so the key usage is read from DER.
type Usage = "signing" | "encryption" | "both" | "none" | "rsa-encryption";
const usageFlags: Record<Exclude<Usage, "none">, number> = {
  signing: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation,
  encryption: x509.KeyUsageFlags.keyAgreement | x509.KeyUsageFlags.dataEncipherment,
  "rsa-encryption": x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.dataEncipherment,
  both: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
};
const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
let signer: webcrypto.CryptoKeyPair | undefined;
async function realCert(id: string, serialHex: string, usage: Usage, daysLeft: number, subject = "CN=Holder H1"): Promise<TokenCertificate> {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  signer ??= await webcrypto.subtle.generateKey(alg, false, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
  const c = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex, subject, issuer: "CN=Issuing CA", notBefore: new Date(now.getTime() - 400 * day), notAfter: new Date(now.getTime() + daysLeft * day),
    signingAlgorithm: alg, publicKey: signer.publicKey, signingKey: signer.privateKey,
    extensions: usage === "none" ? [] : [new x509.KeyUsagesExtension(usageFlags[usage], true)],
  });
  return { ...cert(id, serialHex, daysLeft, undefined, subject), der: new Uint8Array(c.rawData) };
}

const usages: Usage[] = ["signing", "encryption", "both", "none"];
const situations: { name: string; views: Record<string, View> | undefined; old: number }[] = [
  { name: "expired, replaced by a valid one of the same subject and issuer", views: undefined, old: -10 },
  { name: "still valid, superseded by the server", views: { a: "superseded", b: "live" }, old: 20 },
];
for (const usage of usages) {
  for (const s of situations) {
    for (const confirm of ["absent", "no", "yes"] as const) {
      const goes = usage === "signing" || confirm === "yes";
      test(`${usage} key usage, ${s.name}, holder's confirmation ${confirm}: the old one ${goes ? "goes" : "stays"}`, async () => {
        const old = await realCert("a", "01", usage, s.old);
        const fresh = await realCert("b", "02", usage, 300);
        const asked: string[][] = [];
        const plan = await planCleanUp([old, fresh], [key("a"), key("b")], now, {
          serverView: async (x) => s.views?.[x.id],
          ...(confirm === "absent" ? {} : { confirmEncryption: async (objects: InvalidObject[]) => { asked.push(objects.map((o) => o.id)); return confirm === "yes"; } }),
        });
        assert.deepEqual(plan.map((p) => p.id), goes ? ["a"] : []);
        // The holder is asked exactly when an encryption key would go, and only about it.
        assert.deepEqual(asked, usage !== "signing" && confirm !== "absent" ? [["a"]] : []);
        if (goes && usage !== "signing") assert.equal(plan[0]!.encryption, true);
      });
    }
  }
}

test("a valid encryption certificate alone is never on the plan, asked or not", async () => {
  const plan = await planCleanUp([await realCert("e", "03", "encryption", 100)], [key("e")], now, { confirmEncryption: async () => assert.fail("nothing to ask") });
  assert.deepEqual(plan, []);
});

// Issue 15 on PKCS#11: a pair's two halves are two ids (signing X, encryption X‖02, docs/key-vendors.md), not one
// container. Superseded or expired, the old signing half goes; its encryption half (an RSA pair's key usage) goes
// only when the holder confirms, and the new pair stays whole.
for (const s of situations) {
  for (const confirm of ["absent", "no", "yes"] as const) {
    test(`a PKCS#11 pair (signing X, encryption X02), ${s.name}, holder's confirmation ${confirm}`, async () => {
      const views: Record<string, View> | undefined = s.views && { a: s.views.a, a02: s.views.a, b: s.views.b, b02: s.views.b };
      const certs = [
        await realCert("a", "01", "signing", s.old), await realCert("a02", "11", "rsa-encryption", s.old),
        await realCert("b", "02", "signing", 300), await realCert("b02", "12", "rsa-encryption", 300),
      ];
      const asked: string[][] = [];
      const plan = await planCleanUp(certs, ["a", "a02", "b", "b02"].map((id) => key(id)), now, {
        serverView: async (x) => views?.[x.id],
        ...(confirm === "absent" ? {} : { confirmEncryption: async (objects: InvalidObject[]) => { asked.push(objects.map((o) => o.id)); return confirm === "yes"; } }),
      });
      assert.deepEqual(plan.map((p) => p.id).sort(), confirm === "yes" ? ["a", "a02"] : ["a"]);
      assert.deepEqual(asked, confirm === "absent" ? [] : [["a02"]], "asked about the encryption half alone");
    });
  }
}
