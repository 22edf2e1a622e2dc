import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { runUkeyServer } from "../../../server/test/support/fixtures.js";

// The institution whose files the Linux installer tests stamp into the .deb
// (scripts/build-agent-installers.mjs). The .deb is keyed on those files, and
// making it costs about a minute of CPU (xz of a 100 MB executable), so the
// tests that need a real .deb share one institution, kept between runs: its
// distribution key's seed and its first published files, in the build cache.
// Every test that uses it then has the same stamped files, and the .deb is
// built once per build id, whichever of them runs first.

const repo = resolve(import.meta.dirname, "../../../..");

/** The kept institution's server port: fixed, because the configuration stamped into the .deb names it. */
export const keptInstitutionPort = 28417;
/** Its server, as the stamped configuration names it. */
export const keptInstitutionUrl = `http://127.0.0.1:${keptInstitutionPort}`;
/** The portal origin its configuration allows besides its own server (a portal on another host). */
export const keptPortalOrigin = "https://www.bank.example";

/**
 * The kept institution's directory: made again when what signs and checks its files changes, or its settings do.
 * @param cfg the data directory's configuration after keptInstitution() set it (its institution's name is stamped too)
 */
function keptDir(cfg: { institution?: { name?: string } }): string {
  const h = createHash("sha256");
  for (const f of ["policy/src/signed-document.ts", "server/src/distribution/distribution-publisher.ts", "server/src/distribution/distribution-key.ts"]) {
    h.update(readFileSync(join(repo, "packages", f))).update("\0");
  }
  h.update(JSON.stringify({ name: cfg.institution?.name ?? null, url: keptInstitutionUrl, origins: [keptPortalOrigin] }));
  return join(process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew"), "kept-institution", h.digest("hex").slice(0, 16));
}

/**
 * Makes an initialised data directory the kept institution and publishes its downloads once: its publicUrl becomes
 * keptInstitutionUrl, its portal origins [keptPortalOrigin], and its distribution key the kept one (made, and kept, by
 * the first caller; two callers at once agree on one, the rename into place deciding). The server must be stopped.
 * @returns the kept downloads folder (institution-key.pem, agent-config.json) to build the installer with; the data
 *   directory's own downloads/ holds a newer publication signed with the same key
 * @throws AssertionError when publishing fails or the data directory's key is not the kept one
 */
export function keptInstitution(dataDir: string, env: Record<string, string>): string {
  const cfgFile = join(dataDir, "config.json");
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.publicUrl = keptInstitutionUrl;
  cfg.downloads = { ...cfg.downloads, portalOrigins: [keptPortalOrigin] };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  const kept = keptDir(cfg);
  const seed = join(dataDir, "secrets/distribution-signing.key");
  const publish = () => {
    const r = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  };
  if (!existsSync(join(kept, "downloads/agent-config.json"))) {
    // A new institution (the key made by publishing), offered as the kept one; a caller that got there first wins.
    publish();
    const work = `${kept}.tmp-${process.pid}`;
    rmSync(work, { recursive: true, force: true });
    mkdirSync(join(work, "downloads"), { recursive: true });
    copyFileSync(seed, join(work, "distribution-signing.key"));
    for (const f of ["institution-key.pem", "agent-config.json"]) copyFileSync(join(dataDir, "downloads", f), join(work, "downloads", f));
    try {
      renameSync(work, kept);
    } catch (e) {
      rmSync(work, { recursive: true, force: true });
      if (!["ENOTEMPTY", "EEXIST"].includes((e as NodeJS.ErrnoException).code ?? "")) throw e;
    }
  }
  mkdirSync(dirname(seed), { recursive: true });
  copyFileSync(join(kept, "distribution-signing.key"), seed);
  chmodSync(seed, 0o600);
  publish();
  assert.deepEqual(readFileSync(join(dataDir, "downloads/institution-key.pem")), readFileSync(join(kept, "downloads/institution-key.pem")), "the kept institution's key");
  return join(kept, "downloads");
}
