import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

/** Paths of the bundled programs that tests start (scripts/test-bundle.mjs). */
export interface TestBundles {
  /** `ukey-server`'s bundle (packages/server/dist-test-KEY/ukey-server.mjs). */
  server: string;
  /** `ukey`'s bundle (packages/agent/dist-test-KEY/ukey.mjs). */
  agent: string;
  /** The content key the bundles were made for. */
  key: string;
}

const repoRoot = resolve(import.meta.dirname, "../../../..");
let bundles: TestBundles | undefined;

/**
 * The server and agent bundles for the current sources: made (or taken from the build cache) by
 * scripts/test-bundle.mjs when the sources changed, so a test never starts a stale bundle. Started by
 * hand on one test file, this builds it as well. Memoised per process.
 * @throws when the bundle cannot be made (esbuild missing, or a source that does not compile): the test file fails
 */
export function bundledBins(): TestBundles {
  if (bundles) return bundles;
  const r = spawnSync(process.execPath, [resolve(repoRoot, "scripts/test-bundle.mjs")], { cwd: repoRoot, encoding: "utf8", timeout: 300_000 });
  if (r.status !== 0) throw new Error(`scripts/test-bundle.mjs failed (${r.status ?? r.signal}): ${r.error?.message ?? ""}${r.stderr}`);
  if (r.stderr) process.stderr.write(r.stderr);
  bundles = JSON.parse(r.stdout.trim().split("\n").pop()!) as TestBundles;
  return bundles;
}

/**
 * What tests start: bundledBins(), or with UKEY_TEST_BINS=source the bins that run the sources through tsx
 * (to compare the two, or to debug).
 * @throws as bundledBins()
 */
export function testBundles(): TestBundles {
  if (process.env.UKEY_TEST_BINS === "source") {
    return { server: resolve(repoRoot, "packages/server/bin/ukey-server.js"), agent: resolve(repoRoot, "packages/agent/bin/ukey.js"), key: "source" };
  }
  return bundledBins();
}
