import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultProfile, isUkeyError, type ErrorCode } from "@ukey/policy";
import { openStore, type Store } from "@ukey/store";
import { importCertificates, type ImportInput, type ImportReport } from "../src/import-service.js";
import { hashIdNumber } from "../src/holder-identity.js";

// Real certificates, made by the real openssl at run time into a temp dir:
// a foreign root and intermediate of "the old CA", leaves under them, and a
// CA standing in for our own issuer. No key is ever committed.
const idKey = Buffer.alloc(32, 7);
const day = 86_400_000;
// Leaves of one day are expired ten days later; the rest last ten years.
const now = new Date(Date.now() + 10 * day);
let work: string;
const f = (name: string) => join(work, name);

const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: work, stdio: ["ignore", "pipe", "pipe"] });

const config = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_email]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
authorityKeyIdentifier = keyid
subjectAltName = email:Wang.Wu@example.com,DNS:ww.example.com
`;

function key(name: string) {
  openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`);
}

function root(name: string, subject: string) {
  key(name);
  openssl("req", "-x509", "-new", "-utf8", "-config", "openssl.cnf", "-extensions", "ca_ext", "-key", `${name}.key`,
    "-subj", subject, "-days", "3650", "-set_serial", "1", "-out", `${name}.pem`);
}

function signed(name: string, subject: string, issuer: string, serial: string, days: number, ext: string) {
  key(name);
  openssl("req", "-new", "-utf8", "-config", "openssl.cnf", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`);
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${issuer}.pem`, "-CAkey", `${issuer}.key`, "-set_serial", serial,
    "-days", String(days), "-extfile", "openssl.cnf", "-extensions", ext, "-out", `${name}.pem`);
}

const pemToDer = (pem: string) => Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ""), "base64");
const derToPem = (der: Buffer) => `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;
const read = (name: string) => readFileSync(f(name), "utf8");

/** The same certificate with one bit of its signature flipped: still parses, no longer verifies. */
function tamper(name: string): string {
  const der = pemToDer(read(name));
  der[der.length - 1]! ^= 0x01;
  return derToPem(der);
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "ukey-import-"));
  writeFileSync(f("openssl.cnf"), config);
  root("root", "/C=CN/O=Old Bank/CN=Old Bank Root CA");
  signed("int", "/C=CN/O=Old Bank/CN=Old Bank Issuing CA", "root", "2", 3650, "ca_ext");
  signed("zhang", "/C=CN/O=Old Bank/CN=张三", "int", "0x1001", 3650, "leaf_ext");
  signed("li", "/C=CN/O=Old Bank/serialNumber=H002/CN=Li Si#0", "int", "0x1002", 3650, "leaf_ext");
  signed("wang", "/C=CN/O=Old Bank/CN=Wang Wu", "int", "0x1003", 1, "leaf_email");
  signed("nobody", "/C=CN/O=Old Bank/CN=Nobody", "int", "0x1004", 3650, "leaf_ext");
  // Same serial as ownleaf below, from another issuer: the store keys certificates by serial.
  signed("clash", "/C=CN/O=Old Bank/serialNumber=H001/CN=Zhang San", "int", "0xabcdef", 3650, "leaf_ext");
  root("own", "/C=CN/O=New Bank/CN=New Bank Issuing CA");
  signed("ownleaf", "/C=CN/O=New Bank/serialNumber=H001/CN=Zhang San", "own", "0xabcdef", 3650, "leaf_ext");

  writeFileSync(f("chain.pem"), read("int.pem") + read("root.pem"));
  writeFileSync(f("int-only.pem"), read("int.pem"));
  writeFileSync(f("broken-root.pem"), read("int.pem") + tamper("root.pem"));
  writeFileSync(f("bundle.pem"), `subject=CN = 张三\n${read("zhang.pem")}\n# Li Si\n${read("li.pem")}${read("wang.pem")}`);
  writeFileSync(f("zhang-only.pem"), read("zhang.pem"));
  writeFileSync(f("tampered.pem"), tamper("zhang.pem"));
  writeFileSync(f("with-nobody.pem"), read("zhang.pem") + read("nobody.pem"));
  writeFileSync(f("own-bundle.pem"), read("ownleaf.pem"));
  const broken = read("li.pem").split("\n");
  broken[3] = "!!!!" + broken[3]!.slice(4);
  // zhang.pem has a known number of lines; the broken block begins right after it.
  writeFileSync(f("bad-block.pem"), read("zhang.pem") + broken.join("\n"));

  mkdirSync(f("certs"));
  writeFileSync(f("certs/zhang.der"), pemToDer(read("zhang.pem")));
  writeFileSync(f("certs/li.crt"), read("li.pem"));
  writeFileSync(f("certs/wang.cer"), pemToDer(read("wang.pem")));
  writeFileSync(f("certs/README.txt"), "not a certificate, ignored");

  const header = "id,kind,name,id_type,id_number,phone,email,organisation_id,profile,cert_serials";
  writeFileSync(f("holders.csv"), [
    header,
    "ORG1,organisation,Old Bank Customers,uscc,91110000100000000X,,,,,",
    "H001,person,张三,resident-id,110101199001011234,13800138000,zhang@example.com,ORG1,,10:01",
    "H002,,Li Si,passport,E12345678,,,,,",
    "H003,,Wang Wu,resident-id,110101199202022345,,wang.wu@example.com,,,",
  ].join("\n") + "\n");
  writeFileSync(f("holders.json"), JSON.stringify([
    { id: "H001", name: "张三", idType: "resident-id", idNumber: "110101199001011234", certSerials: ["0x1001"] },
    { id: "H002", name: "Li Si", idType: "passport", idNumber: "E12345678" },
    { id: "H003", name: "Wang Wu", idType: "resident-id", idNumber: "110101199202022345", email: "wang.wu@example.com" },
  ], null, 2));
  writeFileSync(f("holders-bad-row.csv"), `${header}\nH001,,张三,resident-id,110101199001011234,,,,,1001\nH002,,Li Si,passport,E12345678,,not-an-email,,,\n`);
  writeFileSync(f("holders-bad-element.json"), '[\n  {"id": "H001", "name": "A", "idType": "t", "idNumber": "1"},\n  {\n    "id": "H002", "kind": "robot", "name": "B", "idType": "t", "idNumber": "2"\n  }\n]\n');
  writeFileSync(f("holders-unknown-column.csv"), "id,name,id_type,id_number,shoe_size\nH001,A,t,1,42\n");
  writeFileSync(f("holders-duplicate.csv"), `${header}\nH001,,A,t,1,,,,,\nH002,,B,t,2,,,,,\nH001,,C,t,3,,,,,\n`);
  writeFileSync(f("holders-unknown-profile.csv"), `${header}\nH001,,A,t,1,,,,gateway,1001\n`);
  writeFileSync(f("holders-h001-other-id.csv"), `${header}\nH001,,张三,resident-id,110101199001019999,,,,,1001\nH009,,New Person,t,9,,,,,\n`);
  writeFileSync(f("holders-own.csv"), `${header}\nH001,,Zhang San,resident-id,110101199001011234,,,,,\n`);
  writeFileSync(f("holders-zhang.csv"), `${header}\nH001,,张三,resident-id,110101199001011234,,,,,1001\n`);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const stores: Store[] = [];
after(async () => {
  for (const s of stores) await s.close();
});

async function freshStore(): Promise<Store> {
  const store = await openStore({ dataDir: mkdtempSync(join(work, "data-")) });
  stores.push(store);
  await store.profiles.put(defaultProfile, now.getTime());
  return store;
}

function ownIssuers() {
  const der = pemToDer(read("own.pem"));
  // Our own CA's key id: what openssl wrote as its SKI (hash method), read back with openssl.
  const text = openssl("x509", "-in", "own.pem", "-noout", "-ext", "subjectKeyIdentifier").toString();
  const keyId = /\n\s*([0-9A-F:]+)\s*$/.exec(text)![1]!.replace(/:/g, "").toLowerCase();
  return [{ keyId, der }];
}

function run(store: Store, input: Partial<ImportInput>): Promise<ImportReport> {
  return importCertificates({ store, idKey, ownIssuers: ownIssuers() }, {
    certificates: f("bundle.pem"), holders: f("holders.csv"), chain: [f("chain.pem")], actor: "cli", now, ...input,
  });
}

async function snapshot(store: Store) {
  return {
    holders: await store.holders.list(),
    certificates: await store.certificates.search({}),
    issuers: await store.issuers.list(),
    audit: await store.audit.list(),
  };
}

const successCases: Array<{ name: string; input: Partial<ImportInput> }> = [
  { name: "imports CSV holders with certificates from a bundle and the chain", input: {} },
  { name: "imports JSON holders with certificates from a directory", input: { holders: f("holders.json"), certificates: f("certs") } },
];

for (const c of successCases) {
  test(c.name, async () => {
    const store = await freshStore();
    const report = await run(store, c.input);
    const csv = c.input.holders === undefined;
    assert.equal(report.holders, csv ? 4 : 3);
    assert.equal(report.certificates, 3);
    assert.equal(report.issuers, 2);
    assert.equal(report.skippedExisting, 0);
    assert.deepEqual(report.rows.map((r) => [r.serial, r.holderId, r.status, r.outcome]).sort(), [
      ["1001", "H001", "active", "imported"],
      ["1002", "H002", "active", "imported"],
      ["1003", "H003", "expired", "imported"],
    ]);

    const zhang = (await store.certificates.get("1001"))!;
    assert.equal(zhang.holderId, "H001");
    assert.equal(zhang.status, "active");
    assert.equal(zhang.kind, "hardware");
    assert.equal(zhang.imported, true);
    assert.equal(zhang.profileId, "personal");
    assert.equal(zhang.subjectDn, "C=CN, O=Old Bank, CN=张三");
    assert.equal(zhang.issuerDn, "C=CN, O=Old Bank, CN=Old Bank Issuing CA");
    assert.deepEqual(zhang.der, pemToDer(read("zhang.pem")));
    const spki = openssl("x509", "-in", "zhang.pem", "-noout", "-pubkey").toString();
    assert.equal(zhang.spkiSha256, (await import("node:crypto")).createHash("sha256").update(pemToDer(spki)).digest("hex"));
    assert.equal(zhang.notAfter - zhang.notBefore, 3650 * day);

    const li = (await store.certificates.get("1002"))!;
    assert.equal(li.holderId, "H002", "matched by the subject's serialNumber");
    assert.equal(li.kind, "file", "a name ending in #0 is a file certificate");

    const wang = (await store.certificates.get("1003"))!;
    assert.equal(wang.holderId, "H003", "matched by the email SAN, case-insensitively");
    assert.equal(wang.status, "expired");
    assert.deepEqual(wang.sans, ["email:Wang.Wu@example.com", "dns:ww.example.com"]);

    const issuers = await store.issuers.list();
    assert.deepEqual(issuers.map((i) => [i.subjectDn, i.role]).sort(), [
      ["C=CN, O=Old Bank, CN=Old Bank Issuing CA", "foreign"],
      ["C=CN, O=Old Bank, CN=Old Bank Root CA", "foreign"],
    ]);
    const issuing = issuers.find((i) => i.subjectDn.endsWith("Issuing CA"))!;
    assert.equal(zhang.issuerKeyId, issuing.keyId);

    const h001 = (await store.holders.get("H001"))!;
    assert.equal(h001.idHash, hashIdNumber(idKey, "resident-id", "110101199001011234"));
    assert.equal(h001.idMasked, "1101**********1234");
    assert.equal(JSON.stringify(await snapshot(store)).includes("110101199001011234"), false, "the ID number is stored nowhere");

    const actions = (await store.audit.list()).map((e) => `${e.action} ${e.subjectId} ${e.actor}`);
    for (const id of csv ? ["ORG1", "H001", "H002", "H003"] : ["H001", "H002", "H003"]) assert.ok(actions.includes(`holder.imported ${id} cli`), id);
    for (const s of ["1001", "1002", "1003"]) assert.ok(actions.includes(`certificate.imported ${s} cli`), s);
    assert.equal((await store.audit.verify()).ok, true);
  });
}

test("re-import is idempotent", async () => {
  const store = await freshStore();
  await run(store, {});
  const first = await snapshot(store);
  const again = await run(store, {});
  assert.deepEqual([again.holders, again.certificates, again.issuers, again.skippedExisting], [0, 0, 0, 3]);
  assert.deepEqual(again.rows.map((r) => r.outcome), ["existing", "existing", "existing"]);
  assert.deepEqual(await snapshot(store), first);
  // A later import of a subset, listing a serial already stored, is fine too.
  const subset = await run(store, { holders: f("holders-zhang.csv"), certificates: f("zhang-only.pem"), chain: [] });
  assert.equal(subset.skippedExisting, 1);
});

test("accepts certificates of our own issuer without a chain", async () => {
  const store = await freshStore();
  const report = await run(store, { holders: f("holders-own.csv"), certificates: f("own-bundle.pem"), chain: [] });
  assert.deepEqual([report.certificates, report.issuers], [1, 0]);
  const c = (await store.certificates.get("abcdef"))!;
  assert.equal(c.holderId, "H001");
  assert.equal(c.issuerKeyId, ownIssuers()[0]!.keyId);
});

test("accepts certificates of an issuer stored by an earlier import", async () => {
  const store = await freshStore();
  await run(store, { holders: f("holders-zhang.csv"), certificates: f("zhang-only.pem") });
  const report = await run(store, { chain: [] });
  assert.deepEqual([report.certificates, report.skippedExisting, report.issuers], [2, 1, 0]);
});

const refusals: Array<{ name: string; input: Partial<ImportInput>; code: ErrorCode; params?: Record<string, string | number>; match?: RegExp }> = [
  { name: "refuses a foreign issuer without its chain", input: { chain: [] }, code: "IMPORT_ISSUER_UNKNOWN",
    params: { serial: "1001", issuer: "C=CN, O=Old Bank, CN=Old Bank Issuing CA" } },
  { name: "refuses a chain without its root", input: { chain: [f("int-only.pem")] }, code: "IMPORT_CHAIN_INVALID", match: /Issuing CA .*not in the chain/ },
  { name: "refuses a chain whose root signature is broken", input: { chain: [f("broken-root.pem")] }, code: "IMPORT_CHAIN_INVALID", match: /Root CA .*self-signature does not verify/ },
  { name: "refuses a chain certificate that is not a CA", input: { chain: [f("chain.pem"), f("nobody.pem")] }, code: "IMPORT_CHAIN_INVALID", match: /CN=Nobody .*not a CA/ },
  { name: "refuses a tampered certificate", input: { certificates: f("tampered.pem") }, code: "IMPORT_CHAIN_INVALID", match: /certificate 1001 .*does not verify/ },
  { name: "refuses a certificate with no matching holder", input: { certificates: f("with-nobody.pem") }, code: "IMPORT_HOLDER_UNKNOWN", params: { serial: "1004" } },
  { name: "refuses a bad CSV row with its line", input: { holders: f("holders-bad-row.csv") }, code: "IMPORT_ROW_INVALID", params: { file: "holders-bad-row.csv", line: 3 } },
  { name: "refuses a bad JSON element with the line it starts on", input: { holders: f("holders-bad-element.json") }, code: "IMPORT_ROW_INVALID", params: { file: "holders-bad-element.json", line: 3 } },
  { name: "refuses an unknown column", input: { holders: f("holders-unknown-column.csv") }, code: "IMPORT_ROW_INVALID", match: /unknown column "shoe_size"/ },
  { name: "refuses a duplicate holder id", input: { holders: f("holders-duplicate.csv") }, code: "IMPORT_ROW_INVALID", params: { line: 4 }, match: /duplicate holder id H001/ },
  { name: "refuses an unknown profile", input: { holders: f("holders-unknown-profile.csv"), certificates: f("zhang-only.pem") }, code: "IMPORT_ROW_INVALID", match: /profile "gateway" does not exist/ },
  { name: "refuses a broken PEM block with the line of its BEGIN", input: { certificates: f("bad-block.pem") }, code: "PEM_MALFORMED", match: /bad-block\.pem line (\d+): CERTIFICATE block is not base64/ },
  { name: "refuses a missing certificates path", input: { certificates: f("absent.pem") }, code: "FILE_UNREADABLE" },
];

for (const c of refusals) {
  test(c.name, async () => {
    const store = await freshStore();
    const empty = await snapshot(store);
    await assert.rejects(run(store, c.input), (e: unknown) => {
      assert.ok(isUkeyError(e, c.code), String(e));
      for (const [k, v] of Object.entries(c.params ?? {})) assert.equal(e.params[k], v, k);
      if (c.match) assert.match(e.message, c.match);
      return true;
    });
    assert.deepEqual(await snapshot(store), empty, "nothing was written");
  });
}

test("the broken PEM block is reported at its BEGIN line", async () => {
  const store = await freshStore();
  const begin = read("zhang.pem").split("\n").length; // zhang.pem ends with a newline: its line count + 1 - 1
  await assert.rejects(run(store, { certificates: f("bad-block.pem") }), (e: unknown) =>
    isUkeyError(e, "PEM_MALFORMED") && String(e.params.reason).startsWith(`bad-block.pem line ${begin}:`));
});

test("refuses a holder already stored with a different ID number, writing nothing", async () => {
  const store = await freshStore();
  await run(store, {});
  const before = await snapshot(store);
  await assert.rejects(run(store, { holders: f("holders-h001-other-id.csv"), certificates: f("zhang-only.pem") }), (e: unknown) =>
    isUkeyError(e, "IMPORT_ROW_INVALID") && e.params.line === 2 && /different ID number/.test(String(e.params.reason)));
  assert.deepEqual(await snapshot(store), before);
  assert.equal(await store.holders.get("H009"), undefined, "the new holder of the refused file was not written");
});

test("refuses a certificate whose serial is already stored for another issuer, writing nothing", async () => {
  const store = await freshStore();
  await run(store, { holders: f("holders-own.csv"), certificates: f("own-bundle.pem"), chain: [] });
  const before = await snapshot(store);
  await assert.rejects(run(store, { holders: f("holders-own.csv"), certificates: f("clash.pem") }), (e: unknown) =>
    isUkeyError(e, "IMPORT_ROW_INVALID") && e.params.file === "clash.pem" && /abcdef is already stored/.test(String(e.params.reason)));
  assert.deepEqual(await snapshot(store), before);
});
