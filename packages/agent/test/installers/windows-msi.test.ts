import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";

/** koffi's prebuilt Windows FFI binary, which the MSI installs beside ukey.exe. */
const koffiWin32 = join(dirname(createRequire(import.meta.url).resolve("koffi/package.json")), "build/koffi/win32_x64/koffi.node");
import { initialisedDataDir, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir, freePort } from "../../../server/test/support/fixtures.js";

// Issue 14, parts 2, 3 and 6 for Windows: ukey.exe (Node's single-executable
// application on the official Windows Node from npm, built here on Linux) in a
// per-user .msi made with wixl. The MSI's tables are read with msiinfo; then
// Wine's msiexec installs it into a fresh Wine prefix, the installed ukey.exe
// runs under wine64 (--version, explain 0116, doctor --json, the agent started
// by the Run key's command answering /v1/hello, `update --verify` of the MSI
// against the signed manifest), and msiexec /x removes it again.
//
// Under Wine, Node cannot use a Unix pipe as its stdout or stderr (libuv opens
// it as a Windows named pipe and gets EBADF), so every Wine run here writes
// its output to files. The build is cached by content (first run about a
// minute, then seconds); a fresh Wine prefix takes about half a minute.

const repo = resolve(import.meta.dirname, "../../../..");
const wine64 = "/usr/lib/wine/wine64";
const portal = "https://www.bank.example";
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let server: RunningServer | undefined;
let built: { executable: string; executableSize: number; msi: string; msiSize: number; msiSha256: string; build: string };
let prefix: string;
let manifestFiles: Array<Record<string, unknown>>;
/** The institution's files as the installer was built with them (publishing again re-signs the configuration). */
const stamped = new Map<string, Buffer>();

interface Ran { status: number | null; stdout: string; stderr: string }

function missingTools(): string[] {
  return [["wixl", "/usr/bin/wixl"], ["msiinfo", "/usr/bin/msiinfo"], ["msiextract", "/usr/bin/msiextract"], ["wine64", wine64]]
    .filter(([, p]) => !existsSync(p!)).map(([n]) => n!);
}

let runs = 0;
/** One program under Wine in the test's prefix, its output through files (see above). */
function wine(args: string[], timeout = 180_000): Ran {
  const n = runs++;
  const out = t.path(`wine-${n}.out`);
  const err = t.path(`wine-${n}.err`);
  const fo = openSync(out, "w");
  const fe = openSync(err, "w");
  try {
    const r = spawnSync(wine64, args, { env: wineEnv(), stdio: ["ignore", fo, fe], timeout });
    return { status: r.status, stdout: readFileSync(out, "utf8"), stderr: readFileSync(err, "utf8") };
  } finally {
    closeSync(fo);
    closeSync(fe);
  }
}

/** As wine(), without blocking this process: for runs that talk to a server in this process. */
async function wineAsync(args: string[], timeout = 180_000): Promise<Ran> {
  const n = runs++;
  const out = t.path(`wine-${n}.out`);
  const err = t.path(`wine-${n}.err`);
  const fo = openSync(out, "w");
  const fe = openSync(err, "w");
  try {
    const child = spawn(wine64, args, { env: wineEnv(), stdio: ["ignore", fo, fe], timeout });
    const status = await new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    return { status, stdout: readFileSync(out, "utf8"), stderr: readFileSync(err, "utf8") };
  } finally {
    closeSync(fo);
    closeSync(fe);
  }
}

// A UTF-8 locale that exists here (Debian's minimal images have only C.UTF-8): without one, Wine cannot create the
// Start menu entry's file under its Chinese name.
function wineEnv(): NodeJS.ProcessEnv {
  return { PATH: "/usr/bin:/bin", HOME: t.path("home"), WINEPREFIX: prefix, WINEDEBUG: "-all", LANG: "C.UTF-8", DISPLAY: "" };
}

/** A Windows path in the prefix (C:\users\...) as a path on this machine. */
function unixPath(windowsPath: string): string {
  assert.match(windowsPath, /^C:\\/i);
  return join(prefix, "drive_c", ...windowsPath.slice(3).split("\\"));
}

function msiTable(name: string): string[][] {
  // msiinfo export: column names, types, the table's key line, then one tab-separated row per line.
  return execFileSync("msiinfo", ["export", built.msi, name], { encoding: "utf8" }).split(/\r?\n/).slice(3).filter(Boolean).map((l) => l.split("\t"));
}


before(async () => {
  const missing = missingTools();
  // Not a skip: without these the Windows installer is untested, and the run must say so.
  if (missing.length > 0) throw new Error(`the Windows installer tests need ${missing.join(", ")}: run bash scripts/ensure-windows-build-deps.sh`);
  t = tempDir();
  mkdirSync(t.path("home"));
  prefix = t.path("wine-prefix");
  ({ dataDir, env } = initialisedDataDir(t));
  const port = await freePort();
  const cfg = JSON.parse(readFileSync(join(dataDir, "config.json"), "utf8"));
  cfg.publicUrl = `http://127.0.0.1:${port}`;
  cfg.downloads = { portalOrigins: [portal] };
  writeFileSync(join(dataDir, "config.json"), JSON.stringify(cfg));
  const first = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--json"], env);
  assert.equal(first.status, 0, first.stdout + first.stderr);
  for (const f of ["institution-key.pem", "agent-config.json"]) stamped.set(f, readFileSync(join(dataDir, "downloads", f)));
  const out = execFileSync(process.execPath, ["scripts/build-agent-windows.mjs", "--institution", join(dataDir, "downloads"), "--out", t.path("out")], {
    cwd: repo, encoding: "utf8", timeout: 900_000, stdio: ["ignore", "pipe", "pipe"],
  });
  built = JSON.parse(out.trim().split("\n").pop()!);
  const published = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--file", built.msi, "--json"], env);
  assert.equal(published.status, 0, published.stdout + published.stderr);
  manifestFiles = published.json<{ manifest: { files: Array<Record<string, unknown>> } }>().manifest.files;
  server = await startUkeyServer(dataDir, env, ["--port", String(port)]);
  // A fresh prefix that reports Windows 10 (Node 20 refuses to start on the Windows 7 a new prefix reports).
  const made = wine(["winecfg", "/v", "win10"], 300_000);
  assert.equal(made.status, 0, made.stderr);
});

after(async () => {
  if (prefix && existsSync(prefix)) spawnSync("/usr/lib/wine/wineserver64", ["-k"], { env: wineEnv(), timeout: 30_000 });
  await server?.stop();
  t?.cleanup();
});

test("the MSI's tables: per-user, the files, the Run entry, the Start menu's ukey doctor, the upgrade code", () => {
  const props = new Map(msiTable("Property").map(([k, v]) => [k!, v ?? ""]));
  // Holder-facing names in Chinese (GBK code page; wixl's source is English, scripts/build-agent-windows.mjs localise()).
  assert.equal(props.get("ProductName"), "UKey 证书代理");
  assert.equal(props.get("ARPCOMMENTS"), "让本机构的网页使用您的 UKey");
  assert.equal(props.get("ProductVersion"), "0.1.0");
  assert.equal(props.get("UpgradeCode"), "{6F3C1B52-8E0A-4D7B-9A51-2C4E7D90B1A3}");
  assert.equal(props.get("ALLUSERS"), undefined, "a per-user install sets no ALLUSERS");
  assert.equal(props.get("ARPNOMODIFY"), "1");
  // Word count 10: compressed files (2), and no elevated privileges needed (8): no UAC prompt.
  assert.equal(execFileSync("msiinfo", ["export", built.msi, "_ForceCodepage"], { encoding: "utf8" }).split(/\r?\n/)[2], "936\t_ForceCodepage");
  assert.match(execFileSync("msiinfo", ["suminfo", built.msi], { encoding: "utf8" }), /^Source: 10 /m);
  // The files go to %LOCALAPPDATA%\Programs\UKey Agent.
  const dirs = new Map(msiTable("Directory").map(([id, parent, name]) => [id!, { parent, name }]));
  assert.deepEqual(dirs.get("INSTALLDIR"), { parent: "LocalPrograms", name: "UKey Agent" });
  assert.deepEqual(dirs.get("LocalPrograms"), { parent: "LocalAppDataFolder", name: "Programs" });
  assert.deepEqual(msiTable("File").map(([, component, name, size]) => [component, name, size]).sort(), [
    ["Agent", "agent-config.json", String(stamped.get("agent-config.json")!.length)],
    ["Agent", "build-info.json", String(Buffer.byteLength(`${JSON.stringify({ build: built.build })}\n`))],
    ["Agent", "institution-key.pem", String(stamped.get("institution-key.pem")!.length)],
    ["Agent", "koffi.node", String(statSync(koffiWin32).size)],
    ["Agent", "ukey.exe", String(built.executableSize)],
  ]);
  // Every component is keyed by a value under HKCU (root 1), as per-user components must be.
  const registry = msiTable("Registry");
  assert.ok(registry.every((r) => r[1] === "1"), JSON.stringify(registry));
  const run = registry.find((r) => r[2] === "Software\\Microsoft\\Windows\\CurrentVersion\\Run");
  assert.deepEqual(run?.slice(3, 6), ["UKeyAgent", "\"[INSTALLDIR]ukey.exe\" agent start", "Autostart"]);
  const shortcut = msiTable("Shortcut").find((r) => r[0] === "DoctorShortcut");
  assert.deepEqual(shortcut?.slice(1, 6), ["MenuDir", "UKEYCK~1|UKey 检查", "Menu", "[SystemFolder]cmd.exe", "/k \"\"[INSTALLDIR]ukey.exe\" doctor\""]);
  assert.equal(dirs.get("MenuDir")?.parent, "ProgramMenuFolder");
  // The upgrade code finds older versions (replaced) and newer ones (a downgrade is refused).
  assert.deepEqual(msiTable("Upgrade").map((r) => [r[0], r[6]]).sort(), [
    ["{6F3C1B52-8E0A-4D7B-9A51-2C4E7D90B1A3}", "WIX_DOWNGRADE_DETECTED"], ["{6F3C1B52-8E0A-4D7B-9A51-2C4E7D90B1A3}", "WIX_UPGRADE_DETECTED"],
  ]);
  // What the cabinet holds is the built executable and the institution's own files.
  const x = t.path("extracted");
  mkdirSync(x);
  execFileSync("msiextract", ["-C", x, built.msi], { stdio: "pipe" });
  const extractedDir = join(x, "Programs/UKey Agent");
  const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  assert.equal(digest(readFileSync(join(extractedDir, "ukey.exe"))), digest(readFileSync(built.executable)));
  // The FFI binary beside it is koffi's own prebuilt Windows binary.
  assert.equal(digest(readFileSync(join(extractedDir, "koffi.node"))), digest(readFileSync(koffiWin32)));
  for (const [f, bytes] of stamped) assert.equal(digest(readFileSync(join(extractedDir, f))), digest(bytes), f);
  // The executable is cached by its sources alone; this build's id is stamped beside it.
  assert.deepEqual(JSON.parse(readFileSync(join(extractedDir, "build-info.json"), "utf8")), { build: built.build });
  assert.equal(createHash("sha256").update(readFileSync(built.msi)).digest("hex"), built.msiSha256);
});

test("the signed manifest lists the MSI for win32-x64 with its size and checksum", () => {
  assert.deepEqual(manifestFiles.find((f) => f.name === "ukey-agent-0.1.0-x64.msi"),
    { name: "ukey-agent-0.1.0-x64.msi", platform: "win32-x64", version: "0.1.0", size: built.msiSize, sha256: built.msiSha256 });
});

test("under Wine: msiexec installs per user, the installed ukey.exe runs and its Run entry starts the agent; msiexec /x removes it all", async () => {
  const install = wine(["msiexec", "/i", `Z:${built.msi.replaceAll("/", "\\")}`, "/qn"]);
  assert.equal(install.status, 0, install.stderr);
  const runKey = wine(["reg", "query", "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run", "/v", "UKeyAgent"]);
  assert.equal(runKey.status, 0, runKey.stderr);
  const command = /UKeyAgent\s+REG_SZ\s+(.+?)\s*$/m.exec(runKey.stdout)?.[1];
  const parsed = /^"([^"]+\\AppData\\Local\\Programs\\UKey Agent\\ukey\.exe)" agent start$/.exec(command ?? "");
  assert.ok(parsed, `the Run entry: ${runKey.stdout}`);
  const exe = parsed[1]!;
  for (const f of ["ukey.exe", "koffi.node", "institution-key.pem", "agent-config.json", "build-info.json"]) assert.equal(existsSync(unixPath(exe.replace(/ukey\.exe$/, f))), true, f);
  const menu = join(unixPath(exe.replace(/\\Local\\Programs\\UKey Agent\\ukey\.exe$/, "")), "Roaming/Microsoft/Windows/Start Menu/Programs/UKey");
  assert.deepEqual(existsSync(menu) ? readdirSync(menu) : [], ["UKey 检查.lnk"]);
  // reg export writes UTF-16 (reg query's console output would turn the Chinese name into "?").
  const arp = (root: string) => {
    const file = t.path(`arp-${runs}.reg`);
    const r = wine(["reg", "export", `${root}\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall`, `Z:${file.replaceAll("/", "\\")}`, "/y"]);
    return r.status === 0 && existsSync(file) ? readFileSync(file).toString("utf16le") : "";
  };
  // The standard uninstall entry (Wine keeps it under HKLM, Windows under the user's hive for a per-user MSI).
  const entry = arp("HKCU") + arp("HKLM");
  assert.match(entry, /"DisplayName"="UKey 证书代理"/, entry);
  assert.match(entry, /"Publisher"="ukey-renew"/);
  assert.match(entry, /"NoModify"=dword:00000001/);
  assert.match(entry, /"UninstallString"=/);

  const v = wine([exe, "--version", "--json"]);
  assert.equal(v.status, 0, v.stderr);
  const info = JSON.parse(v.stdout) as { version: string; build: string; platform: string; kind: string };
  assert.deepEqual({ version: info.version, platform: info.platform, kind: info.kind }, { version: "0.1.0", platform: "win32-x64", kind: "executable" });
  const bundle = JSON.parse(readFileSync(join(repo, "packages/agent/dist/build-info.json"), "utf8")) as { build: string };
  assert.equal(info.build, bundle.build, "the build id stamped beside ukey.exe");
  assert.equal(built.build, bundle.build);
  const explain = wine([exe, "explain", "0116", "--lang", "en"]);
  assert.equal(explain.status, 0, explain.stderr);
  assert.match(explain.stdout, /^0116: /m);
  assert.match(explain.stdout, /^RENEWAL_WINDOW_CLOSED: /m);
  const doctor = wine([exe, "doctor", "--json"]);
  const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ id: string; ok: boolean; code?: string }> }).checks;
  assert.deepEqual(checks.map((c) => c.id).slice(0, 1), ["module"], doctor.stdout);
  assert.ok(checks.some((c) => c.id === "server"), doctor.stdout);
  // PKCS#11 goes through koffi's Windows binary: a DLL that is not a PKCS#11 module is refused once koffi has loaded it
  // and looked for the Cryptoki functions (HSM_MODULE_LOAD_FAILED; had koffi.node not loaded, AGENT_FFI_MISSING), and a
  // missing one is named. No real Windows PKCS#11 module is available here.
  const moduleCheck = (module: string) => {
    const r = wine([exe, "doctor", "--json", "--module", module]);
    const c = (JSON.parse(r.stdout) as { checks: Array<{ id: string; ok: boolean; code?: string; detail?: string }> }).checks.find((x) => x.id === "module");
    return { status: r.status, ok: c?.ok, code: c?.code, out: r.stdout };
  };
  const notP11 = moduleCheck("C:\\windows\\system32\\kernel32.dll");
  assert.deepEqual({ ok: notP11.ok, code: notP11.code }, { ok: false, code: "HSM_MODULE_LOAD_FAILED" }, notP11.out);
  assert.notEqual(notP11.status, 0);
  const missing = moduleCheck("C:\\windows\\system32\\no-such-pkcs11.dll");
  assert.deepEqual({ ok: missing.ok, code: missing.code }, { ok: false, code: "TOKEN_DRIVER_MISSING" }, missing.out);

  // The update check verifies the downloaded MSI against the institution's signed manifest, and refuses an altered copy.
  const msiWin = `Z:${built.msi.replaceAll("/", "\\")}`;
  const verified = wine([exe, "update", "--verify", msiWin, "--json"]);
  assert.equal(verified.status, 0, verified.stdout + verified.stderr);
  assert.equal((JSON.parse(verified.stdout) as { verified: { name: string } }).verified.name, "ukey-agent-0.1.0-x64.msi");
  const alteredDir = t.path("altered");
  mkdirSync(alteredDir);
  const bytes = readFileSync(built.msi);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
  writeFileSync(join(alteredDir, "ukey-agent-0.1.0-x64.msi"), bytes);
  const refused = wine([exe, "update", "--verify", `Z:${join(alteredDir, "ukey-agent-0.1.0-x64.msi").replaceAll("/", "\\")}`, "--json"]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stdout + refused.stderr, /DOWNLOAD_CHECKSUM_MISMATCH/);

  // Started with the Run entry's command (plus a free port and JSON events for the test), with no --server or --origin.
  const out = t.path("agent.out");
  const fo = openSync(out, "w");
  const child = spawn(wine64, [exe, "agent", "start", "--port", "0", "--json"], { env: wineEnv(), stdio: ["ignore", fo, fo] });
  closeSync(fo);
  try {
    let first: { event?: string; url?: string; origins?: string[] } | undefined;
    for (let i = 0; i < 120 && !first; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const line = readFileSync(out, "utf8").split("\n").find((l) => l.startsWith("{"));
      if (line) first = JSON.parse(line) as typeof first;
      if (child.exitCode !== null && !first) break;
    }
    assert.equal(first?.event, "listening", readFileSync(out, "utf8"));
    assert.deepEqual([...first.origins!].sort(), [portal, server!.url].sort());
    const hello = await fetch(`${first.url!}/v1/hello`, { headers: { origin: portal } });
    assert.equal(hello.status, 200);
    assert.deepEqual(await hello.json(), { agent: "ukey-agent", version: "0.1.0", protocol: 1, paired: false });

    // A second start while it runs (the Run entry again at the next login, or the holder by hand): refused with the
    // catalogue's code, exit 1, and the first agent keeps serving.
    const port = new URL(first.url!).port;
    const second = await wineAsync([exe, "agent", "start", "--port", port, "--json"]);
    assert.equal(second.status, 1, second.stdout + second.stderr);
    const refusal = (JSON.parse(second.stdout) as { error: { code: string; message: { en: string } } }).error;
    assert.equal(refusal.code, "AGENT_ALREADY_RUNNING", second.stdout);
    assert.match(refusal.message.en, new RegExp(`version 0\\.1\\.0\\) is already running on port ${port}`));
    assert.match(second.stderr, /AGENT_ALREADY_RUNNING/);
    const still = await fetch(`${first.url!}/v1/hello`, { headers: { origin: portal } });
    assert.equal(still.status, 200);
    assert.equal(child.exitCode, null, "the first agent still runs");
    // Another program on the port, not a ukey agent: AGENT_PORT_IN_USE, with the port.
    const squatter = createServer((s) => s.end("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"));
    await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", r));
    try {
      const taken = (squatter.address() as { port: number }).port;
      const other = await wineAsync([exe, "agent", "start", "--port", String(taken), "--json"]);
      assert.equal(other.status, 1, other.stdout + other.stderr);
      const q = (JSON.parse(other.stdout) as { error: { code: string; message: { en: string } } }).error;
      assert.equal(q.code, "AGENT_PORT_IN_USE", other.stdout);
      assert.match(q.message.en, new RegExp(`^Port ${taken} of this computer is taken by another program`));
    } finally {
      squatter.close();
    }
  } finally {
    spawnSync("/usr/lib/wine/wineserver64", ["-k"], { env: wineEnv(), timeout: 30_000 });
    await new Promise<void>((r) => { if (child.exitCode !== null || child.signalCode !== null) return r(); child.once("exit", () => r()); });
  }

  const removed = wine(["msiexec", "/x", `Z:${built.msi.replaceAll("/", "\\")}`, "/qn"]);
  assert.equal(removed.status, 0, removed.stderr);
  assert.equal(existsSync(unixPath(exe)), false, "ukey.exe is removed");
  assert.equal(existsSync(unixPath(exe.replace(/\\ukey\.exe$/, ""))), false, "its folder is removed");
  assert.notEqual(wine(["reg", "query", "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run", "/v", "UKeyAgent"]).status, 0, "the Run entry is removed");
  assert.doesNotMatch(arp("HKCU") + arp("HKLM"), /UKey 证书代理|"Publisher"="ukey-renew"/);
});
