import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_REMINDER_DAYS, ProfileInvalidError, parseCertificateProfile, parseProfiles, profilePresets, reminderThresholds } from "../src/index.js";

describe("reminder thresholds of a profile", () => {
  test("a profile that names none gets 90, 30, 7, 1 days before, the expiry day and 30 days after", () => {
    assert.deepEqual([...DEFAULT_REMINDER_DAYS], [90, 30, 7, 1, 0, -30]);
    assert.deepEqual(reminderThresholds(parseCertificateProfile({ id: "p", preset: "bank-ushield" })), [90, 30, 7, 1, 0, -30]);
    assert.deepEqual(reminderThresholds(profilePresets["gov-supervision"]), [90, 30, 7, 1, 0, -30]);
  });

  test("issue 16: a preset that names none is reminded first when its notice period starts (85 days for seed 000)", () => {
    assert.equal(profilePresets["bank-personal-ukey"].renewal.noticeDaysBefore, 85);
    assert.deepEqual(reminderThresholds(profilePresets["bank-personal-ukey"]), [85, 30, 7, 1, 0, -30]);
    assert.deepEqual(reminderThresholds(profilePresets["bank-netbank-shield"]), [30, 7, 1, 0, -30]);
    assert.deepEqual(reminderThresholds(profilePresets["securities-gateway"]), [60, 30, 7, 1, 0, -30]);
  });

  test("a profile's own list replaces the default, earliest first; an empty list means no reminders", () => {
    const p = parseCertificateProfile({ id: "p", preset: "bank-ushield", renewal: { reminders: [-10, 60, 0, 14] } });
    assert.deepEqual(p.renewal.reminders, [-10, 60, 0, 14]);
    assert.deepEqual(reminderThresholds(p), [60, 14, 0, -10]);
    assert.deepEqual(reminderThresholds(parseCertificateProfile({ id: "p", renewal: { reminders: [] } })), []);
  });

  const refused: Array<{ name: string; reminders: unknown; path: Array<string | number>; match: RegExp }> = [
    { name: "a threshold given twice", reminders: [30, 7, 30], path: ["renewal", "reminders", 2], match: /reminder threshold 30 is listed twice/ },
    { name: "a fractional day", reminders: [7.5], path: ["renewal", "reminders", 0], match: /int/ },
    { name: "a day beyond a hundred years", reminders: [40_000], path: ["renewal", "reminders", 0], match: /36500/ },
    { name: "a number given as text", reminders: ["30"], path: ["renewal", "reminders", 0], match: /number/ },
    { name: "more than twelve thresholds", reminders: Array.from({ length: 13 }, (_, i) => i), path: ["renewal", "reminders"], match: /at most 12/ },
    { name: "a single number instead of a list", reminders: 30, path: ["renewal", "reminders"], match: /array/ },
  ];
  for (const c of refused) {
    test(`refuses ${c.name}, naming the field`, () => {
      assert.throws(() => parseCertificateProfile({ id: "p", preset: "bank-ushield", renewal: { reminders: c.reminders } }), (e: unknown) => {
        assert.ok(e instanceof ProfileInvalidError);
        assert.deepEqual(e.path, c.path);
        assert.match(e.message, c.match);
        return true;
      });
    });
  }

  test("in a list of profiles the path starts with the profile's index", () => {
    assert.throws(() => parseProfiles([{ id: "a" }, { id: "b", renewal: { reminders: [1, 1] } }]),
      (e: unknown) => e instanceof ProfileInvalidError && e.path.join(".") === "1.renewal.reminders.1");
  });
});
