// The production dependencies as an operator installs them: the root and workspace package.json files and the
// lockfile, installed with `npm ci --omit=dev` (no tsx, no TypeScript, no esbuild), in a folder of their own outside
// the checkout (so nothing resolves from the checkout's own node_modules).
//
// Cached by content: ${UKEY_BUILD_CACHE:-~/.cache/ukey-renew}/production/<hash of the manifests, the lockfile and
// this Node's version>, made again only when they change (the first time compiles better-sqlite3 and pkcs11js: a
// minute or two). One install per cache at a time (scripts/build-lock.mjs): a second caller waits for the first and
// then takes what it made, instead of running the same npm ci beside it. The folder is never changed once made:
// callers lay their own build beside a link to its node_modules (packages/server/test/support/production-install.ts).
//
// Usage: node scripts/ensure-production-modules.mjs
// Prints one line: the folder (holding node_modules and the manifests). Exit 1 when npm ci fails (its output on stderr).
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { runUnderLock } from "./build-lock.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const workspaces = ["policy", "ca", "store", "server", "agent", "web"];
// The files npm ci reads, relative to the repository's root.
const manifests = ["package.json", "package-lock.json", ...workspaces.map((w) => `packages/${w}/package.json`)];

const h = createHash("sha256");
for (const m of manifests) h.update(m).update("\0").update(readFileSync(join(root, m))).update("\0");
h.update(process.version);
const cacheRoot = join(process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew"), "production");
const dir = join(cacheRoot, h.digest("hex").slice(0, 16));
if (!existsSync(join(dir, ".installed"))) {
  runUnderLock(join(cacheRoot, "install.lock"), fileURLToPath(import.meta.url));
  // Under the lock: the caller before us may have made it meanwhile.
  if (!existsSync(join(dir, ".installed"))) {
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    for (const m of manifests) {
      mkdirSync(join(tmp, m, ".."), { recursive: true });
      cpSync(join(root, m), join(tmp, m));
    }
    const r = spawnSync("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: tmp, encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) {
      rmSync(tmp, { recursive: true, force: true });
      process.stderr.write(`npm ci --omit=dev failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}\n`);
      process.exit(1);
    }
    writeFileSync(join(tmp, ".installed"), new Date().toISOString());
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
}
process.stdout.write(`${dir}\n`);
