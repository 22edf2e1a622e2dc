// The agent as a program a holder installs: a self-contained Linux x64
// executable (Node's single-executable application: this Node binary with the
// agent bundled in by postject, so the holder needs no Node.js) and a .deb
// that installs it with the institution's key and configuration and starts
// the agent at login (XDG autostart).
//
// The agent reaches PKCS#11 (and SKF) libraries through koffi, whose npm
// package carries its FFI binary prebuilt for every platform: no compiler on
// the build machine or the holder's. A native binary cannot live inside the
// executable's blob, so koffi.node is installed beside it and loaded from there.
//
// Usage: node scripts/build-agent-installers.mjs --institution DIR [--out DIR]
//   --institution  the downloads folder of `ukey-server downloads publish`
//                  (institution-key.pem and agent-config.json are stamped in)
//   --out          where the .deb goes (default dist/installers)
// Cached by content: the executable by the sources (not the build id: a
// commit that changes no source does not make it again) and this Node's
// version; the .deb additionally by the build id and the institution's files;
// both in UKEY_BUILD_CACHE (default ~/.cache/ukey-renew)/installers. The build
// id reaches the installed executable as build-info.json beside it, which
// `ukey --version` reads.
// Prints one JSON line: { executable, deb, debSha256, debSize, executableSize, build, executableCached, cached }.
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build as buildBundles } from "./build.mjs";
import { bundleAgent, injectBlob, koffiAddon } from "./agent-bundle.mjs";
import { runUnderLock } from "./build-lock.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = (await import("node:module")).createRequire(import.meta.url);

const { values } = parseArgs({ options: { institution: { type: "string" }, out: { type: "string" } } });
if (!values.institution) {
  process.stderr.write("usage: node scripts/build-agent-installers.mjs --institution DOWNLOADS-DIR [--out DIR]\n");
  process.exit(2);
}
const institution = resolve(values.institution);
for (const f of ["institution-key.pem", "agent-config.json"]) {
  if (!existsSync(join(institution, f))) {
    process.stderr.write(`${join(institution, f)} is missing: run ukey-server downloads publish first\n`);
    process.exit(2);
  }
}
const out = resolve(values.out ?? join(root, "dist/installers"));
const cache = join(process.env.UKEY_BUILD_CACHE ?? join(homedir(), ".cache/ukey-renew"), "installers");
if (process.platform !== "linux" || process.arch !== "x64") {
  process.stderr.write("the Linux x64 executable is built on Linux x64 (docs/agent-install.md)\n");
  process.exit(2);
}
// One Linux build at a time in this cache (scripts/build-lock.mjs): a second one waits, then takes the first's.
runUnderLock(join(cache, "linux.lock"), fileURLToPath(import.meta.url));

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const info = (await buildBundles({ quiet: true })) && JSON.parse(readFileSync(join(root, "packages/agent/dist/build-info.json"), "utf8"));
const ffiAddon = koffiAddon(require, "linux_x64");

// 1. The executable: one CommonJS bundle of the agent and everything it uses, injected into a copy of this Node.
//    Keyed on the sources (info.inputHash has no build id) and built without one: the build id is stamped in the .deb.
const exeKey = sha256([info.inputHash, process.version, readFileSync(fileURLToPath(import.meta.url)), readFileSync(new URL("./agent-bundle.mjs", import.meta.url)), readFileSync(ffiAddon)].join("\0")).slice(0, 16);
const exeDir = join(cache, `exe-${exeKey}`);
let cached = true;
const executableCached = existsSync(join(exeDir, "ukey"));
if (!executableCached) {
  cached = false;
  const work = `${exeDir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  // With V8's code cache of the bundle: this Node makes it and this Node is the base binary (memory at rest, agent-bundle.mjs).
  await bundleAgent(work, { version: info.version }, { codeCache: true });
  copyFileSync(process.execPath, join(work, "ukey"));
  chmodSync(join(work, "ukey"), 0o755);
  injectBlob(require, work, join(work, "ukey"));
  copyFileSync(ffiAddon, join(work, "koffi.node"));
  rmSync(join(work, "ukey.blob"));
  rmSync(exeDir, { recursive: true, force: true });
  renameSync(work, exeDir);
}

// 2. The .deb: the executable, its addon, its build id and the institution's files in /usr/lib/ukey-agent, `ukey` on the
//    PATH, autostart at login.
const version = info.version;
const debName = `ukey-agent_${version}_amd64.deb`;
const stamp = `${JSON.stringify({ build: info.build })}\n`;
const debKey = sha256([exeKey, stamp, readFileSync(join(institution, "institution-key.pem")), readFileSync(join(institution, "agent-config.json")), readFileSync(fileURLToPath(import.meta.url))].join("\0")).slice(0, 16);
const debCached = join(cache, `deb-${debKey}`, debName);
if (!existsSync(debCached)) {
  cached = false;
  const work = join(cache, `deb-${debKey}.tmp-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  const tree = join(work, "tree");
  const lib = join(tree, "usr/lib/ukey-agent");
  mkdirSync(lib, { recursive: true });
  mkdirSync(join(tree, "usr/bin"), { recursive: true });
  mkdirSync(join(tree, "etc/xdg/autostart"), { recursive: true });
  mkdirSync(join(tree, "usr/share/applications"), { recursive: true });
  mkdirSync(join(tree, "DEBIAN"), { recursive: true });
  for (const f of ["ukey", "koffi.node"]) copyFileSync(join(exeDir, f), join(lib, f));
  chmodSync(join(lib, "ukey"), 0o755);
  chmodSync(join(lib, "koffi.node"), 0o644);
  for (const f of ["institution-key.pem", "agent-config.json"]) {
    copyFileSync(join(institution, f), join(lib, f));
    chmodSync(join(lib, f), 0o644);
  }
  writeFileSync(join(lib, "build-info.json"), stamp, { mode: 0o644 });
  symlinkSync("../lib/ukey-agent/ukey", join(tree, "usr/bin/ukey"));
  // The agent at login, as the holder: the XDG autostart entry every desktop (GNOME, KDE, Xfce, deepin, UOS) honours.
  writeFileSync(join(tree, "etc/xdg/autostart/ukey-agent.desktop"), [
    "[Desktop Entry]", "Type=Application", "Name=UKey agent", "Name[zh_CN]=UKey 证书代理",
    "Comment=Lets your institution's web page use your UKey", "Comment[zh_CN]=让本机构的网页使用您的 UKey",
    "Exec=/usr/lib/ukey-agent/ukey agent start", "Terminal=false", "NoDisplay=true", "X-GNOME-Autostart-enabled=true", "",
  ].join("\n"));
  writeFileSync(join(tree, "usr/share/applications/ukey-doctor.desktop"), [
    "[Desktop Entry]", "Type=Application", "Name=UKey check", "Name[zh_CN]=UKey 检查",
    "Comment=Check the key, its driver and the connection to your institution", "Comment[zh_CN]=检查 UKey、驱动和与机构的连接",
    "Exec=/usr/lib/ukey-agent/ukey doctor", "Terminal=true", "Categories=Utility;", "",
  ].join("\n"));
  // Before dpkg unpacks anything: a start-at-login folder that cannot be written (a read-only /etc) gets the
  // catalogue's refusal, and dpkg then changes nothing. The words are the catalogue's, from the bundle just built.
  const refusal = JSON.parse(execFileSync(process.execPath, [join(root, "packages/agent/dist/ukey.mjs"), "explain", "AUTOSTART_NOT_WRITABLE", "--json"], { encoding: "utf8" }))
    .results[0].ours.find((p) => p.code === "AUTOSTART_NOT_WRITABLE");
  const fill = (text) => text.replaceAll("{dir}", "/etc/xdg/autostart");
  writeFileSync(join(tree, "DEBIAN/preinst"), [
    "#!/bin/sh", "set -e", "case \"$1\" in", "  install|upgrade)", "    dir=/etc/xdg/autostart", "    mkdir -p \"$dir\" 2>/dev/null || true",
    "    probe=\"$dir/.ukey-agent-preinst.$$\"", "    if ! ( : > \"$probe\" ) 2>/dev/null; then", "      cat >&2 <<'EOF'",
    `错误 AUTOSTART_NOT_WRITABLE：${fill(refusal.message["zh-CN"])}`, `  处理：${fill(refusal.remedy["zh-CN"])}`,
    `Error AUTOSTART_NOT_WRITABLE: ${fill(refusal.message.en)}`, `  Remedy: ${fill(refusal.remedy.en)}`, "EOF", "      exit 1", "    fi",
    "    rm -f \"$probe\"", "    ;;", "esac", "exit 0", "",
  ].join("\n"));
  chmodSync(join(tree, "DEBIAN/preinst"), 0o755);
  const installedKb = Math.ceil(["ukey", "koffi.node", "build-info.json"].reduce((n, f) => n + statSync(join(lib, f)).size, 0) / 1024);
  writeFileSync(join(tree, "DEBIAN/control"), [
    "Package: ukey-agent", `Version: ${version}`, "Architecture: amd64", "Maintainer: ukey-renew <ukey-renew@localhost>",
    `Installed-Size: ${installedKb}`, "Section: utils", "Priority: optional",
    "Description: UKey certificate agent (renewal of certificates on USB keys)",
    " Renews, downloads and manages the certificates on USB keys (UKey) for the",
    " institution's web portal. Self-contained: needs no Node.js.", "",
  ].join("\n"));
  const deb = join(work, debName);
  execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", tree, deb], { stdio: "pipe" });
  mkdirSync(dirname(debCached), { recursive: true });
  renameSync(deb, debCached);
  rmSync(work, { recursive: true, force: true });
}
mkdirSync(out, { recursive: true });
copyFileSync(debCached, join(out, debName));
const debBytes = readFileSync(debCached);
process.stdout.write(`${JSON.stringify({
  executable: join(exeDir, "ukey"), executableSize: statSync(join(exeDir, "ukey")).size,
  deb: join(out, debName), debSize: debBytes.length, debSha256: sha256(debBytes), build: info.build, executableCached, cached,
})}\n`);
