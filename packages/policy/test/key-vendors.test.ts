import { test } from "node:test";
import assert from "node:assert/strict";
import {
  defaultKeyVendors, detectKeyVendor, isUkeyError, keyVendorTableSchema, mergeKeyVendorTables, parseKeyVendorTable,
  type KeyVendorEntry, type KeyVendorTable, type TokenIdentity,
} from "../src/index.js";

const detections: { name: string; token: TokenIdentity; id: string | undefined; generation?: number; vendorEn?: string }[] = [
  { name: "seed 000 PF16TA: Tendyron 3rd-generation audio", token: { serial: "PF16TA01234567" }, id: "pf16ta-tendyron-gen3-audio", generation: 3, vendorEn: "Tendyron" },
  { name: "seed 000 PF16FA: Feitian 3rd-generation LCD", token: { serial: "PF16FA01234567" }, id: "pf16fa-feitian-gen3-lcd", generation: 3, vendorEn: "Feitian" },
  { name: "seed 000 PF20TA: Tendyron 4th-generation Bluetooth", token: { serial: "PF20TA01234567" }, id: "pf20ta-tendyron-gen4-bluetooth", generation: 4, vendorEn: "Tendyron" },
  { name: "seed 000 PF20FA: Feitian 4th-generation Bluetooth", token: { serial: "PF20FA01234567" }, id: "pf20fa-feitian-gen4-bluetooth", generation: 4, vendorEn: "Feitian" },
  { name: "printed number typed in lower case with spaces and hyphens", token: { serial: " pf20 fa-0123 4567 " }, id: "pf20fa-feitian-gen4-bluetooth", generation: 4 },
  { name: "full-width letters as typed with a Chinese input method", token: { serial: "ＰＦ２０ＴＡ０１２３" }, id: "pf20ta-tendyron-gen4-bluetooth" },
  { name: "PF16 of an unknown vendor letter pair matches nothing", token: { serial: "PF16XX0123" }, id: undefined },
  { name: "seed 001 code 11: G+D", token: { serial: "1100012345" }, id: "netbank-11-gd", vendorEn: "Giesecke+Devrient (G+D)" },
  { name: "seed 001 code 21: Watchdata", token: { serial: "2100012345" }, id: "netbank-21-watchdata", vendorEn: "Watchdata" },
  { name: "seed 001 code 31: Huada", token: { serial: "3100012345" }, id: "netbank-31-huada", vendorEn: "Huada" },
  { name: "seed 001 code 41: Daming", token: { serial: "4100012345" }, id: "netbank-41-daming", vendorEn: "Daming" },
  { name: "seed 001 code needs an all-digit number", token: { serial: "21AB012345" }, id: undefined },
  { name: "other two-digit codes are not vendors", token: { serial: "5100012345" }, id: undefined },
  { name: "PKCS#11 manufacturer, padded and in capitals", token: { manufacturerId: "FEITIAN Technologies Co., Ltd.   " }, id: "pkcs11-feitian", vendorEn: "Feitian" },
  { name: "OpenSC's EnterSafe is Feitian", token: { manufacturerId: "EnterSafe" }, id: "pkcs11-entersafe", vendorEn: "Feitian" },
  { name: "serial prefix beats manufacturer", token: { serial: "PF20FA0123", manufacturerId: "Feitian" }, id: "pf20fa-feitian-gen4-bluetooth", generation: 4 },
  { name: "SoftHSM2 by manufacturer and model", token: { manufacturerId: "SoftHSM project                 ", model: "SoftHSM v2      ", serial: "1a918b5db0a83cb1" }, id: "pkcs11-softhsm2" },
  { name: "two fields beat one: SoftHSM with an all-digit serial starting 21", token: { manufacturerId: "SoftHSM project", model: "SoftHSM v2", serial: "2100000000000001" }, id: "pkcs11-softhsm2" },
  { name: "SoftHSM manufacturer with another model matches nothing", token: { manufacturerId: "SoftHSM project", model: "Other" }, id: undefined },
  { name: "the label is never matched", token: { label: "PF20FA0123" }, id: undefined },
  { name: "nothing known", token: {}, id: undefined },
];

for (const c of detections) {
  test(`detects: ${c.name}`, () => {
    const m = detectKeyVendor(c.token);
    assert.equal(m?.id, c.id);
    if (c.generation !== undefined) assert.equal(m?.generation, c.generation);
    if (c.vendorEn !== undefined) assert.equal(m?.vendor.en, c.vendorEn);
  });
}

test("seed 000 guidance: 4th generation connected switched off, compatibility keys, phone-only modes", () => {
  const gen4 = detectKeyVendor({ serial: "PF20TA0001" })!;
  assert.match(gen4.guidance[0]!.zh, /关机状态下连接/);
  assert.match(gen4.guidance[0]!.en, /switched off.*Bluetooth/);
  assert.ok(gen4.guidance.some((g) => /上/.test(g.zh) && /up key/.test(g.en)));
  const gen3 = detectKeyVendor({ serial: "PF16TA0001" })!;
  assert.ok(gen3.guidance.some((g) => /C 键/.test(g.zh) && /C key/.test(g.en)));
  for (const m of [gen3, gen4]) assert.ok(m.guidance.some((g) => /phone only/.test(g.en)));
  assert.deepEqual(detectKeyVendor({ serial: "2100012345" })!.guidance, []);
});

test("the match says which fields matched", () => {
  assert.deepEqual(detectKeyVendor({ manufacturerId: "SoftHSM project", model: "SoftHSM v2" })!.matchedOn, ["manufacturerId", "model"]);
  assert.deepEqual(detectKeyVendor({ serial: "PF20FA1" })!.matchedOn, ["serialPrefix"]);
});

const entry = (id: string, match: KeyVendorEntry["match"], en = id): KeyVendorEntry => ({ id, match, vendor: { zh: `厂商${id}`, en } });

const specificity: { name: string; table: KeyVendorTable; token: TokenIdentity; id: string | undefined }[] = [
  { name: "longer prefix beats shorter, shorter first", table: [entry("short", { serialPrefix: "PF20" }), entry("long", { serialPrefix: "PF20FA" })], token: { serial: "PF20FA1" }, id: "long" },
  { name: "longer prefix beats shorter, longer first", table: [entry("long", { serialPrefix: "PF20FA" }), entry("short", { serialPrefix: "PF20" })], token: { serial: "PF20FA1" }, id: "long" },
  { name: "the shorter prefix still matches other serials", table: [entry("long", { serialPrefix: "PF20FA" }), entry("short", { serialPrefix: "PF20" })], token: { serial: "PF20TA1" }, id: "short" },
  { name: "manufacturer and model beat manufacturer only", table: [entry("both", { manufacturerId: "Acme", model: "K9" }), entry("maker", { manufacturerId: "Acme" })], token: { manufacturerId: "Acme Ltd", model: "K9" }, id: "both" },
  { name: "model beats manufacturer", table: [entry("model", { model: "K9" }), entry("maker", { manufacturerId: "Acme" })], token: { manufacturerId: "Acme", model: "K9" }, id: "model" },
  { name: "prefix beats pattern", table: [entry("prefix", { serialPrefix: "AB" }), entry("pattern", { serialPattern: "^AB\\d{4}$" })], token: { serial: "AB1234" }, id: "prefix" },
  { name: "a tie goes to the later entry", table: [entry("first", { serialPrefix: "AB" }), entry("second", { serialPrefix: "ab" })], token: { serial: "AB1" }, id: "second" },
  { name: "every field given must match", table: [entry("and", { serialPrefix: "AB", manufacturerId: "Acme" })], token: { serial: "AB1", manufacturerId: "Other" }, id: undefined },
  { name: "a field the token lacks does not match", table: [entry("maker", { manufacturerId: "Acme" })], token: { serial: "AB1" }, id: undefined },
  { name: "patterns ignore case", table: [entry("pattern", { serialPattern: "^ab\\d+$" })], token: { serial: "AB12" }, id: "pattern" },
  { name: "a pattern that does not compile never matches and never throws", table: [entry("bad", { serialPattern: "([" })], token: { serial: "AB12" }, id: undefined },
];

for (const c of specificity) {
  test(`most specific wins: ${c.name}`, () => {
    assert.equal(detectKeyVendor(c.token, c.table)?.id, c.id);
  });
}

test("the default table passes its own schema and has unique ids", () => {
  assert.ok(keyVendorTableSchema.safeParse(defaultKeyVendors).success);
  const parsed = parseKeyVendorTable(defaultKeyVendors);
  assert.deepEqual(parsed, defaultKeyVendors);
});

const invalid: { name: string; input: unknown; reason: RegExp }[] = [
  { name: "not an array", input: { id: "x" }, reason: /^keyVendors: / },
  { name: "unknown key in an entry", input: [entry("a", { serialPrefix: "A" }), { ...entry("b", { serialPrefix: "B" }), colour: "red" }], reason: /^keyVendors\[1\]: .*colour/ },
  { name: "misspelt match field", input: [{ ...entry("a", {}), match: { serialPrefx: "PF" } }], reason: /^keyVendors\[0\]\.match: .*serialPrefx/ },
  { name: "empty match", input: [entry("a", {})], reason: /^keyVendors\[0\]\.match: give at least one/ },
  { name: "empty prefix", input: [entry("a", { serialPrefix: " " })], reason: /^keyVendors\[0\]\.match\.serialPrefix: / },
  { name: "pattern that does not compile", input: [entry("a", { serialPattern: "([" })], reason: /^keyVendors\[0\]\.match\.serialPattern: not a valid regular expression/ },
  { name: "vendor without en", input: [{ id: "a", match: { serialPrefix: "A" }, vendor: { zh: "甲" } }], reason: /^keyVendors\[0\]\.vendor\.en: / },
  { name: "unknown key in guidance", input: [{ ...entry("a", { serialPrefix: "A" }), guidance: [{ zh: "甲", en: "a", fr: "a" }] }], reason: /^keyVendors\[0\]\.guidance\[0\]: .*fr/ },
  { name: "generation not a whole number", input: [{ ...entry("a", { serialPrefix: "A" }), generation: 3.5 }], reason: /^keyVendors\[0\]\.generation: / },
  { name: "id with capitals", input: [entry("Acme", { serialPrefix: "A" })], reason: /^keyVendors\[0\]\.id: lower-case/ },
  { name: "duplicate id", input: [entry("a", { serialPrefix: "A" }), entry("a", { serialPrefix: "B" })], reason: /^keyVendors\[1\]\.id: duplicate id "a" \(also at \[0\]\)/ },
];

for (const c of invalid) {
  test(`refuses a table with ${c.name}`, () => {
    assert.throws(() => parseKeyVendorTable(c.input), (e: unknown) => {
      assert.ok(isUkeyError(e, "KEY_VENDOR_TABLE_INVALID"), String(e));
      assert.equal(e.kind, "invalid");
      assert.match(String(e.params.reason), c.reason);
      return true;
    });
  });
}

test("the reason names the configuration key given", () => {
  assert.throws(() => parseKeyVendorTable([entry("a", {})], "config.json keyVendors"),
    (e: unknown) => isUkeyError(e) && String(e.params.reason).startsWith("config.json keyVendors[0].match"));
});

test("a parsed table is frozen", () => {
  const t = parseKeyVendorTable([{ ...entry("a", { serialPrefix: "A" }), guidance: [{ zh: "甲", en: "a" }] }]);
  assert.ok(Object.isFrozen(t) && Object.isFrozen(t[0]) && Object.isFrozen(t[0]!.match) && Object.isFrozen(t[0]!.guidance![0]));
});

test("merge: an operator entry with a default's id replaces it in place", () => {
  const narrowed = entry("netbank-21-watchdata", { serialPattern: "^21\\d{14}$" }, "Watchdata");
  const merged = mergeKeyVendorTables(defaultKeyVendors, [narrowed]);
  assert.equal(merged.length, defaultKeyVendors.length);
  const i = defaultKeyVendors.findIndex((e) => e.id === "netbank-21-watchdata");
  assert.equal(merged[i], narrowed);
  assert.equal(detectKeyVendor({ serial: "2100012345" }, merged), undefined);
  assert.equal(detectKeyVendor({ serial: "2100000000000001" }, merged)?.id, "netbank-21-watchdata");
  assert.equal(detectKeyVendor({ serial: "2100012345" })?.id, "netbank-21-watchdata", "defaults are not changed");
});

test("merge: other operator entries are added after the defaults and win ties", () => {
  const own = entry("acme-pf20fa", { serialPrefix: "PF20FA" }, "Acme");
  const added = entry("acme-td2024", { serialPrefix: "TD2024" }, "Tendyron");
  const merged = mergeKeyVendorTables(defaultKeyVendors, parseKeyVendorTable([own, added]));
  assert.deepEqual(merged.slice(-2).map((e) => e.id), ["acme-pf20fa", "acme-td2024"]);
  assert.equal(detectKeyVendor({ serial: "PF20FA01" }, merged)?.id, "acme-pf20fa");
  assert.equal(detectKeyVendor({ serial: "TD2024-77" }, merged)?.vendor.en, "Tendyron");
  assert.equal(mergeKeyVendorTables(defaultKeyVendors, []).length, defaultKeyVendors.length);
});
