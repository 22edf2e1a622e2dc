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
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      const json = (value as { toJSON?: () => unknown }).toJSON;
      if (typeof json === "function") return canonicalJson(json.call(value));
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot carry a ${typeof value}`);
  }
}
