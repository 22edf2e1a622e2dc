// Runs every test file of the repository with node's own test runner.
// Usage: node scripts/run-tests.mjs [path-substring ...]
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules") continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
const files = walk("packages", []).concat(walk("docs", []))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
// Files that compare timings side by side in one process (a renewal with and without a flood) run
// after the rest, one at a time: a browser or Wine test beside them would load one side only.
const ALONE = [/sign-in-flood\.test\.ts$/];
const alone = files.filter((f) => ALONE.some((re) => re.test(f)));
const together = files.filter((f) => !alone.includes(f));
// A test that hangs fails after 10 minutes with its name, rather than holding the run until CI's limit.
const run = (list, concurrency) => (list.length === 0 ? 0 : spawnSync(process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-timeout=600000", "--test-reporter=spec", ...list], { stdio: "inherit" }).status ?? 1);
const first = run(together, 2);
const second = run(alone, 1);
if (alone.length) console.log(`(${alone.length} timing-sensitive file(s) ran on their own after the others: ${alone.join(", ")}; exit ${second})`);
process.exit(first || second);
