import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, symlinkSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";

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
 * Lays out in `into` (a new or empty directory of the caller's) what an operator installs: the root and workspace
 * package.json files and the lockfile, their production dependencies (`npm ci --omit=dev`: no tsx, no TypeScript, no
 * esbuild) and this checkout's build artefacts (packages/{server,agent}/{bin,dist}, packages/web/dist).
 *
 * The dependencies come from scripts/ensure-production-modules.mjs: installed once per set of manifests (and Node
 * version) in buildCacheDir()/production, under a lock, outside the checkout, and never changed after. `into` gets a
 * link to that node_modules (`modules: "link"`, the default) or a copy of it (`"copy"`, for a root that cannot see
 * the cache, such as a chroot); the artefacts are always this checkout's own, so two checkouts or two test files
 * at once never run each other's build.
 * @returns `into`
 * @throws when npm ci fails (its output in the message).
 */
export function productionInstall(into: string, opts: { modules?: "link" | "copy" } = {}): string {
  const r = spawnSync(process.execPath, ["scripts/ensure-production-modules.mjs"], { cwd: repoRoot, encoding: "utf8", timeout: 1_200_000 });
  if (r.status !== 0) throw new Error(`scripts/ensure-production-modules.mjs failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  const modules = r.stdout.trim().split("\n").pop()!;
  for (const m of ["package.json", "package-lock.json", ...workspaces.map((w) => `packages/${w}/package.json`)]) {
    mkdirSync(dirname(join(into, m)), { recursive: true });
    cpSync(join(modules, m), join(into, m));
  }
  if (opts.modules === "copy") {
    // npm's own links inside node_modules (workspaces, .bin) are relative: kept as they are, they hold in the copy too.
    cpSync(join(modules, "node_modules"), join(into, "node_modules"), { recursive: true, verbatimSymlinks: true });
  } else {
    symlinkSync(join(modules, "node_modules"), join(into, "node_modules"));
  }
  for (const a of ["packages/server/bin", "packages/server/dist", "packages/agent/bin", "packages/agent/dist", "packages/web/dist"]) {
    cpSync(join(repoRoot, a), join(into, a), { recursive: true });
  }
  return into;
}
