import { test } from "node:test";
import assert from "node:assert/strict";
import { newOrderId } from "../src/order-id.js";

test("order ids are UUIDv7: the time first, version and variant set, 74 random bits", () => {
  const at = Date.UTC(2026, 10, 21, 12, 0, 0, 123);
  const id = newOrderId(at);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(parseInt(id.replace(/-/g, "").slice(0, 12), 16), at, "the first 48 bits are the milliseconds");
  const many = Array.from({ length: 2000 }, () => newOrderId(at));
  assert.equal(new Set(many).size, many.length, "same millisecond, still distinct");
  // Later orders sort after earlier ones: the key grows at one end.
  const ids = [at, at + 1, at + 1000, at + 86_400_000].map(newOrderId);
  assert.deepEqual([...ids].sort(), ids);
  // Every random bit varies.
  const bits = new Set<string>();
  for (const x of many) bits.add(x.replace(/-/g, "").slice(12));
  assert.equal(bits.size, many.length);
});
