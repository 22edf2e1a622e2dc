// Production build: the server and the agent bundled by esbuild into plain
// JavaScript (packages/server/dist, packages/agent/dist), so they run on
// Node.js 20 with only the production dependencies (`npm ci --omit=dev`):
// no tsx, no TypeScript at run time.
//
// Our own workspace packages (@ukey/*) are bundled in; every third-party
// package stays an import resolved from node_modules, so the native ones
// (better-sqlite3, pkcs11js) and packages that read their own files keep
// working unchanged.
//
// The build is cached by content: dist/build-info.json records the hash of
// every input (sources, package manifests, lockfile, this script) and the
// build id; a second run with the same inputs and build id does nothing. The
// hash is of the sources alone (not the build id), so what is keyed on it (the
// agent's executables and installers, scripts/build-agent-*.mjs) is not made
// again for a commit that changes no source: those get the build id stamped
// beside them instead (a build-info.json the executable reads).
//
// Usage: node scripts/build.mjs [--force] [--quiet]
// The build id is UKEY_BUILD_ID when set, else `git describe --always --dirty`,
// else "unknown".
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The programs this build makes: entry (relative to root) → output file. */
export const targets = [
  { pkg: "server", entries: { "ukey-server": "packages/server/src/cli-entry.ts", "signature-worker": "packages/server/src/signature-worker-body.ts" } },
  { pkg: "agent", entries: { ukey: "packages/agent/src/cli-entry.ts" } },
];

function walk(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    if (name === "node_modules" || name === "dist" || name === "test") continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** Every file that goes into the bundles (absolute paths): what inputHash() hashes. */
export function inputFiles() {
  const files = ["package.json", "package-lock.json", "scripts/build.mjs"].map((f) => join(root, f));
  for (const p of ["policy", "ca", "store", "server", "agent"]) {
    files.push(join(root, "packages", p, "package.json"));
    walk(join(root, "packages", p, "src"), files);
  }
  return files;
}

/** Hash of every file that goes into the bundles (not the build id, which is stamped separately). */
export function inputHash() {
  const h = createHash("sha256");
  for (const f of inputFiles()) {
    h.update(relative(root, f));
    h.update("\0");
    h.update(readFileSync(f));
    h.update("\0");
  }
  return h.digest("hex");
}

function gitBuildId() {
  try {
    return execFileSync("git", ["describe", "--always", "--dirty", "--abbrev=12"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

/**
 * Bundles one target's entries into outDir (which must exist), with info stamped in as __UKEY_BUILD_INFO__.
 * Shared by the production build and the test bundles (scripts/test-bundle.mjs), so both are made the same way.
 * @param {typeof import("esbuild")} esbuild
 * @param {{ entries: Record<string, string> }} t a target of `targets`
 * @param {string} outDir
 * @param {Record<string, unknown>} info
 * @param {{ hashbang?: boolean, metafile?: boolean }} [opts] hashbang: start every output file with `#!/usr/bin/env node`;
 *   metafile: the result's metafile lists every input
 * @returns esbuild's result
 * @throws when esbuild reports an error
 */
export async function bundle(esbuild, t, outDir, info, { hashbang = false, metafile = false } = {}) {
  const requireShim = 'import { createRequire as __ukeyCreateRequire } from "node:module"; const require = __ukeyCreateRequire(import.meta.url);';
  return esbuild.build({
    metafile,
    entryPoints: Object.fromEntries(Object.entries(t.entries).map(([n, e]) => [n, join(root, e)])),
    outdir: outDir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    // Modules loaded by import() go into chunks of their own, so what a command does not use is not loaded.
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    sourcemap: "linked",
    logLevel: "warning",
    define: { __UKEY_BUILD_INFO__: JSON.stringify(info) },
    // A CommonJS module of ours that requires a package on first use (koffi-loader.cts) needs a require in ESM output.
    banner: { js: hashbang ? `#!/usr/bin/env node\n${requireShim}` : requireShim },
    plugins: [{
      name: "third-party-external",
      setup(b) {
        // Bare specifiers other than our workspace packages stay imports.
        b.onResolve({ filter: /^[^./]/ }, (a) => (a.path.startsWith("@ukey/") || a.path.startsWith("node:") ? undefined : { path: a.path, external: true }));
      },
    }],
  });
}

/**
 * Builds what is out of date; returns { built: string[], cached: string[], buildId }.
 * @throws when esbuild is not installed (it is a development dependency) or a bundle fails.
 */
export async function build({ force = false, quiet = false } = {}) {
  const buildId = process.env.UKEY_BUILD_ID || gitBuildId();
  const hash = inputHash();
  const version = JSON.parse(readFileSync(join(root, "packages/agent/package.json"), "utf8")).version;
  const log = (s) => { if (!quiet) process.stderr.write(`${s}\n`); };
  const result = { built: [], cached: [], buildId, hash };
  let esbuild;
  for (const t of targets) {
    const dist = join(root, "packages", t.pkg, "dist");
    const infoPath = join(dist, "build-info.json");
    if (!force && existsSync(infoPath)) {
      try {
        const info = JSON.parse(readFileSync(infoPath, "utf8"));
        if (info.inputHash === hash && info.build === buildId && Object.keys(t.entries).every((n) => existsSync(join(dist, `${n}.mjs`)))) {
          result.cached.push(t.pkg);
          log(`== build ${t.pkg}: up to date (${hash.slice(0, 12)})`);
          continue;
        }
      } catch { /* rebuild */ }
    }
    esbuild ??= await import("esbuild");
    // Built beside and moved into place, so a program started meanwhile finds the old build or the new one whole.
    const out = `${dist}.tmp-${process.pid}`;
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    const info = { version, build: buildId, inputHash: hash };
    await bundle(esbuild, t, out, info);
    writeFileSync(join(out, "build-info.json"), `${JSON.stringify(info, null, 2)}\n`);
    rmSync(dist, { recursive: true, force: true });
    renameSync(out, dist);
    result.built.push(t.pkg);
    log(`== build ${t.pkg}: packages/${t.pkg}/dist (${buildId}, ${hash.slice(0, 12)})`);
  }
  return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await build({ force: process.argv.includes("--force"), quiet: process.argv.includes("--quiet") });
}
