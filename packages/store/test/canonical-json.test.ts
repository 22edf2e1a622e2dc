import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { isUkeyError } from "@ukey/policy";
import { canonicalJson } from "../src/index.js";

// The audit chain hashes this text: its exact output is pinned here, so that
// no rewrite of the function can change the hash of an entry already stored.
test("canonical JSON: sorted keys by UTF-16 code unit, no whitespace, JSON.stringify's scalars", () => {
  assert.equal(canonicalJson({}), "{}");
  assert.equal(canonicalJson([]), "[]");
  assert.equal(canonicalJson(null), "null");
  assert.equal(canonicalJson({ b: 1, a: [true, null, "x"], c: { z: -0.5, y: 1e21 } }), '{"a":[true,null,"x"],"b":1,"c":{"y":1e+21,"z":-0.5}}');
  // "A" < "a" < "é" < "中" < "😀" (a surrogate pair, 0xD83D) < "\uffff" in code units.
  const keys = { "\uffff": 6, "😀": 5, 中: 4, é: 3, a: 2, A: 1 };
  assert.equal(canonicalJson(keys), '{"A":1,"a":2,"é":3,"中":4,"😀":5,"\uffff":6}');
  assert.equal(canonicalJson({ q: 'say "hi"\n\u2028', u: undefined, n: [[], {}] }), '{"n":[[],{}],"q":"say \\"hi\\"\\n\u2028"}');
  assert.equal(canonicalJson({ when: new Date(Date.UTC(2026, 10, 21)) }), '{"when":"2026-11-21T00:00:00.000Z"}');
  assert.equal(canonicalJson([{ b: [2, { d: 4, c: 3 }], a: 1 }]), '[{"a":1,"b":[2,{"c":3,"d":4}]}]');
});

test("canonical JSON refuses what JSON cannot carry faithfully", () => {
  for (const bad of [[undefined], { n: NaN }, { i: Infinity }, { f: () => 1 }, { b: 1n }, { s: Symbol("s") }, [1, [undefined]]]) {
    assert.throws(() => canonicalJson(bad), TypeError, JSON.stringify(bad, (_k, v: unknown) => (typeof v === "bigint" ? "1n" : v)));
  }
});

/** The refusal of text with an unpaired surrogate, naming where it is. */
function refusedAt(value: unknown, name?: string): string {
  try {
    canonicalJson(value, name);
  } catch (e) {
    assert.ok(isUkeyError(e, "RECORD_TEXT_MALFORMED"), String(e));
    return String(e.params.where);
  }
  assert.fail(`accepted ${JSON.stringify(value)}`);
}

test("canonical JSON refuses an unpaired surrogate anywhere, naming where", () => {
  const cases: Array<[unknown, string]> = [
    ["\ud800", "$"],
    ["a\udc00b", "$"],
    [{ name: "\ud83d" }, "$.name"],
    [{ list: [1, "ok", "\udfff"] }, "$.list[2]"],
    [{ "\ud800": 1 }, "$.? (a key)"],
    [{ when: { toJSON: () => "\ud800" } }, "$.when"],
  ];
  for (const [value, where] of cases) assert.equal(refusedAt(value), where, JSON.stringify(value));
  assert.equal(refusedAt({ operatorId: "\ud800" }, "data"), "data.operatorId");
  // Paired surrogates are one character (U+1F600), and fine.
  assert.equal(canonicalJson("\ud83d\ude00"), '"\ud83d\ude00"');
});

// Any code point (fast-check's "binary" unit never makes half a surrogate pair), or now and then an unpaired surrogate.
const unit = fc.oneof(
  { weight: 30, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff") },
);

// Property: what canonicalJson accepts, JSON carries: parsing the canonical
// text and making it canonical again gives the same text, and a string comes
// back as itself. What it refuses is exactly the text that is not well-formed.
test("every string: canonical text round-trips when well-formed, and is refused otherwise", () => {
  const seen = { kept: 0, refused: 0 };
  fc.assert(fc.property(fc.string({ unit, maxLength: 40 }), (s) => {
    if (!s.isWellFormed()) {
      assert.equal(refusedAt(s), "$");
      seen.refused += 1;
      return;
    }
    const text = canonicalJson(s);
    assert.equal(JSON.parse(text), s);
    assert.equal(canonicalJson(JSON.parse(text)), text);
    seen.kept += 1;
  }), { numRuns: 2000 });
  assert.ok(seen.kept > 100 && seen.refused > 100, JSON.stringify(seen));
});

test("every JSON value of well-formed text round-trips through its canonical text", () => {
  fc.assert(fc.property(fc.jsonValue({ stringUnit: "binary", maxDepth: 4 }), (v) => {
    const text = canonicalJson(v);
    assert.equal(canonicalJson(JSON.parse(text)), text);
  }), { numRuns: 1000 });
});

test("every JSON value: refused exactly when some string or key is not well-formed", () => {
  const wellFormed = (v: unknown): boolean => typeof v === "string" ? v.isWellFormed()
    : Array.isArray(v) ? v.every(wellFormed)
    : v !== null && typeof v === "object" ? Object.entries(v).every(([k, x]) => k.isWellFormed() && wellFormed(x)) : true;
  const seen = { kept: 0, refused: 0 };
  fc.assert(fc.property(fc.jsonValue({ stringUnit: unit, maxDepth: 3 }), (v) => {
    if (wellFormed(v)) {
      const text = canonicalJson(v);
      assert.equal(canonicalJson(JSON.parse(text)), text);
      seen.kept += 1;
    } else {
      refusedAt(v);
      seen.refused += 1;
    }
  }), { numRuns: 1000 });
  assert.ok(seen.kept > 50 && seen.refused > 50, JSON.stringify(seen));
});
