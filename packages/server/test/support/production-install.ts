import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** The repository's root. */
export const repoRoot = resolve(import.meta.dirname, "../../../..");

const workspaces = ["policy", "ca", "store", "server", "agent", "web"];

/** Where slow builds are kept between runs: UKEY_BUILD_CACHE, default ~/.cache/ukey-renew. */
export function buildCacheDir(): string {
  return process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew");
}

/** Runs scripts/build.mjs (cached by content: a no-op when nothing changed). */
export function buildBundles(): void {
  execFileSync(process.execPath, ["scripts/build.mjs", "--quiet"], { cwd: repoRoot, stdio: "pipe" });
  execFileSync("bash", ["scripts/build-web.sh"], { cwd: repoRoot, stdio: "pipe" });
}

/**
 * A directory holding what an operator installs: the root and workspace
 * package.json files and the lockfile, installed with `npm ci --omit=dev`
 * (so no tsx, no TypeScript, no esbuild), plus the build artefacts
 * (packages/{server,agent}/{bin,dist}, packages/web/dist).
 *
 * The npm install is kept in buildCacheDir()/production/<hash of the
 * manifests and lockfile> (outside the checkout, so nothing resolves from
 * the checkout's own node_modules) and made again only when they change: the first
 * run compiles better-sqlite3 and pkcs11js (a minute or two), later runs copy
 * fresh artefacts only.
 * @throws when npm ci fails (its output in the message).
 */
export function productionInstall(): string {
  const manifests = ["package.json", "package-lock.json", ...workspaces.map((w) => `packages/${w}/package.json`)];
  const h = createHash("sha256");
  for (const m of manifests) h.update(m).update("\0").update(readFileSync(join(repoRoot, m))).update("\0");
  h.update(process.version);
  const cacheRoot = join(buildCacheDir(), "production");
  const dir = join(cacheRoot, h.digest("hex").slice(0, 16));
  if (!existsSync(join(dir, ".installed"))) {
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    for (const m of manifests) {
      mkdirSync(join(tmp, m, ".."), { recursive: true });
      cpSync(join(repoRoot, m), join(tmp, m));
    }
    const r = spawnSync("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: tmp, encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) throw new Error(`npm ci --omit=dev failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    writeFileSync(join(tmp, ".installed"), new Date().toISOString());
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  for (const a of ["packages/server/bin", "packages/server/dist", "packages/agent/bin", "packages/agent/dist", "packages/web/dist"]) {
    rmSync(join(dir, a), { recursive: true, force: true });
    cpSync(join(repoRoot, a), join(dir, a), { recursive: true });
  }
  return dir;
}
