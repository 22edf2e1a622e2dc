import type * as Koffi from "koffi";

// A CommonJS module, so that koffi (and its native binary) is required on first use only, in the sources and in the
// bundles alike: esbuild bundles this require() where it stands, and an agent that only serves PKCS#12 files never
// maps the FFI. A missing binary then fails the one PKCS#11 or SKF call with a catalogue code, not the agent's start.
function loadKoffi(): typeof Koffi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the point of this module: required on first use
  return require("koffi") as typeof Koffi;
}
export = loadKoffi;
