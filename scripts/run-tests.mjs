// Runs every test file of the repository with node's own test runner.
// Usage: node scripts/run-tests.mjs [path-substring ...]
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
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
// Beside the spec output, each run writes its files' times (scripts/test-file-times.mjs), printed at the end.
const timesDir = mkdtempSync(join(tmpdir(), "ukey-test-times-"));
const run = (list, concurrency, name) => (list.length === 0 ? 0 : spawnSync(process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-timeout=600000",
    "--test-reporter=spec", "--test-reporter-destination=stdout",
    "--test-reporter=./scripts/test-file-times.mjs", `--test-reporter-destination=${join(timesDir, name)}`, ...list],
  { stdio: "inherit" }).status ?? 1);
const started = Date.now();
const first = run(together, 2, "together");
const second = run(alone, 1, "alone");
if (alone.length) console.log(`(${alone.length} timing-sensitive file(s) ran on their own after the others: ${alone.join(", ")}; exit ${second})`);
const times = ["together", "alone"].flatMap((n) => (existsSync(join(timesDir, n)) ? readFileSync(join(timesDir, n), "utf8").split("\n").filter(Boolean) : []));
console.log(`\n== the slowest test files (sum of their top-level tests; ${files.length} files in ${((Date.now() - started) / 1000).toFixed(0)} s wall at concurrency 2)`);
for (const line of times.sort((a, b) => parseFloat(b) - parseFloat(a)).slice(0, 15)) console.log(line);
rmSync(timesDir, { recursive: true, force: true });
process.exit(first || second);
