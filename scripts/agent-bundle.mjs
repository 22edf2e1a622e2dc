// The agent as one CommonJS bundle for a Node single-executable application
// (used by scripts/build-agent-installers.mjs for Linux and
// scripts/build-agent-windows.mjs for Windows).
//
// The one native part is koffi's FFI binary (koffi.node), which the agent's
// PKCS#11 and SKF bindings use. koffi's npm package carries it prebuilt for
// every platform; the build copies the target's copy next to the executable
// and the bundle loads it from there (`koffiAddon`).
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Bundles the agent into work/ukey.cjs and its SEA blob into work/ukey.blob.
 *
 * `codeCache`: the blob carries V8's code cache of the bundle, made by this Node. The executable then starts from
 * the compiled top level instead of parsing the 2.7 MB bundle, and that parse is what leaves about 17 MB of freed
 * but unreturned memory in glibc's heap for as long as the agent runs (docs/agent-install.md, "Memory"). The cache
 * belongs to this Node's platform and architecture: only for an executable of the platform the build runs on.
 */
export async function bundleAgent(work, info, { codeCache = false } = {}) {
  const esbuild = await import("esbuild");
  const addon = "const { createRequire } = require('node:module'); const { join, dirname } = require('node:path');"
    + "module.exports = createRequire(process.execPath)(join(dirname(process.execPath), 'koffi.node'));";
  await esbuild.build({
    entryPoints: [join(root, "packages/agent/src/sea-entry.ts")],
    outfile: join(work, "ukey.cjs"),
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
    define: {
      __UKEY_BUILD_INFO__: JSON.stringify({ version: info.version, build: info.build }),
      "import.meta.url": "__ukey_import_meta_url",
    },
    banner: { js: "const __ukey_import_meta_url = require('node:url').pathToFileURL(process.execPath).href;" },
    plugins: [{
      name: "native-addon",
      setup(b) {
        // koffi requires ./build/koffi/<platform>_<arch>/koffi.node: each of them is the copy beside the executable.
        b.onResolve({ filter: /koffi\.node$/ }, () => ({ path: "koffi-addon", namespace: "ukey-native" }));
        b.onLoad({ filter: /.*/, namespace: "ukey-native" }, () => ({ contents: addon, loader: "js" }));
      },
    }],
  });
  writeFileSync(join(work, "sea-config.json"), JSON.stringify({
    main: join(work, "ukey.cjs"), output: join(work, "ukey.blob"), disableExperimentalSEAWarning: true, useCodeCache: codeCache, useSnapshot: false,
  }));
  // The blob's format belongs to the Node version, not the platform: without code cache or snapshot, this Node's
  // blob fits a base binary of the same version for another platform.
  execFileSync(process.execPath, ["--experimental-sea-config", join(work, "sea-config.json")], { stdio: "pipe" });
}

/** Injects work/ukey.blob into the executable at `exe` (ELF or PE) with postject. */
export function injectBlob(require, work, exe) {
  execFileSync(process.execPath, [require.resolve("postject/dist/cli.js"), exe, "NODE_SEA_BLOB", join(work, "ukey.blob"),
    "--sentinel-fuse", "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2"], { stdio: "pipe" });
}

/** koffi's prebuilt FFI binary for `triplet` (linux_x64, win32_x64 ...), which the build copies beside the executable as koffi.node. */
export function koffiAddon(require, triplet) {
  return join(dirname(require.resolve("koffi/package.json")), "build/koffi", triplet, "koffi.node");
}
