import { readFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import { parse } from "csv-parse/sync";
import { UkeyError } from "@ukey/policy";
import type { HolderKind } from "@ukey/store";

/** One validated row of a holders file, as the old CA's export gave it. */
export interface HolderRow {
  id: string;
  kind: HolderKind;
  name: string;
  idType: string;
  /** The ID number as written in the file; hashed and masked before anything is stored. */
  idNumber: string;
  phone: string | null;
  email: string | null;
  organisationId: string | null;
  /** Profile of this holder's certificates; null means the import's default. */
  profile: string | null;
  /** Serials of this holder's certificates, in canonical hex (see canonicalSerial). */
  certSerials: string[];
  /** Physical line where the row starts (CSV) or where its array element starts (JSON), from 1. */
  line: number;
}

/** CSV header names, mapped to the JSON (camelCase) names. */
const columns = {
  id: "id",
  kind: "kind",
  name: "name",
  id_type: "idType",
  id_number: "idNumber",
  phone: "phone",
  email: "email",
  organisation_id: "organisationId",
  profile: "profile",
  cert_serials: "certSerials",
} as const;

type Field = (typeof columns)[keyof typeof columns];
const fields = new Set<string>(Object.values(columns));

/** What a parsed row looks like before validation: field name to raw value. */
type RawRow = { line: number; values: Record<string, unknown> };

/**
 * The canonical form of a serial typed in another tool's style ("3A:F2",
 * "0x3af2", "3a f2", leading zeros): minimal even-length lower-case hex,
 * the form the store keys certificates by. Returns undefined for anything
 * that is not a positive hex number of at most 20 octets; never throws.
 */
export function canonicalSerial(text: string): string | undefined {
  const s = text.trim().replace(/^0x/i, "").replace(/[:\s-]/g, "").toLowerCase();
  if (!/^[0-9a-f]+$/.test(s)) return undefined;
  const digits = s.replace(/^0+/, "");
  // RFC 5280 caps serials at 20 octets; zero is not a serial a CA issues.
  if (digits.length === 0 || digits.length > 40) return undefined;
  return digits.length % 2 ? `0${digits}` : digits;
}

/**
 * Reads and validates a holders file: `.csv` (header row, snake_case
 * columns) or `.json` (an array of objects with camelCase fields); any
 * other extension is treated by its content ("[" first means JSON).
 * Throws FILE_UNREADABLE when the file cannot be read, IMPORT_ROW_INVALID
 * (file, line, reason) for the first bad row; see parseHoldersText.
 */
export async function readHoldersFile(path: string): Promise<HolderRow[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  const ext = extname(path).toLowerCase();
  const format = ext === ".csv" ? "csv" : ext === ".json" ? "json" : text.replace(/^\uFEFF/, "").trimStart().startsWith("[") ? "json" : "csv";
  return parseHoldersText(text, basename(path), format);
}

/**
 * Parses and validates the text of a holders file. Every row must have id,
 * name, id_type and id_number; kind is "person" (the default) or
 * "organisation"; email and phone, when given, must look like one; ids and
 * listed serials must be unique across the file; unknown columns or fields
 * are refused by name. Empty values mean "not given". Throws
 * IMPORT_ROW_INVALID { file, line, reason } for the first problem, with the
 * physical line of the CSV record or of the start of the JSON element.
 */
export function parseHoldersText(text: string, file: string, format: "csv" | "json"): HolderRow[] {
  const raw = format === "csv" ? csvRows(text, file) : jsonRows(text, file);
  const rows: HolderRow[] = [];
  const ids = new Map<string, number>();
  const serials = new Map<string, string>();
  for (const r of raw) {
    const row = validateRow(r, file);
    const seen = ids.get(row.id);
    if (seen !== undefined) throw rowError(file, row.line, `duplicate holder id ${row.id} (first on line ${seen})`);
    ids.set(row.id, row.line);
    for (const s of row.certSerials) {
      const owner = serials.get(s);
      if (owner !== undefined) throw rowError(file, row.line, `serial ${s} is already listed for holder ${owner}`);
      serials.set(s, row.id);
    }
    rows.push(row);
  }
  return rows;
}

function rowError(file: string, line: number, reason: string): UkeyError {
  return new UkeyError("IMPORT_ROW_INVALID", { params: { file, line, reason } });
}

function csvRows(text: string, file: string): RawRow[] {
  let records: Array<{ record: Record<string, string>; raw: string }>;
  try {
    records = parse(text, {
      bom: true,
      trim: true,
      skip_empty_lines: true,
      raw: true,
      columns: (header: string[]) => {
        const seen = new Set<string>();
        for (const h of header) {
          if (!(h in columns)) throw rowError(file, 1, `unknown column "${h}" (known: ${Object.keys(columns).join(", ")})`);
          if (seen.has(h)) throw rowError(file, 1, `column "${h}" appears twice`);
          seen.add(h);
        }
        return header;
      },
    }) as Array<{ record: Record<string, string>; raw: string }>;
  } catch (e) {
    if (e instanceof UkeyError) throw e;
    // csv-parse's own errors (unclosed quote, wrong field count) carry the line it stopped on.
    const line = typeof (e as { lines?: unknown }).lines === "number" ? (e as { lines: number }).lines : 1;
    throw rowError(file, line, (e as Error).message);
  }
  // csv-parse reports where a record ends, not where it starts; the raw
  // texts of the records are contiguous pieces of the input, so finding
  // each one in turn gives its physical starting line, multi-line quoted
  // fields and skipped blank lines included.
  const out: RawRow[] = [];
  let cursor = 0;
  for (const { record, raw } of records) {
    const at = text.indexOf(raw, cursor);
    const start = at < 0 ? cursor : at + (raw.length - raw.replace(/^[\r\n\s]+/, "").length);
    cursor = at < 0 ? cursor : at + raw.length;
    const values: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(record)) values[columns[k as keyof typeof columns]] = v;
    out.push({ line: lineAt(text, start), values });
  }
  return out;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function jsonRows(text: string, file: string): RawRow[] {
  const body = text.replace(/^\uFEFF/, "");
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch (e) {
    // Node 20's V8 does not say where the fault is, so find it ourselves.
    throw rowError(file, lineAt(body, jsonFaultOffset(body)), `not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(data)) throw rowError(file, 1, "the file must hold a JSON array of holder objects");
  const starts = topLevelElementLines(body);
  return data.map((v, i) => {
    const line = starts[i] ?? 1;
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw rowError(file, line, "each element must be an object");
    return { line, values: v as Record<string, unknown> };
  });
}

/**
 * Offset of the first syntax fault of text that JSON.parse refused, found
 * by a recognizer of the RFC 8259 grammar; used only to name the line in
 * the error, never to read values.
 */
function jsonFaultOffset(text: string): number {
  let i = 0;
  const ws = () => { while (i < text.length && " \t\r\n".includes(text[i]!)) i++; };
  const fault = (): never => { throw i; };
  const literal = (w: string) => { if (text.startsWith(w, i)) i += w.length; else fault(); };
  const string = () => {
    i++;
    for (;;) {
      const c = text[i];
      if (c === undefined || c < " ") fault();
      if (c === '"') { i++; return; }
      if (c === "\\") {
        const n = text[i + 1];
        if (n === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else if (n !== undefined && '"\\/bfnrt'.includes(n)) i += 2;
        else { i++; fault(); }
      } else i++;
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++; ws();
      if (text[i] === close) { i++; return; }
      for (;;) {
        if (close === "}") {
          if (text[i] !== '"') fault();
          string(); ws();
          if (text[i] !== ":") fault();
          i++;
        }
        value(); ws();
        if (text[i] === ",") { i++; ws(); continue; }
        if (text[i] === close) { i++; return; }
        fault();
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true");
    if (c === "f") return literal("false");
    if (c === "n") return literal("null");
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) fault();
    i += m![0].length;
  };
  try {
    value(); ws();
    return i;
  } catch (at) {
    return typeof at === "number" ? at : 0;
  }
}

/**
 * Lines on which the elements of the top-level JSON array start. The text
 * is known to be valid JSON (JSON.parse accepted it), so a scan that tracks
 * strings and nesting depth is exact; no installed parser reports positions.
 */
function topLevelElementLines(text: string): number[] {
  const out: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expectValue = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\n") line++;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === " " || c === "\t" || c === "\r" || c === "\n") continue;
    if (depth === 1 && expectValue && c !== "]") {
      out.push(line);
      expectValue = false;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") {
      depth++;
      if (depth === 1) expectValue = true;
    } else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 1) expectValue = true;
  }
  return out;
}

const kinds: readonly HolderKind[] = ["person", "organisation"];
const emailShape = /^[^\s@,;]+@[^\s@,;]+\.[^\s@,;]+$/;
// Mainland mobiles (11 digits) and landlines with area code, optionally +86 or another country code.
const phoneShape = /^\+?[0-9][0-9 -]{5,18}[0-9]$/;
const idShape = /^[^\s\p{Cc}]{1,64}$/u;

function validateRow(r: RawRow, file: string): HolderRow {
  const fail = (reason: string) => rowError(file, r.line, reason);
  for (const k of Object.keys(r.values)) {
    if (!fields.has(k)) throw fail(`unknown field "${k}" (known: ${[...fields].join(", ")})`);
  }
  const text = (f: Field): string | null => {
    const v = r.values[f];
    if (v === undefined || v === null) return null;
    if (typeof v !== "string") throw fail(`${f} must be a string`);
    const t = v.trim();
    return t === "" ? null : t;
  };
  const required = (f: Field, column: string): string => {
    const v = text(f);
    if (v === null) throw fail(`${column} is required`);
    return v;
  };
  const id = required("id", "id");
  if (!idShape.test(id)) throw fail(`id "${id}" must be 1 to 64 characters without spaces`);
  const kind = (text("kind") ?? "person") as HolderKind;
  if (!kinds.includes(kind)) throw fail(`kind "${kind}" must be person or organisation`);
  const name = required("name", "name");
  const idType = required("idType", "id_type");
  const idNumber = required("idNumber", "id_number");
  if (!/^[0-9A-Za-z][0-9A-Za-z\s-]*$/.test(idNumber)) throw fail("id_number must be letters and digits");
  const phone = text("phone");
  if (phone !== null && !phoneShape.test(phone)) throw fail(`phone "${phone}" is not a phone number`);
  const email = text("email");
  if (email !== null && !emailShape.test(email)) throw fail(`email "${email}" is not an email address`);
  const organisationId = text("organisationId");
  if (organisationId !== null && organisationId === id) throw fail("a holder cannot be its own organisation");
  const profile = text("profile");
  return {
    id, kind, name, idType, idNumber, phone, email, organisationId, profile,
    certSerials: serialList(r.values.certSerials, fail),
    line: r.line,
  };
}

function serialList(v: unknown, fail: (reason: string) => UkeyError): string[] {
  if (v === undefined || v === null) return [];
  // CSV gives "a;b"; JSON may give the same string or an array.
  const parts = typeof v === "string" ? v.split(";") : Array.isArray(v) ? v : undefined;
  if (parts === undefined) throw fail("certSerials must be a string or an array of strings");
  const out: string[] = [];
  for (const p of parts) {
    if (typeof p !== "string") throw fail("certSerials must hold strings");
    if (p.trim() === "") continue;
    const s = canonicalSerial(p);
    if (s === undefined) throw fail(`cert_serials: "${p.trim()}" is not a hexadecimal serial`);
    if (out.includes(s)) throw fail(`cert_serials lists ${s} twice`);
    out.push(s);
  }
  return out;
}
