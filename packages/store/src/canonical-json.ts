import { UkeyError } from "@ukey/policy";

/** Thrown inside the walk, where the path is unknown; canonicalJson finds it once, on the way out. */
const UNPAIRED_SURROGATE = Symbol("unpaired surrogate");

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, the
 * output of JSON.stringify for strings, finite numbers, booleans and null.
 * The audit hash is taken over this text, so a record read back from either
 * engine hashes exactly as it did when written.
 *
 * Text must be well-formed UTF-16: a string or key with an unpaired
 * surrogate is refused, because neither engine can store one (both write
 * U+FFFD instead), so the entry read back would no longer match its hash.
 *
 * @throws UkeyError RECORD_TEXT_MALFORMED for an unpaired surrogate (naming where, from `name`, default
 *   `$`: `$.list[2]`), TypeError for
 *   values JSON cannot carry faithfully (undefined inside arrays, functions, symbols, bigints,
 *   non-finite numbers).
 */
export function canonicalJson(value: unknown, name = "$"): string {
  try {
    return canonical(value);
  } catch (e) {
    if (e === UNPAIRED_SURROGATE) throw new UkeyError("RECORD_TEXT_MALFORMED", { params: { where: surrogateAt(value, name) } });
    throw e;
  }
}

function canonical(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw UNPAIRED_SURROGATE;
      return JSON.stringify(value);
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot carry ${value}`);
      return JSON.stringify(value);
    case "object": {
      // Loops rather than entries/filter/sort/map chains: every audit entry goes through here.
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) out += (i ? "," : "") + canonical(value[i]);
        return `${out}]`;
      }
      const json = (value as { toJSON?: () => unknown }).toJSON;
      if (typeof json === "function") return canonical(json.call(value));
      const o = value as Record<string, unknown>;
      // The default sort compares UTF-16 code units, as the documented order asks.
      const keys = Object.keys(o).sort();
      let out = "{";
      for (const k of keys) {
        const v = o[k];
        if (v === undefined) continue;
        if (!k.isWellFormed()) throw UNPAIRED_SURROGATE;
        out += `${out.length > 1 ? "," : ""}${JSON.stringify(k)}:${canonical(v)}`;
      }
      return `${out}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot carry a ${typeof value}`);
  }
}

/** The path of the first unpaired surrogate in `value`, like `$.name` or `$.list[2] (a key)`. */
function surrogateAt(value: unknown, at = "$"): string {
  if (typeof value === "string") return value.isWellFormed() ? "" : at;
  if (value === null || typeof value !== "object") return "";
  const json = (value as { toJSON?: () => unknown }).toJSON;
  if (!Array.isArray(value) && typeof json === "function") return surrogateAt(json.call(value), at);
  for (const [k, v] of Object.entries(value)) {
    const here = Array.isArray(value) ? `${at}[${k}]` : `${at}.${k.isWellFormed() ? k : "?"}`;
    if (!k.isWellFormed() && v !== undefined) return `${here} (a key)`;
    const found = surrogateAt(v, here);
    if (found) return found;
  }
  return "";
}
