import { test } from "node:test";
import assert from "node:assert/strict";
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
