// The server and the agent bundled for the tests: the same esbuild bundle as the production build
// (scripts/build.mjs), made once per content of its inputs, so a test file starts `ukey-server` and `ukey` in
// about half the CPU that a start from the TypeScript sources through tsx takes.
//
// Keyed by inputHash() of scripts/build.mjs (every file under packages/{policy,ca,store,server,agent}/src, their
// package.json files, the root package.json and lockfile, scripts/build.mjs), plus this script: an edited source
// gives a new key, so no test ever runs a stale bundle. Bundles are kept in UKEY_BUILD_CACHE (default
// ~/.cache/ukey-renew)/test-bundles/<key>, made under a lock (flock), and copied into the checkout as
// packages/server/dist-test-<key> and packages/agent/dist-test-<key>: beside dist/, at the same depth, so that what
// the programs find relative to their own file (packages/web/dist, package.json, the signature worker) is where the
// production bundle finds it, and so that their third-party imports resolve from this checkout's node_modules.
// A directory is never replaced: a program started from an older one keeps loading its chunks from it. Those
// superseded more than an hour ago are removed.
//
// Usage: node scripts/test-bundle.mjs   prints {"server": <ukey-server.mjs path>, "agent": <ukey.mjs path>, "key"}
// Test support (packages/server/test/support/test-bundle.ts) runs it.
import { createHash } from "node:crypto";
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundle, inputHash, targets } from "./build.mjs";
import { runUnderLock } from "./build-lock.mjs";

const script = fileURLToPath(import.meta.url);
const root = resolve(dirname(script), "..");
const cache = join(process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew"), "test-bundles");
/** Bundles kept in the cache, newest first; older ones are removed. */
const KEEP = 12;
/** A checkout's bundle directory is removed this long after a newer one replaced it (a program started from it may still run). */
const STALE_MS = 60 * 60 * 1000;

const key = createHash("sha256").update(inputHash()).update(readFileSync(script)).digest("hex").slice(0, 24);
const dirOf = (pkg) => join(root, "packages", pkg, `dist-test-${key}`);
const entryOf = (pkg) => join(dirOf(pkg), `${Object.keys(targets.find((t) => t.pkg === pkg).entries)[0]}.mjs`);
const stampOf = (dir) => {
  try {
    return JSON.parse(readFileSync(join(dir, "build-info.json"), "utf8")).testKey;
  } catch {
    return undefined;
  }
};
const inCheckout = () => targets.every((t) => stampOf(dirOf(t.pkg)) === key);
const answer = () => process.stdout.write(`${JSON.stringify({ server: entryOf("server"), agent: entryOf("agent"), key })}\n`);

if (inCheckout()) {
  answer();
  process.exit(0);
}
runUnderLock(join(cache, "build.lock"), script);
// From here on this process holds the lock: no other test-bundle run builds or copies meanwhile.
if (!inCheckout()) {
  const made = join(cache, key);
  if (!targets.every((t) => stampOf(join(made, t.pkg)) === key)) {
    const esbuild = await import("esbuild");
    const version = JSON.parse(readFileSync(join(root, "packages/agent/package.json"), "utf8")).version;
    const tmp = `${made}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    const started = Date.now();
    for (const t of targets) {
      const out = join(tmp, t.pkg);
      mkdirSync(out, { recursive: true });
      const info = { version, build: `test-${key.slice(0, 12)}`, inputHash: key };
      await bundle(esbuild, t, out, info, { hashbang: true });
      for (const n of Object.keys(t.entries)) chmodSync(join(out, `${n}.mjs`), 0o755);
      writeFileSync(join(out, "build-info.json"), `${JSON.stringify({ ...info, testKey: key }, null, 2)}\n`);
    }
    rmSync(made, { recursive: true, force: true });
    renameSync(tmp, made);
    process.stderr.write(`== test bundles built (${key.slice(0, 12)}, ${((Date.now() - started) / 1000).toFixed(1)} s): ${made}\n`);
    // The oldest bundles go; the one just made is the newest.
    const kept = readdirSync(cache).filter((n) => /^[0-9a-f]{24}$/.test(n))
      .map((n) => ({ n, t: statSync(join(cache, n)).mtimeMs })).sort((a, b) => b.t - a.t);
    for (const { n } of kept.slice(KEEP)) rmSync(join(cache, n), { recursive: true, force: true });
  }
  for (const t of targets) {
    const dest = dirOf(t.pkg);
    if (stampOf(dest) === key) continue;
    const tmp = join(root, "packages", t.pkg, `.dist-test-tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    cpSync(join(made, t.pkg), tmp, { recursive: true });
    rmSync(dest, { recursive: true, force: true });
    renameSync(tmp, dest);
    // Each older directory was superseded when the next newer one was made: gone an hour after that.
    const pkgDir = join(root, "packages", t.pkg);
    const dirs = readdirSync(pkgDir).filter((n) => /^dist-test-[0-9a-f]{24}$/.test(n))
      .map((n) => ({ n, t: statSync(join(pkgDir, n)).mtimeMs })).sort((a, b) => b.t - a.t);
    for (let i = 1; i < dirs.length; i++) {
      if (dirs[i].n !== `dist-test-${key}` && Date.now() - dirs[i - 1].t > STALE_MS) rmSync(join(pkgDir, dirs[i].n), { recursive: true, force: true });
    }
  }
}
answer();
