import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isUkeyError } from "@ukey/policy";
import { canonicalSerial, parseHoldersText, readHoldersFile } from "../src/holders-file.js";

const header = "id,kind,name,id_type,id_number,phone,email,organisation_id,profile,cert_serials";

test("reads a CSV file with defaults, empty values and serial lists in any hex form", () => {
  const rows = parseHoldersText([
    header,
    "ORG1,organisation,Example Securities,uscc,91110000100000000X,,ops@example.com,,,",
    "H001,,张三,resident-id,110101199001011234,138 0013 8000,zhang@example.com,ORG1,personal,3A:F2;0x01;  00ab ",
    "",
    'H002,person,"Li, Si",passport,E12345678,+86-10-12345678,,,,',
  ].join("\n"), "h.csv", "csv");
  assert.equal(rows.length, 3);
  assert.deepEqual(rows.map((r) => r.line), [2, 3, 5]);
  assert.equal(rows[0]!.kind, "organisation");
  assert.equal(rows[1]!.kind, "person");
  assert.deepEqual(rows[1]!.certSerials, ["3af2", "01", "ab"]);
  assert.equal(rows[1]!.organisationId, "ORG1");
  assert.equal(rows[2]!.name, "Li, Si");
  assert.equal(rows[2]!.email, null);
  assert.equal(rows[2]!.profile, null);
});

test("reads a JSON file and knows the line each element starts on", () => {
  const text = `[
  {"id": "H001", "name": "张三", "idType": "resident-id", "idNumber": "110101199001011234", "certSerials": ["3a:f2"]},
  {
    "id": "H002", "name": "Li {[ \\" Si", "idType": "passport", "idNumber": "E12345678",
    "certSerials": "01;02"
  },

  {"id": "H003", "kind": "organisation", "name": "Org", "idType": "uscc", "idNumber": "91110000100000000X", "email": null}
]`;
  const rows = parseHoldersText(text, "h.json", "json");
  assert.deepEqual(rows.map((r) => [r.id, r.line]), [["H001", 2], ["H002", 3], ["H003", 8]]);
  assert.deepEqual(rows[1]!.certSerials, ["01", "02"]);
  assert.equal(rows[1]!.name, 'Li {[ " Si');
});

const csvCases: Array<{ name: string; text: string; line: number; reason: RegExp }> = [
  { name: "refuses a missing name with its line", text: `${header}\nH001,,A,resident-id,1,,,,,\nH002,,,resident-id,2,,,,,`, line: 3, reason: /name is required/ },
  { name: "counts a multi-line quoted field before the bad row", text: `${header}\nH001,,"A\nB",resident-id,1,,,,,\n\nH002,,C,resident-id,2,,not-an-email,,,`, line: 5, reason: /email/ },
  { name: "refuses an unknown kind", text: `${header}\nH001,robot,A,resident-id,1,,,,,`, line: 2, reason: /kind "robot"/ },
  { name: "refuses a bad phone", text: `${header}\nH001,,A,resident-id,1,call me,,,,`, line: 2, reason: /phone/ },
  { name: "refuses a duplicate holder id", text: `${header}\nH001,,A,resident-id,1,,,,,\nH001,,B,resident-id,2,,,,,`, line: 3, reason: /duplicate holder id H001 \(first on line 2\)/ },
  { name: "refuses an unknown column by name", text: "id,name,id_type,id_number,shoe_size\nH001,A,resident-id,1,42", line: 1, reason: /unknown column "shoe_size"/ },
  { name: "refuses a row with too many fields", text: `${header}\nH001,,A,resident-id,1,,,,,,extra`, line: 2, reason: /length/i },
  { name: "refuses a serial that is not hex", text: `${header}\nH001,,A,resident-id,1,,,,,12;xyz`, line: 2, reason: /"xyz" is not a hexadecimal serial/ },
  { name: "refuses a serial listed for two holders", text: `${header}\nH001,,A,resident-id,1,,,,,0a\nH002,,B,resident-id,2,,,,,0A`, line: 3, reason: /already listed for holder H001/ },
  { name: "refuses a missing id number", text: `${header}\nH001,,A,resident-id,,,,,,`, line: 2, reason: /id_number is required/ },
];

for (const c of csvCases) {
  test(`CSV: ${c.name}`, () => {
    assert.throws(() => parseHoldersText(c.text, "h.csv", "csv"), (e: unknown) => {
      assert.ok(isUkeyError(e, "IMPORT_ROW_INVALID"), String(e));
      assert.equal(e.params.file, "h.csv");
      assert.equal(e.params.line, c.line);
      assert.match(String(e.params.reason), c.reason);
      return true;
    });
  });
}

const jsonCases: Array<{ name: string; text: string; line: number; reason: RegExp }> = [
  { name: "refuses an element missing its id number on the line it starts", text: '[\n  {"id": "H1", "name": "A", "idType": "t", "idNumber": "1"},\n  {\n    "id": "H2", "name": "B",\n    "idType": "t"\n  }\n]', line: 3, reason: /id_number is required/ },
  { name: "refuses an unknown field by name", text: '[{"id": "H1", "name": "A", "idType": "t", "idNumber": "1", "shoeSize": 42}]', line: 1, reason: /unknown field "shoeSize"/ },
  { name: "refuses snake_case field names", text: '[\n{"id": "H1", "name": "A", "id_type": "t", "idNumber": "1"}]', line: 2, reason: /unknown field "id_type"/ },
  { name: "refuses a number where a string belongs", text: '[\n\n{"id": 7, "name": "A", "idType": "t", "idNumber": "1"}]', line: 3, reason: /id must be a string/ },
  { name: "refuses an object instead of an array", text: '{"id": "H1"}', line: 1, reason: /JSON array/ },
  { name: "refuses broken JSON with the line of the fault", text: '[\n{"id": "H1",\n"name": }\n]', line: 3, reason: /not valid JSON/ },
  { name: "refuses a duplicate id", text: '[{"id": "H1", "name": "A", "idType": "t", "idNumber": "1"},\n {"id": "H1", "name": "B", "idType": "t", "idNumber": "2"}]', line: 2, reason: /duplicate holder id/ },
];

for (const c of jsonCases) {
  test(`JSON: ${c.name}`, () => {
    assert.throws(() => parseHoldersText(c.text, "h.json", "json"), (e: unknown) => {
      assert.ok(isUkeyError(e, "IMPORT_ROW_INVALID"), String(e));
      assert.equal(e.params.file, "h.json");
      assert.equal(e.params.line, c.line);
      assert.match(String(e.params.reason), c.reason);
      return true;
    });
  });
}

test("canonical serials: minimal even-length lower-case hex", () => {
  const cases: Array<[string, string | undefined]> = [
    ["3A:F2", "3af2"], ["0x0001", "01"], ["00 ab cd", "abcd"], ["1", "01"], ["abc", "0abc"],
    ["0", undefined], ["", undefined], ["12g4", undefined], ["a".repeat(41), undefined],
  ];
  for (const [input, want] of cases) assert.equal(canonicalSerial(input), want, input);
});

test("reads files by extension and refuses an unreadable path", async () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-holders-"));
  try {
    writeFileSync(join(dir, "h.csv"), `\uFEFF${header}\r\nH001,,A,resident-id,1,,,,,\r\n`);
    writeFileSync(join(dir, "h.json"), '[{"id": "H1", "name": "A", "idType": "t", "idNumber": "1"}]');
    assert.equal((await readHoldersFile(join(dir, "h.csv")))[0]!.id, "H001");
    assert.equal((await readHoldersFile(join(dir, "h.json")))[0]!.id, "H1");
    await assert.rejects(readHoldersFile(join(dir, "missing.csv")), (e: unknown) => isUkeyError(e, "FILE_UNREADABLE"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
