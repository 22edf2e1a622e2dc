// The installed agent (issue 14.7): download size, cold start until /v1/hello
// answers, and memory at rest, for the self-contained executable beside the
// bundle on node and the sources on tsx, measured side by side in one run.
// Targets: under 60 MB compressed download, under 1 s to answer, under 80 MB RSS.
//
// The executable runs as it does at login after a reboot: its file's pages are
// dropped from the page cache before each start (fsync, then dd iflag=nocache).
// A file that was just written stays in the page cache in large folios (ext4 on
// Linux 6.16 and later), and the kernel then maps whole folios around every page
// the program touches: "executable, just written" shows that case beside it.
// "executable, no code cache" is the same bundle in a blob without V8's code
// cache (the build before it had one): the parse of the whole bundle at start
// leaves freed memory in glibc's heap, which the code cache avoids.
// Usage: node --import tsx bench/agent-executable-bench.ts [runs (default 5)]
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";

const repo = resolve(import.meta.dirname, "..");
const runs = Number(process.argv[2] ?? 5);
const work = mkdtempSync(join(tmpdir(), "ukey-exe-bench-"));

// A throwaway institution, so the installer script can stamp one in.
const pass = join(work, "pass");
writeFileSync(pass, "correct horse battery staple\n");
const serverEnv = { ...process.env, UKEY_CA_PASSPHRASE_FILE: pass };
execFileSync(process.execPath, [join(repo, "packages/server/bin/ukey-server.js"), "init", "--data-dir", join(work, "d")], { env: serverEnv, stdio: "ignore" });
execFileSync(process.execPath, [join(repo, "packages/server/bin/ukey-server.js"), "downloads", "publish", "--data-dir", join(work, "d")], { env: serverEnv, stdio: "ignore" });
// The Windows installer's sizes too, when wixl is here (the build is cached like the Linux one).
const windows = existsSync("/usr/bin/wixl")
  ? JSON.parse(execFileSync(process.execPath, [join(repo, "scripts/build-agent-windows.mjs"), "--institution", join(work, "d/downloads"), "--out", join(work, "out")], { cwd: repo, encoding: "utf8" }).trim().split("\n").pop()!) as { executableSize: number; msiSize: number }
  : undefined;
const built = JSON.parse(execFileSync(process.execPath, [join(repo, "scripts/build-agent-installers.mjs"), "--institution", join(work, "d/downloads"), "--out", join(work, "out")], { cwd: repo, encoding: "utf8" }).trim().split("\n").pop()!) as { executable: string; executableSize: number; debSize: number };

// The executable copied here (no other program maps this copy, so its pages can be dropped), and the same bundle
// without V8's code cache in a second copy of this Node, as the build made it before.
const exe = join(work, "exe/ukey");
const exeNoCache = join(work, "exe-no-cache/ukey");
for (const f of [exe, exeNoCache]) {
  mkdirSync(dirname(f));
  copyFileSync(join(dirname(built.executable), "koffi.node"), join(dirname(f), "koffi.node"));
}
copyFileSync(built.executable, exe);
writeFileSync(join(work, "sea-no-cache.json"), JSON.stringify({
  main: join(dirname(built.executable), "ukey.cjs"), output: join(work, "no-cache.blob"), disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false,
}));
execFileSync(process.execPath, ["--experimental-sea-config", join(work, "sea-no-cache.json")], { stdio: "pipe" });
copyFileSync(process.execPath, exeNoCache);
chmodSync(exeNoCache, 0o755);
execFileSync(process.execPath, [createRequire(import.meta.url).resolve("postject/dist/cli.js"), exeNoCache, "NODE_SEA_BLOB", join(work, "no-cache.blob"),
  "--sentinel-fuse", "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2"], { stdio: "pipe" });

/** Drops the file's pages from the page cache, as after a reboot (written out first, so that they can be dropped). */
function dropFromPageCache(file: string): void {
  const fd = openSync(file, "r");
  fsyncSync(fd);
  closeSync(fd);
  execFileSync("dd", [`if=${file}`, "iflag=nocache", "count=0", "status=none"]);
}

const variants: Record<string, string[]> = {
  executable: [exe],
  "executable, no code cache": [exeNoCache],
  "executable, just written": [exe],
  bundle: [process.execPath, join(repo, "packages/agent/dist/ukey.mjs")],
  // V8's --optimize-for-size on the same bundle (the executable cannot take V8 flags): smaller, but slow to start.
  "bundle --optimize-for-size": [process.execPath, "--optimize-for-size", join(repo, "packages/agent/dist/ukey.mjs")],
  source: [process.execPath, join(repo, "packages/agent/bin/ukey.js")],
};

async function once(name: string, cmd: string[]): Promise<{ ms: number; rssMb: number; anonMb: number; fileMb: number }> {
  if (name === "executable" || name === "executable, no code cache") dropFromPageCache(cmd[0]!);
  // Written with write() as the build (postject) and dpkg write it; a copy by copy_file_range does not show the effect.
  if (name === "executable, just written") writeFileSync(exe, readFileSync(built.executable));
  const home = mkdtempSync(join(work, "home-"));
  const t0 = performance.now();
  const child = spawn(cmd[0]!, [...cmd.slice(1), "agent", "start", "--port", "0", "--json", "--server", "http://127.0.0.1:9"], {
    env: { PATH: process.env.PATH ?? "", HOME: home, UKEY_AGENT_HOME: home }, stdio: ["ignore", "pipe", "ignore"],
  });
  const url = await new Promise<string>((ok, fail) => {
    createInterface({ input: child.stdout! }).once("line", (l) => ok((JSON.parse(l) as { url: string }).url));
    child.once("exit", (c) => fail(new Error(`exited ${c}`)));
  });
  const hello = await fetch(`${url}/v1/hello`, { headers: { origin: "http://127.0.0.1:9" } });
  if (hello.status !== 200) throw new Error(`hello ${hello.status}`);
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 2000));
  const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
  // Where it is: the V8 heap and other anonymous memory, and the pages of the program file itself (Node's code and ICU data).
  const anonKb = Number(/RssAnon:\s+(\d+)/.exec(status)![1]);
  const fileKb = Number(/RssFile:\s+(\d+)/.exec(status)![1]);
  await new Promise<void>((r) => { child.once("exit", () => r()); child.kill("SIGTERM"); });
  return { ms, rssMb: rssKb / 1024, anonMb: anonKb / 1024, fileMb: fileKb / 1024 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: Record<string, { ms: number[]; rss: number[]; anon: number[]; file: number[] }> = {};
// Warm the page cache for every variant first, then alternate them so that load on the machine falls on each alike.
for (const [name, cmd] of Object.entries(variants)) await once(name, cmd);
for (let i = 0; i < runs; i++) {
  for (const [name, cmd] of Object.entries(variants)) {
    const r = await once(name, cmd);
    const slot = (results[name] ??= { ms: [], rss: [], anon: [], file: [] });
    slot.ms.push(r.ms);
    slot.rss.push(r.rssMb);
    slot.anon.push(r.anonMb);
    slot.file.push(r.fileMb);
  }
}
const met = (ok: boolean) => (ok ? "met" : "NOT MET");
console.log(`== agent executable (${runs} runs each, medians; targets: download < 60 MB, answer < 1000 ms, RSS at rest < 80 MB)`);
console.log(`executable ${(built.executableSize / 1e6).toFixed(1)} MB, .deb download ${(built.debSize / 1e6).toFixed(1)} MB (${(statSync(built.executable).size / built.debSize).toFixed(1)}x compression)`
  + `: download < 60 MB ${met(built.debSize < 60e6)}`);
if (windows) {
  console.log(`ukey.exe ${(windows.executableSize / 1e6).toFixed(1)} MB, .msi download ${(windows.msiSize / 1e6).toFixed(1)} MB (${(windows.executableSize / windows.msiSize).toFixed(1)}x compression)`
    + `: download < 60 MB ${met(windows.msiSize < 60e6)}`);
} else console.log("Windows sizes not measured: wixl is missing (bash scripts/ensure-windows-build-deps.sh)");
const base = median(results.bundle!.ms);
for (const [name, s] of Object.entries(results)) {
  console.log(`${name.padEnd(28)} cold start to /v1/hello ${median(s.ms).toFixed(0).padStart(5)} ms (${(median(s.ms) / base).toFixed(2)}x the bundle)  RSS at rest ${median(s.rss).toFixed(1)} MB`
    + ` (${(median(s.rss) / median(results.bundle!.rss)).toFixed(2)}x the bundle; anonymous ${median(s.anon).toFixed(1)} MB, program file ${median(s.file).toFixed(1)} MB)`);
}
const e = results.executable!;
console.log(`targets for the executable (started as after a reboot): answer ${median(e.ms).toFixed(0)} ms < 1000 ms ${met(median(e.ms) < 1000)}; `
  + `RSS at rest ${median(e.rss).toFixed(1)} MB < 80 MB ${met(median(e.rss) < 80)} (${(median(e.rss) / median(results["executable, no code cache"]!.rss)).toFixed(2)}x without the code cache)`);
rmSync(work, { recursive: true, force: true });
