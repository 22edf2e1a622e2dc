import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";

// Replaced by scripts/build.mjs (esbuild define) in a built bundle; undefined when running the sources. The
// executable's bundle (scripts/agent-bundle.mjs) has no build: it is cached by its sources alone, and the build id is
// stamped beside it (build-info.json next to the executable, written by scripts/build-agent-*.mjs).
declare const __UKEY_BUILD_INFO__: { version: string; build?: string } | undefined;

/** What `ukey --version` prints and the local API's /v1/hello reports. */
export interface BuildInfo {
  /** The agent package's version, e.g. "0.1.0". */
  version: string;
  /** The build id (git describe of the built commit, or UKEY_BUILD_ID); "source" when running the TypeScript sources. */
  build: string;
  /** Operating system and processor, e.g. "linux-x64", "win32-x64". */
  platform: string;
  /** "bundle" (scripts/build.mjs), "executable" (a self-contained program) or "source". */
  kind: "bundle" | "executable" | "source";
}

function isExecutable(): boolean {
  try {
    // node:sea exists from Node 20.12; a normal node process answers false.
    const sea = process.getBuiltinModule?.("node:sea") as { isSea(): boolean } | undefined;
    return sea?.isSea() ?? false;
  } catch {
    return false;
  }
}

/** The build id stamped beside the executable (its build-info.json); "unknown" when that file is missing or unreadable. */
function stampedBuild(): string {
  try {
    const stamp = JSON.parse(readFileSync(join(dirname(process.execPath), "build-info.json"), "utf8")) as { build?: unknown };
    if (typeof stamp.build === "string" && stamp.build !== "") return stamp.build;
  } catch { /* unknown */ }
  return "unknown";
}

let cached: BuildInfo | undefined;

/** The running agent's version, build and platform. Never throws (an unreadable package.json gives version "0.0.0"). */
export function buildInfo(): BuildInfo {
  if (cached) return cached;
  const platform = `${process.platform}-${process.arch}`;
  if (typeof __UKEY_BUILD_INFO__ !== "undefined") {
    cached = { version: __UKEY_BUILD_INFO__.version, build: __UKEY_BUILD_INFO__.build ?? stampedBuild(), platform, kind: isExecutable() ? "executable" : "bundle" };
  } else {
    let version = "0.0.0";
    try {
      version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
    } catch { /* keep 0.0.0 */ }
    cached = { version, build: "source", platform, kind: "source" };
  }
  return Object.freeze(cached);
}
