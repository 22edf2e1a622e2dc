import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  certificateProfileSchema, defaultProfile, isUkeyError, parseCertificateProfile, parseProfiles, presetNames, profilePresets,
  resolveProfile, validityFor, ProfileInvalidError, type CertificateProfile,
} from "../src/index.js";

const at = (s: string) => new Date(s);

describe("validityFor", () => {
  const p = (validity: CertificateProfile["validity"], validityAnchor: CertificateProfile["validityAnchor"]) => ({ validity, validityAnchor });
  const cases: Array<{ name: string; profile: ReturnType<typeof p>; now: string; old?: string; notAfter: string }> = [
    { name: "issuance, days: now plus 1820 × 24 h", profile: p({ days: 1820 }, "issuance"), now: "2026-03-01T10:00:00+08:00", notAfter: "2031-02-23T10:00:00+08:00" },
    { name: "issuance ignores the old notAfter", profile: p({ years: 5 }, "issuance"), now: "2026-03-01T10:00:00+08:00", old: "2026-05-01T00:00:00+08:00", notAfter: "2031-03-01T10:00:00+08:00" },
    { name: "issuance, years across a leap day: 29 Feb becomes 28 Feb", profile: p({ years: 5 }, "issuance"), now: "2028-02-29T09:30:00+08:00", notAfter: "2033-02-28T09:30:00+08:00" },
    { name: "issuance, years onto a leap year keep 29 Feb", profile: p({ years: 4 }, "issuance"), now: "2024-02-29T09:30:00+08:00", notAfter: "2028-02-29T09:30:00+08:00" },
    { name: "years count the CST date, not the UTC date", profile: p({ years: 1 }, "issuance"), now: "2027-02-28T20:00:00Z", notAfter: "2028-02-29T20:00:00Z" },
    { name: "carry-over from a notAfter still ahead", profile: p({ years: 5 }, "carry-over"), now: "2026-03-01T10:00:00+08:00", old: "2026-05-01T08:00:00+08:00", notAfter: "2031-05-01T08:00:00+08:00" },
    { name: "carry-over from a notAfter ahead, in days", profile: p({ days: 365 }, "carry-over"), now: "2026-03-01T10:00:00+08:00", old: "2026-05-01T08:00:00+08:00", notAfter: "2027-05-01T08:00:00+08:00" },
    { name: "carry-over from an expired certificate starts now", profile: p({ years: 5 }, "carry-over"), now: "2026-03-01T10:00:00+08:00", old: "2026-02-01T08:00:00+08:00", notAfter: "2031-03-01T10:00:00+08:00" },
    { name: "carry-over with a notAfter equal to now starts now", profile: p({ days: 10 }, "carry-over"), now: "2026-03-01T10:00:00+08:00", old: "2026-03-01T10:00:00+08:00", notAfter: "2026-03-11T10:00:00+08:00" },
    { name: "carry-over without an old certificate starts now", profile: p({ years: 5 }, "carry-over"), now: "2026-03-01T10:00:00+08:00", notAfter: "2031-03-01T10:00:00+08:00" },
    { name: "carry-over across a leap day keeps 29 Feb when the target year has one", profile: p({ years: 4 }, "carry-over"), now: "2023-12-01T10:00:00+08:00", old: "2024-02-29T12:00:00+08:00", notAfter: "2028-02-29T12:00:00+08:00" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const now = at(c.now);
      const v = validityFor(c.profile, c.old ? { now, oldNotAfter: at(c.old) } : { now });
      assert.equal(v.notBefore.getTime(), now.getTime());
      assert.equal(v.notAfter.toISOString(), at(c.notAfter).toISOString());
    });
  }
});

function refusal(input: unknown, parse: (i: unknown) => unknown = parseCertificateProfile): ProfileInvalidError {
  try {
    parse(input);
  } catch (e) {
    assert.ok(e instanceof ProfileInvalidError, String(e));
    assert.ok(isUkeyError(e, "PROFILE_INVALID"));
    return e;
  }
  assert.fail("the profile was accepted");
}

describe("profile parsing", () => {
  test("every preset resolves, validates and is deeply frozen", () => {
    for (const n of presetNames) {
      const p = resolveProfile({ id: n, preset: n });
      assert.deepEqual({ ...p, id: undefined }, { ...structuredClone(profilePresets[n]), id: undefined });
      assert.ok(Object.isFrozen(p.renewal.windows));
      assert.equal(certificateProfileSchema.safeParse(p).success, true);
    }
  });
  test("the default profile is valid and a complete profile parses to itself", () => {
    assert.deepEqual(parseCertificateProfile(structuredClone(defaultProfile)), defaultProfile);
  });
  test("fields missing without a preset take the default profile's values", () => {
    const p = parseCertificateProfile({ id: "org", certificateKind: "file" });
    assert.deepEqual(p, { ...defaultProfile, id: "org", certificateKind: "file" });
  });
  test("overrides deep-merge over the preset: one channel and one number change, the rest stays", () => {
    const p = parseCertificateProfile({
      id: "personal", preset: "bank-ushield",
      renewal: { windows: { web: { closesDaysAfter: 365 }, est: { opensDaysBefore: 30, closesDaysAfter: 0 }, mobile: null }, noticeDaysBefore: 60 },
      keyAlgorithms: ["p256"],
    });
    assert.deepEqual(p.renewal.windows, {
      web: { opensDaysBefore: 90, closesDaysAfter: 365 },
      mobile: null,
      cli: { opensDaysBefore: 90, closesDaysAfter: 1800 },
      est: { opensDaysBefore: 30, closesDaysAfter: 0 },
    });
    assert.equal(p.renewal.noticeDaysBefore, 60);
    assert.deepEqual(p.keyAlgorithms, ["p256"], "arrays replace");
    assert.deepEqual(p.validity, { years: 5 });
    assert.equal(profilePresets["bank-ushield"].renewal.windows.mobile?.closesDaysAfter, 30, "the preset itself is untouched");
  });
  test("a validity override replaces the preset's validity whole, even of the other kind", () => {
    assert.deepEqual(parseCertificateProfile({ id: "x", preset: "bank-ushield", validity: { days: 730 } }).validity, { days: 730 });
    assert.deepEqual(parseCertificateProfile({ id: "x", preset: "gov-supervision", validity: { years: 2 } }).validity, { years: 2 });
  });

  const refused: Array<{ name: string; input: unknown; path: Array<string | number>; match: RegExp }> = [
    { name: "not an object", input: "personal", path: [], match: /JSON object/ },
    { name: "no id", input: { preset: "bank-ushield" }, path: ["id"], match: /id/ },
    { name: "a bad id", input: { id: "a b", preset: "bank-ushield" }, path: ["id"], match: /letters/ },
    { name: "an unknown preset", input: { id: "x", preset: "bank-unknown" }, path: ["preset"], match: /unknown preset "bank-unknown".*bank-personal-ukey/ },
    { name: "an unknown top-level key", input: { id: "x", preset: "bank-ushield", validityDays: 730 }, path: ["validityDays"], match: /Unrecognized key/ },
    { name: "an unknown key inside a window", input: { id: "x", preset: "bank-ushield", renewal: { windows: { web: { opensDays: 3 } } } }, path: ["renewal", "windows", "web", "opensDays"], match: /Unrecognized key/ },
    { name: "an unknown channel", input: { id: "x", preset: "bank-ushield", renewal: { windows: { wechat: null } } }, path: ["renewal", "windows", "wechat"], match: /Unrecognized key/ },
    { name: "a window that opens after it closes", input: { id: "x", preset: "bank-ushield", renewal: { windows: { mobile: { opensDaysBefore: -40, closesDaysAfter: 30 } } } }, path: ["renewal", "windows", "mobile"], match: /opens .* after it closes/ },
    { name: "a new window with a missing bound", input: { id: "x", preset: "bank-personal-ukey", renewal: { windows: { mobile: { opensDaysBefore: 30 } } } }, path: ["renewal", "windows", "mobile", "closesDaysAfter"], match: /expected int|number/ },
    { name: "a fractional day count", input: { id: "x", preset: "bank-ushield", renewal: { noticeDaysBefore: 1.5 } }, path: ["renewal", "noticeDaysBefore"], match: /int/ },
    { name: "an empty algorithm list", input: { id: "x", preset: "bank-ushield", keyAlgorithms: [] }, path: ["keyAlgorithms"], match: /at least one key algorithm/ },
    { name: "an unknown algorithm", input: { id: "x", preset: "bank-ushield", keyAlgorithms: ["p256", "rsa1024"] }, path: ["keyAlgorithms", 1], match: /Invalid option/ },
    { name: "a duplicated algorithm", input: { id: "x", preset: "bank-ushield", keyAlgorithms: ["p256", "p256"] }, path: ["keyAlgorithms", 1], match: /twice/ },
    { name: "an extended key usage that is neither a name nor an OID", input: { id: "x", preset: "bank-ushield", extKeyUsage: ["client"] }, path: ["extKeyUsage", 0], match: /dotted OID/ },
    { name: "both days and years", input: { id: "x", validity: { days: 1, years: 1 } }, path: ["validity"], match: /exactly one/ },
    { name: "an unknown completion rule", input: { id: "x", preset: "bank-ushield", renewal: { onCompletion: "delete" } }, path: ["renewal", "onCompletion"], match: /Invalid option/ },
  ];
  for (const c of refused) {
    test(`refuses ${c.name}, with the path of the wrong field`, () => {
      const e = refusal(c.input);
      assert.deepEqual(e.path, c.path);
      assert.match(e.message, c.match);
      assert.equal(e.params.path, c.path.join("."));
      assert.match(e.toProblem().message["zh-CN"], /证书模板配置不正确/);
    });
  }
  test("an extended key usage may be a dotted OID", () => {
    assert.deepEqual(parseCertificateProfile({ id: "x", extKeyUsage: ["clientAuth", "1.2.156.10197.1.1"] }).extKeyUsage, ["clientAuth", "1.2.156.10197.1.1"]);
  });
  test("a one-day window (opens and closes on the expiry day) is allowed", () => {
    const p = parseCertificateProfile({ id: "x", renewal: { windows: { est: { opensDaysBefore: 0, closesDaysAfter: 0 } } } });
    assert.deepEqual(p.renewal.windows.est, { opensDaysBefore: 0, closesDaysAfter: 0 });
  });
});

describe("parseProfiles", () => {
  test("parses a list", () => {
    const list = parseProfiles([{ id: "personal", preset: "bank-personal-ukey" }, { id: "gateway", preset: "securities-gateway", certificateKind: "hardware" }]);
    assert.deepEqual(list.map((p) => [p.id, p.certificateKind]), [["personal", "hardware"], ["gateway", "hardware"]]);
  });
  test("refuses a duplicate id at the second one", () => {
    const e = refusal([{ id: "a" }, { id: "b" }, { id: "a", preset: "gov-supervision" }], parseProfiles);
    assert.deepEqual(e.path, [2, "id"]);
    assert.match(e.message, /already used by profile 0/);
  });
  test("puts the index in front of the path of a wrong field", () => {
    const e = refusal([{ id: "a" }, { id: "b", renewal: { windows: { web: { opensDaysBefore: 1, closesDaysAfter: -2 } } } }], parseProfiles);
    assert.deepEqual(e.path, [1, "renewal", "windows", "web"]);
  });
  test("refuses what is not a list", () => {
    assert.deepEqual(refusal({ id: "a" }, parseProfiles).path, []);
  });
});
