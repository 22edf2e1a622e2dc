// One installer build at a time per cache: a second build started meanwhile (two test files at once, or two
// operators' shells) waits for the first and then finds what it made in the cache, instead of making the same
// executable again beside it. The lock is flock(1)'s (util-linux), which the kernel releases when its holder exits,
// however it exits: no stale lock to clean up.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Runs the calling script again under `flock lockFile` and exits with its status, unless this process already is that
 * run (then returns, and the script carries on holding the lock).
 * @param {string} lockFile the lock's file (its directory is made when missing)
 * @param {string} script the calling script's path (fileURLToPath(import.meta.url))
 */
export function runUnderLock(lockFile, script) {
  if (process.env.UKEY_BUILD_LOCK === lockFile) return;
  mkdirSync(dirname(lockFile), { recursive: true });
  const r = spawnSync("flock", [lockFile, process.execPath, script, ...process.argv.slice(2)], {
    stdio: "inherit", env: { ...process.env, UKEY_BUILD_LOCK: lockFile },
  });
  if (r.error) {
    process.stderr.write(`flock (util-linux) could not be run: ${r.error.message}\n`);
    process.exit(1);
  }
  process.exit(r.status ?? 1);
}
