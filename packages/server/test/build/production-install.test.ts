import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { tempDir } from "../support/fixtures.js";
import { buildBundles, productionInstall, repoRoot } from "../support/production-install.js";

// Issue 14, part 1: the server and the agent run from their build with only
// the production dependencies (`npm ci --omit=dev`): no tsx, no TypeScript.

test("a production install (npm ci --omit=dev plus the build) runs ukey-server start and ukey", { timeout: 900_000 }, async (ctx) => {
  buildBundles();
  const t = tempDir();
  ctx.after(() => t.cleanup());
  const app = productionInstall(t.path("app"));
  // The point of the test: the development dependencies really are absent.
  for (const dev of ["tsx", "typescript", "esbuild", "vite"]) assert.equal(existsSync(join(app, "node_modules", dev)), false, `${dev} must not be installed`);
  assert.ok(existsSync(join(app, "node_modules/fastify")), "production dependencies are installed");
  const tsx = spawnSync(process.execPath, ["--input-type=module", "-e", "await import('tsx/esm/api')"], { cwd: app, encoding: "utf8" });
  assert.notEqual(tsx.status, 0, "tsx must not be resolvable from the installation");

  const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LANG: "en_US.UTF-8" };
  const ukey = (...args: string[]) => spawnSync(process.execPath, [join(app, "packages/agent/bin/ukey.js"), ...args], { cwd: app, env, encoding: "utf8" });

  const version = ukey("--version");
  assert.equal(version.status, 0, version.stderr);
  const built = JSON.parse(readFileSync(join(repoRoot, "packages/agent/dist/build-info.json"), "utf8")) as { version: string; build: string };
  assert.equal(version.stdout.trim(), `ukey ${built.version} (build ${built.build}, ${process.platform}-${process.arch}, bundle)`);
  const versionJson = JSON.parse(ukey("--version", "--json").stdout) as Record<string, string>;
  assert.deepEqual(versionJson, { version: built.version, build: built.build, platform: `${process.platform}-${process.arch}`, kind: "bundle" });

  const explain = ukey("explain", "0116", "--lang", "en");
  assert.equal(explain.status, 0, explain.stderr);
  assert.match(explain.stdout, /^0116: /m);
  const unknown = ukey("frobnicate");
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /CLI_USAGE/);

  const pass = t.write("ca-passphrase", "correct horse battery staple\n");
  const serverEnv = { ...env, UKEY_CA_PASSPHRASE_FILE: pass };
  const serverBin = join(app, "packages/server/bin/ukey-server.js");
  const init = spawnSync(process.execPath, [serverBin, "init", "--data-dir", t.path("data"), "--json"], { cwd: app, env: serverEnv, encoding: "utf8" });
  assert.equal(init.status, 0, init.stderr);
  const child = spawn(process.execPath, [serverBin, "start", "--data-dir", t.path("data"), "--port", "0", "--json"], { cwd: app, env: serverEnv, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += String(d); });
  try {
    const port = await new Promise<number>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`no listening line: ${stderr}`)), 60_000);
      createInterface({ input: child.stdout }).on("line", (l) => {
        try {
          const j = JSON.parse(l) as { event?: string; http?: number };
          if (j.event === "listening" && j.http) { clearTimeout(timer); ok(j.http); }
        } catch { /* a log line */ }
      });
      child.once("exit", (c) => { clearTimeout(timer); fail(new Error(`server exited ${c}: ${stderr}`)); });
    });
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 200);
    // The portal is served from the build as well.
    const portal = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(portal.status, 200);
    assert.match(await portal.text(), /<html/i);
  } finally {
    await new Promise<void>((r) => { if (child.exitCode !== null) return r(); child.once("exit", () => r()); child.kill("SIGTERM"); });
  }
  assert.doesNotMatch(stderr, /tsx|ERR_MODULE_NOT_FOUND/);
});

test("an install without tsx and without a build says how to make one", () => {
  const t = tempDir();
  try {
    // The bin of an install whose dist was never built: a clear sentence, exit 1, not a stack trace.
    cpSync(join(repoRoot, "packages/agent/bin"), t.path("packages/agent/bin"), { recursive: true });
    const r = spawnSync(process.execPath, [t.path("packages/agent/bin/ukey.js"), "--version"], { cwd: t.dir, encoding: "utf8", env: { PATH: process.env.PATH ?? "" } });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no build \(packages\/agent\/dist\)/);
  } finally {
    t.cleanup();
  }
});
