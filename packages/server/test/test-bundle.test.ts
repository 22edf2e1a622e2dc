import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { bundledBins } from "./support/test-bundle.js";

// Most tests start the server and the agent from a bundle made once per content of the sources
// (scripts/test-bundle.mjs). These hold that bundle to what it claims: keyed by every file it is made from, and
// made from the sources that are there now.
const repoRoot = resolve(import.meta.dirname, "../../..");

interface BuildScript {
  targets: { pkg: string; entries: Record<string, string> }[];
  inputFiles(): string[];
  inputHash(): string;
  bundle(esbuild: unknown, t: unknown, outDir: string, info: unknown, opts: { metafile: boolean }): Promise<{ metafile: { inputs: Record<string, unknown> } }>;
}
const buildScript = async () => (await import(pathToFileURL(join(repoRoot, "scripts/build.mjs")).href)) as BuildScript;

test("every file of ours that the bundles are made from is one the bundles' key hashes", async () => {
  const b = await buildScript();
  const hashed = new Set(b.inputFiles().map((f) => relative(repoRoot, f)));
  const esbuild = await import("esbuild");
  const out = mkdtempSync(join(tmpdir(), "ukey-bundle-inputs-"));
  try {
    let ours = 0;
    for (const t of b.targets) {
      const r = await b.bundle(esbuild, t, join(out, t.pkg), {}, { metafile: true });
      // esbuild names inputs relative to its working directory (the test runner's: the repository's root).
      // Names in <angle brackets> are esbuild's own (the define of the build info), not files.
      for (const input of Object.keys(r.metafile.inputs).filter((i) => !i.startsWith("<")).map((i) => relative(repoRoot, resolve(i)))) {
        if (input.includes("node_modules/")) continue;
        ours += 1;
        assert.ok(hashed.has(input), `${input} goes into the ${t.pkg} bundle but not into its key (scripts/build.mjs inputFiles)`);
      }
    }
    assert.ok(ours > 100, `only ${ours} of our files went into the bundles`);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("the bundles tests start are the ones made for the sources here now", async () => {
  const { inputHash } = await buildScript();
  const bins = bundledBins();
  for (const bin of [bins.server, bins.agent]) {
    const info = JSON.parse(readFileSync(join(bin, "../build-info.json"), "utf8")) as { testKey: string; inputHash: string };
    assert.equal(info.testKey, bins.key, bin);
    assert.ok(bin.includes(`/dist-test-${bins.key}/`), bin);
  }
  // The key is the sources' hash with the bundling script's: made again, from the files as they are, it is the same.
  const { createHash } = await import("node:crypto");
  const key = createHash("sha256").update(inputHash()).update(readFileSync(join(repoRoot, "scripts/test-bundle.mjs"))).digest("hex").slice(0, 24);
  assert.equal(bins.key, key);
});
