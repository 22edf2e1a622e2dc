// Runs every test file of the repository with node's own test runner.
// Usage: node scripts/run-tests.mjs [path-substring ...]
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
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
// Files start longest first, so that no long file starts last beside an idle slot and stretches the wall time:
// by each file's wall time in the last run that ran it (kept in the build cache), else by this list of files known to
// be slow (seconds each, roughly, from full runs), else as a file of typical length.
const timesFile = join(process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew"), "test-file-times.json");
const KNOWN_SLOW = {
  "packages/agent/test/installers/clean-root-install.test.ts": 200,
  "packages/server/test/build/production-install.test.ts": 145,
  "packages/server/test/cli-running-server.test.ts": 125,
  "packages/server/test/cli.test.ts": 105,
  "packages/web/test/portal-agent.test.ts": 100,
  "packages/agent/test/installers/windows-msi.test.ts": 90,
  "packages/agent/test/installers/linux-deb.test.ts": 90,
  "packages/server/test/cli-operations.test.ts": 65,
  "packages/web/test/portal-journeys.test.ts": 75,
  "packages/agent/test/renew-e2e.test.ts": 60,
};
const TYPICAL = 15;
let lastTimes = {};
try {
  lastTimes = JSON.parse(readFileSync(timesFile, "utf8"));
} catch { /* no earlier run here */ }
const expected = (f) => lastTimes[f] ?? KNOWN_SLOW[f] ?? TYPICAL;
const ordered = [...files].sort((a, b) => expected(b) - expected(a) || a.localeCompare(b));
// A test that hangs fails after 10 minutes with its name, rather than holding the run until CI's limit.
// Beside the spec output, each run writes its files' times (scripts/test-file-times.mjs), printed at the end.
const timesDir = mkdtempSync(join(tmpdir(), "ukey-test-times-"));
const run = (list, concurrency, name) => (list.length === 0 ? 0 : spawnSync(process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, "--test-timeout=600000",
    "--test-reporter=spec", "--test-reporter-destination=stdout",
    "--test-reporter=./scripts/test-file-times.mjs", `--test-reporter-destination=${join(timesDir, name)}`, ...list],
  { stdio: "inherit" }).status ?? 1);
const started = Date.now();
const status = run(ordered, 2, "all");
const times = existsSync(join(timesDir, "all")) ? readFileSync(join(timesDir, "all"), "utf8").split("\n").filter(Boolean) : [];
// Each file's wall time, for the order of the next run (a file that did not run keeps its earlier time). Merged into
// the file as it is now, not as this run read it: another run may have written it meanwhile.
const measured = {};
for (const line of times) {
  const m = /\s([\d.]+) s wall\s+(\S.*)$/.exec(line);
  if (m && parseFloat(m[1]) > 0) measured[m[2]] = parseFloat(m[1]);
}
try {
  try {
    lastTimes = JSON.parse(readFileSync(timesFile, "utf8"));
  } catch { lastTimes = {}; }
  Object.assign(lastTimes, measured);
  mkdirSync(dirname(timesFile), { recursive: true });
  writeFileSync(`${timesFile}.tmp-${process.pid}`, `${JSON.stringify(lastTimes, null, 1)}\n`);
  renameSync(`${timesFile}.tmp-${process.pid}`, timesFile);
} catch (e) {
  console.error(`(could not keep the files' times in ${timesFile}: ${e.message})`);
}
console.log(`\n== the slowest test files (sum of their top-level tests, and the file's wall time; ${files.length} files in ${((Date.now() - started) / 1000).toFixed(0)} s wall at concurrency 2)`);
for (const line of times.sort((a, b) => parseFloat(b) - parseFloat(a)).slice(0, 15)) console.log(line);
rmSync(timesDir, { recursive: true, force: true });
process.exit(status);
