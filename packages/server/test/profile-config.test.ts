import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { fixedClock } from "@ukey/policy";
import { openServerContext } from "../src/server-context.js";
import { initialisedDataDir, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Profiles live in config.json; start refuses a wrong one naming its line,
// and a changed one reaches the database with an audit entry.
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let original: string;

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  original = readFileSync(`${dataDir}/config.json`, "utf8");
});
after(() => t.cleanup());

function withProfiles(profilesJson: string): string {
  const cfg = JSON.parse(original);
  delete cfg.profiles;
  const text = JSON.stringify(cfg, null, 2).replace(/\n}$/, `,\n  "profiles": ${profilesJson}\n}`);
  writeFileSync(`${dataDir}/config.json`, text);
  return text;
}

const lineOf = (text: string, needle: string) => text.slice(0, text.indexOf(needle)).split("\n").length;

const refused: Array<[string, string, string, RegExp]> = [
  ["a window that opens after it closes", `[
    { "id": "gov", "preset": "gov-supervision",
      "renewal": { "windows": { "web": { "opensDaysBefore": -10, "closesDaysAfter": -20 } } } }
  ]`, '"web"', /profiles\.0\.renewal\.windows\.web/],
  ["an unknown key", `[
    { "id": "personal" },
    { "id": "gov", "preset": "gov-supervision", "validty": { "days": 10 } }
  ]`, '"validty"', /profiles\.1\.validty/],
  ["an unknown preset", `[
    { "id": "gov", "preset": "gov-supervisor" }
  ]`, '"preset"', /profiles\.0\.preset/],
  ["two profiles with one id", `[
    { "id": "personal" },
    { "id": "personal", "preset": "bank-ushield" }
  ]`, '"personal", "preset"', /profiles\.1\.id/],
];
for (const [name, profiles, needle, where] of refused) {
  test(`start refuses ${name}, naming the line`, () => {
    const text = withProfiles(profiles);
    const r = runUkeyServer(["start", "--data-dir", dataDir, "--port", "0", "--json"], env);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    const err = (JSON.parse(r.stdout.trim().split("\n").pop()!) as { error: { code: string; message: { en: string } } }).error;
    assert.equal(err.code, "CONFIG_INVALID");
    assert.match(err.message.en, where);
    assert.match(err.message.en, new RegExp(`line ${lineOf(text, needle)}:`));
  });
}

test("a changed profile is written with one audit entry, and an unchanged one writes nothing", async () => {
  withProfiles(`[ { "id": "personal" }, { "id": "gov", "preset": "gov-supervision", "certificates": null } ]`);
  const clock = fixedClock(new Date());
  const count = async () => {
    const ctx = await openServerContext(dataDir, env, clock);
    try {
      const entries = await ctx.store.audit.list(0, 1000);
      return { gov: (await ctx.store.profiles.get("gov"))?.profile, changes: entries.filter((e) => e.action.startsWith("profile.")).map((e) => `${e.action} ${e.subjectId}`) };
    } finally {
      await ctx.close();
    }
  };
  const first = await count();
  assert.equal(first.gov?.validity && "days" in first.gov.validity ? first.gov.validity.days : undefined, 1820);
  assert.ok(first.changes.includes("profile.created gov"));
  const again = await count();
  assert.deepEqual(again.changes, first.changes);
  withProfiles(`[ { "id": "personal" }, { "id": "gov", "preset": "gov-supervision", "certificates": null, "validity": { "days": 730 } } ]`);
  const changed = await count();
  assert.deepEqual(changed.changes, [...first.changes, "profile.updated gov"]);
  assert.deepEqual(changed.gov?.validity, { days: 730 });
});
