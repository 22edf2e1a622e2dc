// The agent as one CommonJS bundle for a Node single-executable application
// (used by scripts/build-agent-installers.mjs for Linux and
// scripts/build-agent-windows.mjs for Windows).
//
// pkcs11: "beside" loads pkcs11js's compiled addon from pkcs11.node next to
// the executable (Linux: the addon was built for this Node's ABI, which is the
// executable's own). "absent" leaves PKCS#11 out of the build: pkcs11js has no
// prebuilt Windows binary and no compiler can build one here, so the agent
// refuses a PKCS#11 module with AGENT_PKCS11_NOT_IN_BUILD and uses PKCS#12
// files (docs/agent-install.md).
//
// koffi (the FFI of the SKF key store): "beside" loads koffi.node, the
// prebuilt binary of koffi's npm package for the target platform, from next
// to the executable; "absent" leaves it out (SKF libraries are then refused
// with SKF_LIBRARY_INVALID, saying the FFI is not in this build). koffi is
// imported lazily, so the executable starts without it either way.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Bundles the agent into work/ukey.cjs and its SEA blob into work/ukey.blob. */
export async function bundleAgent(work, info, { pkcs11, koffi = "absent" }) {
  const esbuild = await import("esbuild");
  const addon = pkcs11 === "beside"
    ? "const { createRequire } = require('node:module'); const { join, dirname } = require('node:path');"
      + "module.exports = createRequire(process.execPath)(join(dirname(process.execPath), 'pkcs11.node'));"
    // No addon: an object whose PKCS11 class cannot load a module (the agent checks the build first and says why).
    : "module.exports = { PKCS11: class { load() { throw new Error('PKCS#11 is not in this build of the agent'); } } };";
  const koffiShim = koffi === "beside"
    ? "const { createRequire } = require('node:module'); const { join, dirname } = require('node:path');"
      + "module.exports = createRequire(process.execPath)(join(dirname(process.execPath), 'koffi.node'));"
    : "throw new Error('the FFI (koffi) is not in this build of the agent');";
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
      __UKEY_BUILD_INFO__: JSON.stringify({ version: info.version, build: info.build, pkcs11: pkcs11 === "beside" }),
      "import.meta.url": "__ukey_import_meta_url",
    },
    banner: { js: "const __ukey_import_meta_url = require('node:url').pathToFileURL(process.execPath).href;" },
    plugins: [{
      name: "native-addon",
      setup(b) {
        // pkcs11js loads ./build/Release/pkcs11.node.
        b.onResolve({ filter: /pkcs11\.node$/ }, () => ({ path: "pkcs11-addon", namespace: "ukey-native" }));
        // koffi's own loader looks for its binary under node_modules, which the executable has not.
        b.onResolve({ filter: /^koffi$/ }, () => ({ path: "koffi-addon", namespace: "ukey-native" }));
        b.onLoad({ filter: /.*/, namespace: "ukey-native" }, (a) => ({ contents: a.path === "koffi-addon" ? koffiShim : addon, loader: "js" }));
      },
    }],
  });
  writeFileSync(join(work, "sea-config.json"), JSON.stringify({
    main: join(work, "ukey.cjs"), output: join(work, "ukey.blob"), disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false,
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
