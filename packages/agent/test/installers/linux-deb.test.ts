import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { initialisedDataDir, runUkeyServer, tempDir, type TempDir } from "../../../server/test/support/fixtures.js";
import { keptInstitution, keptInstitutionUrl, keptPortalOrigin } from "../support/kept-institution.js";

// Issue 14, part 3: the agent as a self-contained Linux x64 executable (no
// Node.js on the holder's machine) in a .deb that carries the institution's
// key and configuration and starts the agent at login. The build is cached by
// content (scripts/build-agent-installers.mjs): the executable by its sources,
// the .deb by the build id and the institution's files. The institution is the
// kept one clean-root-install.test.ts installs (../support/kept-institution.ts),
// so the two share one .deb per build id.

const repo = resolve(import.meta.dirname, "../../../..");
const softhsm = "/usr/lib/softhsm/libsofthsm2.so";
let t: TempDir;
let dataDir: string;
/** The institution's files as the .deb was built with them (the data directory has published again since). */
let stampedDir: string;
let env: Record<string, string>;
let built: { executable: string; deb: string; debSize: number; debSha256: string; executableSize: number; build: string };
let root: string;

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  // The institution clean-root-install.test.ts installs too: one .deb per build id for both.
  stampedDir = keptInstitution(dataDir, env);
  const out = execFileSync(process.execPath, ["scripts/build-agent-installers.mjs", "--institution", stampedDir, "--out", t.path("out")], {
    cwd: repo, encoding: "utf8", timeout: 900_000, stdio: ["ignore", "pipe", "pipe"],
  });
  built = JSON.parse(out.trim().split("\n").pop()!);
  root = t.path("root");
  mkdirSync(root);
  execFileSync("dpkg", ["-x", built.deb, root]);
});

after(() => t?.cleanup());

test("the .deb holds the executable, its FFI binary (koffi.node), the institution's files, ukey on the PATH and the autostart entry", () => {
  const control = execFileSync("dpkg-deb", ["-f", built.deb, "Package", "Version", "Architecture"], { encoding: "utf8" });
  assert.match(control, /^Package: ukey-agent$/m);
  assert.match(control, /^Architecture: amd64$/m);
  const contents = execFileSync("dpkg-deb", ["--contents", built.deb], { encoding: "utf8" });
  for (const path of ["./usr/lib/ukey-agent/ukey", "./usr/lib/ukey-agent/koffi.node", "./usr/lib/ukey-agent/institution-key.pem",
    "./usr/lib/ukey-agent/agent-config.json", "./usr/lib/ukey-agent/build-info.json", "./etc/xdg/autostart/ukey-agent.desktop", "./usr/share/applications/ukey-doctor.desktop"]) {
    assert.match(contents, new RegExp(` ${path.replace(/\./g, "\\.")}( |$)`, "m"), path);
  }
  assert.match(contents, /^-rwxr-xr-x root\/root .* \.\/usr\/lib\/ukey-agent\/ukey$/m);
  assert.equal(readlinkSync(join(root, "usr/bin/ukey")), "../lib/ukey-agent/ukey");
  for (const f of ["institution-key.pem", "agent-config.json"]) {
    assert.deepEqual(readFileSync(join(root, "usr/lib/ukey-agent", f)), readFileSync(join(stampedDir, f)), f);
  }
  const autostart = readFileSync(join(root, "etc/xdg/autostart/ukey-agent.desktop"), "utf8");
  assert.match(autostart, /^Exec=\/usr\/lib\/ukey-agent\/ukey agent start$/m);
  assert.match(autostart, /^Name\[zh_CN\]=UKey 证书代理$/m);
  assert.equal(createHash("sha256").update(readFileSync(built.deb)).digest("hex"), built.debSha256);
  assert.equal(statSync(built.deb).size, built.debSize);
});

test("the installed executable runs with no Node.js: --version, explain 0116, doctor --json loading a PKCS#11 driver", () => {
  const exe = join(root, "usr/lib/ukey-agent/ukey");
  // No node on the PATH, no NODE_* settings: the program is its own runtime.
  const bare = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin".split(":").filter((d) => !statExists(join(d, "node"))).join(":") || "/nonexistent", HOME: t.path("home"), LANG: "en_US.UTF-8" };
  const run = (...args: string[]) => spawnSync(exe, args, { env: bare, encoding: "utf8" });
  const v = run("--version", "--json");
  assert.equal(v.status, 0, v.stderr);
  const info = JSON.parse(v.stdout) as { version: string; build: string; platform: string; kind: string };
  assert.deepEqual({ platform: info.platform, kind: info.kind }, { platform: "linux-x64", kind: "executable" });
  // The executable is cached by its sources alone; the build id it reports is the one stamped beside it for this build.
  const bundle = JSON.parse(readFileSync(join(repo, "packages/agent/dist/build-info.json"), "utf8")) as { version: string; build: string };
  assert.deepEqual({ version: info.version, build: info.build }, { version: bundle.version, build: bundle.build });
  assert.equal(built.build, bundle.build);
  assert.equal(run("--version").stdout.trim(), `ukey ${bundle.version} (build ${bundle.build}, linux-x64, executable)`);
  const explain = run("explain", "0116", "--lang", "en");
  assert.equal(explain.status, 0, explain.stderr);
  assert.match(explain.stdout, /^0116: /m);
  const doctor = run("doctor", "--json", "--module", softhsm);
  const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ id: string; ok: boolean; code?: string }> }).checks;
  assert.deepEqual(checks.find((c) => c.id === "module"), { id: "module", ok: true, zh: `已加载 ${softhsm}`, en: `Loaded ${softhsm}` });
  // A wrong driver gets its catalogue code from the executable too.
  const wrong = run("doctor", "--json", "--module", "/etc/hostname");
  const wrongChecks = (JSON.parse(wrong.stdout) as { checks: Array<{ id: string; ok: boolean; code?: string }> }).checks;
  assert.equal(wrongChecks.find((c) => c.id === "module")?.ok, false);
  assert.equal(wrongChecks.find((c) => c.id === "module")?.code, "HSM_MODULE_LOAD_FAILED");
  // Without its FFI binary beside it (a damaged installation) the executable says so and asks for a reinstall.
  const damaged = join(t.path("damaged"), "ukey");
  mkdirSync(dirname(damaged));
  copyFileSync(exe, damaged);
  chmodSync(damaged, 0o755);
  const noFfi = spawnSync(damaged, ["doctor", "--json", "--module", softhsm], { env: bare, encoding: "utf8" });
  const noFfiModule = (JSON.parse(noFfi.stdout) as { checks: Array<{ id: string; ok: boolean; code?: string }> }).checks.find((c) => c.id === "module");
  assert.deepEqual({ ok: noFfiModule?.ok, code: noFfiModule?.code }, { ok: false, code: "AGENT_FFI_MISSING" }, noFfi.stdout);
});

function statExists(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

test("started the way the autostart entry starts it, the agent serves the institution's server and portal with no flags", async () => {
  const autostart = readFileSync(join(root, "etc/xdg/autostart/ukey-agent.desktop"), "utf8");
  const exec = /^Exec=(.*)$/m.exec(autostart)![1]!.split(" ");
  const home = t.path("login-home");
  mkdirSync(home);
  // The installed root is where dpkg -x put it; the command line is the entry's, plus a free port and JSON events for the test.
  const child = spawn(join(root, exec[0]!), [...exec.slice(1), "--port", "0", "--json"], {
    env: { PATH: "/usr/bin:/bin", HOME: home, UKEY_AGENT_HOME: home }, stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += String(d); });
  try {
    const first = await new Promise<Record<string, unknown>>((ok, fail) => {
      createInterface({ input: child.stdout }).once("line", (l) => ok(JSON.parse(l) as Record<string, unknown>));
      child.once("exit", (c) => fail(new Error(`agent exited ${c}: ${stderr}`)));
    });
    assert.equal(first.event, "listening", stderr);
    assert.deepEqual([...(first.origins as string[])].sort(), [keptInstitutionUrl, keptPortalOrigin].sort());
    const hello = await fetch(`${first.url as string}/v1/hello`, { headers: { origin: keptPortalOrigin } });
    assert.equal(hello.status, 200);
    assert.equal(((await hello.json()) as { agent: string }).agent, "ukey-agent");
  } finally {
    await new Promise<void>((r) => { if (child.exitCode !== null) return r(); child.once("exit", () => r()); child.kill("SIGTERM"); });
  }
});

test("the published manifest lists the .deb with its size and checksum, signed", () => {
  const r = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--file", built.deb, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const entry = r.json<{ manifest: { files: Array<Record<string, unknown>> } }>().manifest.files.find((f) => f.name === "ukey-agent_0.1.0_amd64.deb");
  assert.deepEqual(entry, { name: "ukey-agent_0.1.0_amd64.deb", platform: "linux-x64", version: "0.1.0", size: built.debSize, sha256: built.debSha256 });
});
