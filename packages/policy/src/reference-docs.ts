import { catalogue, errorCodes } from "./error-catalogue.js";
import { defaultKeyVendors, type KeyVendorTable } from "./key-vendors.js";
import { legacyErrors, type LegacyErrorEntry } from "./legacy-errors.js";

// The reference documents are rendered from the data so that they cannot
// drift from it: scripts/render-reference-docs.ts writes them, and a test
// compares the committed files with what these functions return now.

/**
 * Escapes a value for one cell of a Markdown table: only "|" is special
 * there (also inside code spans, where a backslash is otherwise literal).
 */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function row(cells: string[]): string {
  return `| ${cells.map(cell).join(" | ")} |`;
}

/** The command that regenerates the documents, named in their headers. */
export const referenceDocsCommand = "node --import tsx scripts/render-reference-docs.ts";

/**
 * The whole of docs/errors.md: the catalogue as a table (code, kind, zh-CN,
 * en, remedies) and the map from legacy codes and messages to ours.
 * Pure; `legacy` defaults to the seed table.
 */
export function renderErrorsMarkdown(legacy: readonly LegacyErrorEntry[] = legacyErrors): string {
  const lines: string[] = [
    "# Error codes",
    "",
    `<!-- Generated from packages/policy/src/error-catalogue.ts and legacy-errors.ts by \`${referenceDocsCommand}\`. Do not edit: a test fails when this file and the data differ. -->`,
    "",
    "Every error a holder, operator or integrator sees carries one of these codes, a message in zh-CN and en, and a remedy.",
    "`ukey explain CODE` and the portal's help page answer from the same data (`lookupError` in @ukey/policy),",
    "and also accept the codes and messages of older renewal systems listed in the second table.",
    "",
    "Placeholders such as `{serial}` are filled from the error's parameters. The kind decides the HTTP status in the server.",
    "",
    "## Catalogue",
    "",
    "| Code | Kind | zh-CN | en | Remedy (zh-CN) | Remedy (en) |",
    "|---|---|---|---|---|---|",
  ];
  for (const code of errorCodes) {
    const e = catalogue[code];
    lines.push(row([`\`${code}\``, e.kind, e.zh, e.en, e.remedyZh, e.remedyEn]));
  }
  lines.push(
    "",
    "## Codes and messages of older renewal systems",
    "",
    "What a holder may have seen in one of the five published renewal guides (docs/policies.md describes their policies),",
    "what it meant there, and which of our codes covers the same trouble. Search for any of them with `ukey explain`.",
    "",
    "| Source | Section | Legacy code | Legacy message | Meaning (zh-CN) | Meaning (en) | Ours |",
    "|---|---|---|---|---|---|---|",
  );
  for (const l of legacy) {
    lines.push(row([l.source, l.section, l.legacyCode ?? "", l.legacyMessage, l.meaningZh, l.meaningEn, l.ours.map((c) => `\`${c}\``).join(", ")]));
  }
  lines.push("");
  return lines.join("\n");
}

/** Marks the generated part of docs/key-vendors.md; the prose around it is written by hand. */
export const keyVendorTableMarkers = {
  begin: "<!-- generated: key vendor table -->",
  end: "<!-- end generated: key vendor table -->",
} as const;

/**
 * The default key vendor table as Markdown, placed between
 * keyVendorTableMarkers in docs/key-vendors.md. Pure; `table` defaults to
 * defaultKeyVendors.
 */
export function renderKeyVendorTableMarkdown(table: KeyVendorTable = defaultKeyVendors): string {
  const lines: string[] = [
    `<!-- Rendered from defaultKeyVendors by \`${referenceDocsCommand}\`; do not edit between the markers. -->`,
    "",
    "| id | Match | Vendor | Generation | Product | Guidance to the holder (en) |",
    "|---|---|---|---|---|---|",
  ];
  for (const e of table) {
    const match = Object.entries(e.match).map(([k, v]) => `${k}: \`${String(v)}\``).join(", ");
    lines.push(row([
      `\`${e.id}\``,
      match,
      `${e.vendor.zh} / ${e.vendor.en}`,
      e.generation === undefined ? "" : String(e.generation),
      e.product ? `${e.product.zh} / ${e.product.en}` : "",
      (e.guidance ?? []).map((g, i) => `${i + 1}. ${g.en}`).join(" "),
    ]));
  }
  return lines.join("\n");
}

/**
 * Puts a freshly rendered section between the markers of a document.
 * Throws Error when the markers are missing or out of order: a document
 * without them is a programming mistake, not user input.
 */
export function replaceGeneratedSection(doc: string, markers: { begin: string; end: string }, section: string): string {
  const b = doc.indexOf(markers.begin);
  const e = doc.indexOf(markers.end);
  if (b < 0 || e < b) throw new Error(`markers ${markers.begin} ... ${markers.end} not found in order`);
  return `${doc.slice(0, b + markers.begin.length)}\n${section}\n${doc.slice(e)}`;
}
