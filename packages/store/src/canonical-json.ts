/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, the
 * output of JSON.stringify for strings, finite numbers, booleans and null.
 * The audit hash is taken over this text, so a record read back from either
 * engine hashes exactly as it did when written.
 *
 * Throws TypeError for values JSON cannot carry faithfully (undefined inside
 * arrays, functions, symbols, bigints, non-finite numbers).
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot carry ${value}`);
      return JSON.stringify(value);
    case "object": {
      // Loops rather than entries/filter/sort/map chains: every audit entry goes through here.
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) out += (i ? "," : "") + canonicalJson(value[i]);
        return `${out}]`;
      }
      const json = (value as { toJSON?: () => unknown }).toJSON;
      if (typeof json === "function") return canonicalJson(json.call(value));
      const o = value as Record<string, unknown>;
      // The default sort compares UTF-16 code units, as the documented order asks.
      const keys = Object.keys(o).sort();
      let out = "{";
      for (const k of keys) {
        const v = o[k];
        if (v === undefined) continue;
        out += `${out.length > 1 ? "," : ""}${JSON.stringify(k)}:${canonicalJson(v)}`;
      }
      return `${out}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot carry a ${typeof value}`);
  }
}
