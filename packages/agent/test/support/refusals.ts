import assert from "node:assert/strict";
import { isUkeyError } from "@ukey/policy";

/** A rejection matcher: a UkeyError with code `c` and, when given, these params (assert.rejects(…, isRefusal("X"))). */
export const isRefusal = (c: string, params?: Record<string, unknown>) => (e: unknown): boolean => {
  assert.ok(isUkeyError(e), `not a UkeyError: ${String(e)}`);
  assert.equal(e.code, c, `${e.code}: ${e.message}`);
  for (const [k, v] of Object.entries(params ?? {})) assert.equal(e.params[k], v, `params.${k}`);
  return true;
};

/** Asserts that `p` rejects with a UkeyError of `code`. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, isRefusal(code));
}
