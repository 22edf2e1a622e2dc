// Writes the reference documents that are rendered from @ukey/policy's data:
// docs/errors.md (whole) and the default table inside docs/key-vendors.md.
// Usage: node --import tsx scripts/render-reference-docs.ts [--check]
// With --check nothing is written and the exit status is 1 when a file is
// stale; the policy tests make the same comparison.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import {
  keyVendorTableMarkers, renderErrorsMarkdown, renderKeyVendorTableMarkdown, replaceGeneratedSection,
} from "../packages/policy/src/index.js";

const docs = resolve(import.meta.dirname, "..", "docs");
const check = process.argv.includes("--check");

const targets: { path: string; render: (current: string) => string }[] = [
  { path: resolve(docs, "errors.md"), render: () => renderErrorsMarkdown() },
  {
    path: resolve(docs, "key-vendors.md"),
    render: (current) => replaceGeneratedSection(current, keyVendorTableMarkers, renderKeyVendorTableMarkdown()),
  },
];

let stale = 0;
for (const { path, render } of targets) {
  let current = "";
  try {
    current = readFileSync(path, "utf8");
  } catch {
    // errors.md is rendered whole, so a missing one is simply written.
  }
  const next = render(current);
  if (next === current) continue;
  stale++;
  if (check) console.error(`stale: ${path}`);
  else {
    writeFileSync(path, next);
    console.log(`wrote ${path}`);
  }
}
if (check && stale > 0) process.exit(1);
