// Writes docs/policies/<preset>.svg (the timeline of each preset) and the
// generated preset tables inside docs/policies.md, from @ukey/policy.
// Usage: node --import tsx scripts/render-policy-timelines.ts [--check]
// With --check nothing is written and the exit status is 1 when a file is
// stale; packages/policy/test/policy-timeline-svg.test.ts compares the same.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { presetNames, profilePresets, renderPolicyTableMarkdown, renderPolicyTimelineSvg } from "../packages/policy/src/index.js";

const docs = resolve(import.meta.dirname, "..", "docs");
const check = process.argv.includes("--check");

function read(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** docs/policies.md with each `<!-- policy-table: NAME -->...<!-- /policy-table -->` section rendered now. */
export function withTables(md: string): string {
  return md.replace(/(<!-- policy-table: ([a-z-]+) -->\n)[\s\S]*?(<!-- \/policy-table -->)/g, (_m, open: string, name: string, close: string) => {
    const p = profilePresets[name as keyof typeof profilePresets];
    if (!p) throw new Error(`docs/policies.md names an unknown preset ${name}`);
    return `${open}${renderPolicyTableMarkdown(p)}${close}`;
  });
}

const targets = [
  ...presetNames.map((name) => ({ path: resolve(docs, "policies", `${name}.svg`), render: () => renderPolicyTimelineSvg(profilePresets[name]) })),
  { path: resolve(docs, "policies.md"), render: () => withTables(read(resolve(docs, "policies.md"))) },
];

let stale = 0;
for (const { path, render } of targets) {
  const want = render();
  if (read(path) === want) continue;
  stale++;
  if (check) console.error(`stale: ${path}`);
  else writeFileSync(path, want);
}
if (check && stale) process.exit(1);
console.log(check ? "policy timelines and tables are up to date" : `wrote ${stale} file(s)`);
