import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Page } from "playwright-core";
import { Pkcs11Backend } from "../../src/keys/pkcs11-backend.js";
import { createAgentWorld, parseObjects, type AgentWorld } from "../support/agent-world.js";
import { keptInstitution, keptInstitutionPort, keptPortalOrigin } from "../support/kept-institution.js";
import { addAuditor, adminReader, runUkeyServer, startUkeyServer, freePort } from "../../../server/test/support/fixtures.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "../../../web/test/support/browser.js";

// Issue 14, part 6: the agent installed as a holder's machine gets it. A clean
// Debian 12 root (scripts/ensure-debian-root.sh: debootstrap minbase plus
// SoftHSM2 and OpenSC, no Node.js), the institution's .deb installed there
// with dpkg -i, a SoftHSM2 token of a non-root user of that root holding a
// certificate the server on this host issued, the agent started as that user
// with the autostart entry's command line, and the certificate renewed by
// driving the portal in Chromium on the host over loopback (chroot shares the
// network). Cached: the root's tarball (cold about 4 minutes) and the
// executable (cold about 2 minutes); the .deb once per build id, stamped with
// the kept institution's key and configuration (../support/kept-institution.ts,
// the same .deb linux-deb.test.ts reads).

const repo = resolve(import.meta.dirname, "../../../..");
const uid = 1500;
const pin = "123456";
const mounts: string[] = [];
let world: AgentWorld;
let root: string;
let deb: string;
let tokenSerial: string;
let softhsmGid: number;
const tokens = () => join(root, "var/lib/softhsm/tokens");
let issued: { serial: string };
let agent: ChildProcess | undefined;
let agentOut = "";
let agentErr = "";
let b: RunningBrowser | undefined;
let admin: <T>(path: string) => Promise<T>;


/** Runs a command inside the root as the holder (or as root), with a login-like environment and nothing of the host's. */
function inRoot(args: string[], opts: { asRoot?: boolean; input?: string } = {}) {
  const r = spawnSync("/usr/sbin/chroot", [...(opts.asRoot ? [] : [`--userspec=${uid}:${uid}`, `--groups=${softhsmGid}`]), root, ...args], {
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: opts.asRoot ? "/root" : "/home/holder", LANG: "C.UTF-8" },
    encoding: "utf8", timeout: 120_000, input: opts.input ?? "",
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, all: `${r.stdout}${r.stderr}${r.error?.message ?? ""}` };
}

/** How long each step took, on stderr: the warm-cache budget is well under two minutes. */
let lap = performance.now();
function phase(what: string): void {
  const now = performance.now();
  process.stderr.write(`clean-root: ${what} ${((now - lap) / 1000).toFixed(1)} s\n`);
  lap = now;
}

function mount(args: string[], target: string): void {
  execFileSync("mount", [...args, target]);
  mounts.push(target);
}

before(async () => {
  if (process.getuid?.() !== 0) throw new Error("\n\n*** THE CLEAN-ROOT INSTALL TEST NEEDS ROOT (debootstrap, chroot, mount) ***\n");
  world = createAgentWorld("ukey-clean-root-");
  root = world.t.path("root");
  // 1. The clean root, fresh from the cached tarball.
  const made = spawnSync("bash", [join(repo, "scripts/ensure-debian-root.sh"), "--include", "opensc,softhsm2", root], { encoding: "utf8", timeout: 900_000 });
  assert.equal(made.status, 0, made.stderr);
  phase("the clean root unpacked in");
  mount(["-t", "proc", "proc"], join(root, "proc"));
  mount(["--bind", "/dev"], join(root, "dev"));
  for (const node of ["usr/bin/node", "usr/local/bin/node", "usr/bin/nodejs"]) assert.equal(existsSync(join(root, node)), false, `no Node.js in the root (${node})`);

  // 2. A holder (a plain user) whose SoftHSM2 token is the key. As Debian's softhsm2 says: a member of the group softhsm
  //    uses the machine's token directory (/var/lib/softhsm/tokens) with the packaged configuration, unchanged.
  let r = inRoot(["useradd", "--create-home", "--uid", String(uid), "--user-group", "--groups", "softhsm", "--shell", "/bin/bash", "holder"], { asRoot: true });
  assert.equal(r.status, 0, r.all);
  softhsmGid = Number(/^softhsm:x:(\d+):/m.exec(readFileSync(join(root, "etc/group"), "utf8"))![1]);
  r = inRoot(["softhsm2-util", "--init-token", "--free", "--label", "holder-key", "--pin", pin, "--so-pin", "87654321"]);
  assert.equal(r.status, 0, r.all);
  tokenSerial = /Serial number:\s+(\S+)/.exec(inRoot(["softhsm2-util", "--show-slots"]).stdout)![1]!;

  phase("the holder and their token in");
  // 3. The first certificate, issued by the server here onto that token (the host's SoftHSM2 reads the same token files).
  const hostConf = world.t.write("host-softhsm2.conf", `directories.tokendir = ${tokens()}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  process.env.SOFTHSM2_CONF = hostConf;
  issued = await world.issueOnToken("H1", "e2e", "p256", tokenSerial, new Pkcs11Backend(world.hsm.module));
  execFileSync("chown", ["-R", `${uid}:${softhsmGid}`, tokens()]);

  phase("the first certificate issued onto it in");
  // 4. The institution: its server, its signed configuration published, the .deb stamped with it. The .deb is built
  //    once per build id: the institution is kept between runs and shared with linux-deb.test.ts (its key's seed and
  //    first published files, in the cache; ../support/kept-institution.ts), its server on a fixed port, so the stamped
  //    files, and with them the .deb, are the same every run. Each run publishes anew; the agent takes the newer
  //    configuration from the server at start, as an installed agent does.
  const port = keptInstitutionPort;
  const kept = keptInstitution(world.dataDir, world.env);
  const built = execFileSync(process.execPath, [join(repo, "scripts/build-agent-installers.mjs"), "--institution", kept, "--out", world.t.path("out")], {
    cwd: repo, encoding: "utf8", timeout: 900_000, stdio: ["ignore", "pipe", "pipe"],
  });
  const info = JSON.parse(built.trim().split("\n").pop()!) as { deb: string; cached: boolean };
  deb = info.deb;
  phase(`the institution published and the .deb ${info.cached ? "taken from the cache" : "built"} in`);
  // The institution publishes again after the installer was made (as it does when a portal moves): a newer configuration.
  const again = runUkeyServer(["downloads", "publish", "--data-dir", world.dataDir, "--json"], world.env);
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.notDeepEqual(readFileSync(join(world.dataDir, "downloads/agent-config.json")), readFileSync(join(kept, "agent-config.json")));
  buildWeb();
  world.server = await startUkeyServer(world.dataDir, world.env, ["--port", String(port)]).catch((e: Error) => {
    throw new Error(`the institution's server needs port ${port} on 127.0.0.1 (fixed: the .deb's configuration names it): ${e.message}`);
  });
  assert.equal(world.server.url, `http://127.0.0.1:${port}`);
  phase("the portal built and the server started in");
  admin = adminReader(() => world.server!.url, addAuditor(world.t, world.dataDir, world.env, "auditor-root"));
});

after(async () => {
  await b?.close();
  if (agent && agent.exitCode === null) {
    await new Promise<void>((r) => { agent!.once("exit", () => r()); agent!.kill("SIGTERM"); setTimeout(() => { agent!.kill("SIGKILL"); }, 5000).unref(); });
  }
  lap = performance.now();
  // Unmount always, innermost last mounted first, even when a step above failed.
  for (const target of mounts.reverse()) spawnSync("umount", ["--lazy", target]);
  delete process.env.SOFTHSM2_CONF;
  await world?.cleanup();
  phase("cleaned up in");
});

test("a start-at-login folder that cannot be written (a read-only /etc/xdg/autostart): dpkg -i refuses with AUTOSTART_NOT_WRITABLE and changes nothing", () => {
  copyFileSync(deb, join(root, "tmp/ukey-agent.deb"));
  const autostart = join(root, "etc/xdg/autostart");
  mkdirSync(autostart, { recursive: true });
  const libBefore = readdirSync(join(root, "usr/lib")).sort();
  mount(["--bind", autostart], autostart);
  execFileSync("mount", ["-o", "remount,bind,ro", autostart]);
  try {
    const r = inRoot(["dpkg", "-i", "/tmp/ukey-agent.deb"], { asRoot: true });
    assert.notEqual(r.status, 0, r.all);
    assert.match(r.stderr, /错误 AUTOSTART_NOT_WRITABLE：无法写入登录时自动启动的目录 \/etc\/xdg\/autostart，ukey 代理没有安装。/);
    assert.match(r.stderr, /处理：请由本机管理员安装/);
    assert.match(r.stderr, /Error AUTOSTART_NOT_WRITABLE: The start-at-login folder \/etc\/xdg\/autostart cannot be written/);
    // Nothing installed: no files, no ukey on the PATH, dpkg does not count it as installed.
    assert.equal(existsSync(join(root, "usr/lib/ukey-agent")), false);
    assert.equal(existsSync(join(root, "usr/bin/ukey")), false);
    assert.deepEqual(readdirSync(join(root, "usr/lib")).sort(), libBefore);
    assert.match(inRoot(["dpkg-query", "-W", "-f", "${Status}", "ukey-agent"]).stdout, /^(|\S+ \S+ not-installed)$/);
  } finally {
    execFileSync("umount", [autostart]);
    mounts.splice(mounts.indexOf(autostart), 1);
  }
});

test("dpkg -i installs the institution's .deb in a clean Debian 12 root that has no Node.js", () => {
  copyFileSync(deb, join(root, "tmp/ukey-agent.deb"));
  lap = performance.now();
  const r = inRoot(["dpkg", "-i", "/tmp/ukey-agent.deb"], { asRoot: true });
  assert.equal(r.status, 0, r.all);
  phase("dpkg -i in");
  assert.match(inRoot(["dpkg-query", "-W", "-f", "${Status} ${Version}", "ukey-agent"]).stdout, /^install ok installed \d+\.\d+\.\d+$/);
  // The holder's PATH finds it, and it runs with no Node.js anywhere in the root.
  const v = inRoot(["ukey", "--version"]);
  assert.equal(v.status, 0, v.all);
  // The executable is cached by its sources alone: the build id it reports is this build's, stamped beside it in the .deb.
  const bundle = JSON.parse(readFileSync(join(repo, "packages/agent/dist/build-info.json"), "utf8")) as { version: string; build: string };
  assert.equal(v.stdout.trim(), `ukey ${bundle.version} (build ${bundle.build}, linux-x64, executable)`);
  assert.notEqual(inRoot(["sh", "-c", "command -v node"]).status, 0, "no node on the holder's PATH");
});

test("started as the holder with the autostart entry's command line, the agent renews the key's certificate through the portal in Chromium", async () => {
  const entry = readFileSync(join(root, "etc/xdg/autostart/ukey-agent.desktop"), "utf8");
  const exec = /^Exec=(.*)$/m.exec(entry)![1]!.split(" ");
  // The command line is the entry's, unchanged; only the port is the holder's own setting (a free one: the tests run side by side).
  const agentPort = await freePort();
  mkdirSync(join(root, "home/holder/.ukey"), { recursive: true });
  writeFileSync(join(root, "home/holder/.ukey/agent.json"), JSON.stringify({ port: agentPort }));
  execFileSync("chown", ["-R", `${uid}:${uid}`, join(root, "home/holder/.ukey")]);
  agent = spawn("/usr/sbin/chroot", [`--userspec=${uid}:${uid}`, `--groups=${softhsmGid}`, root, ...exec], {
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/home/holder", LANG: "zh_CN.UTF-8", XDG_CONFIG_DIRS: "/etc/xdg" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  agent.stderr!.on("data", (d) => { agentErr += String(d); });
  const codes: string[] = [];
  const waiting: ((c: string) => void)[] = [];
  const agentUrl = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the agent did not start: ${agentOut}${agentErr}`)), 60_000);
    createInterface({ input: agent!.stdout! }).on("line", (line) => {
      agentOut += `${line}\n`;
      // What the holder reads in the agent's window: its address, then each pairing code.
      const listening = /ukey agent listening on (http:\/\/127\.0\.0\.1:\d+) for (.*)\. Press/.exec(line);
      if (listening) { clearTimeout(timer); ok(listening[1]!); }
      const code = /Pairing code (\d{6}) — the site (\S+) asks/.exec(line);
      if (code) {
        assert.equal(code[2], world.server!.url);
        const w = waiting.shift();
        if (w) w(code[1]!); else codes.push(code[1]!);
      }
    });
    agent!.once("exit", (c) => { clearTimeout(timer); fail(new Error(`the agent exited ${c}: ${agentOut}${agentErr}`)); });
  });
  assert.equal(agentUrl, `http://127.0.0.1:${agentPort}`);
  // At start it took the institution's current configuration from the server over loopback (newer than the stamped one).
  const refreshed = join(root, "home/holder/.ukey/agent-config.json");
  assert.ok(existsSync(refreshed), `the agent kept the server's newer configuration: ${agentErr}`);
  assert.deepEqual(JSON.parse(readFileSync(refreshed, "utf8")), JSON.parse(readFileSync(join(world.dataDir, "downloads/agent-config.json"), "utf8")));
  const allowed = /允许的网站：([^）]*)）/.exec(agentOut)?.[1]?.split("、") ?? [];
  assert.deepEqual(allowed.sort(), [world.server!.url, keptPortalOrigin].sort(), `the institution's server and portal, from the configuration the .deb brought: ${agentOut}`);
  const nextCode = () => new Promise<string>((ok, fail) => {
    const c = codes.shift();
    if (c) return ok(c);
    const timer = setTimeout(() => fail(new Error(`no pairing code shown: ${agentOut}${agentErr}`)), 60_000);
    waiting.push((x) => { clearTimeout(timer); ok(x); });
  });

  phase("the agent started in");
  b = await launchChromium();
  const page: Page = b.page;
  await page.goto(`${world.server!.url}/?agent=${agentUrl}`);
  await page.locator("[data-page=pairing]").waitFor();
  await page.fill("#pair-code", await nextCode());
  await page.click("[data-page=pairing] button[type=submit]");
  const card = page.locator(`article.cert[data-serial='${issued.serial}']`);
  await card.waitFor();
  await card.locator("a.button").click();
  await page.locator("[data-page=renew] .wizard-steps li.current", { hasText: "选择证书" }).waitFor();
  await page.click("[data-page=renew] button.primary");
  await page.locator("[data-page=operation][data-kind=renew]").waitFor();
  // The preview of the certificate now and the one the renewal will write, confirmed with its one primary button.
  await page.locator("[data-input=confirm] [data-preview=renew]").waitFor({ timeout: 120_000 });
  await page.click("[data-input=confirm] [data-action=confirm-yes]");
  await page.locator("[data-input=pin] [data-action=open-pin]").waitFor({ timeout: 120_000 });
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.click("[data-action=open-pin]")]);
  assert.equal(new URL(popup.url()).origin, agentUrl, "the PIN is typed in the agent's own page");
  await popup.locator("#pin").waitFor();
  await popup.fill("#pin", pin);
  await Promise.all([popup.waitForEvent("load"), popup.click("button[type=submit]")]);
  await popup.close();
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 120_000 });
  phase("paired and renewed in Chromium in");
  const renewed = (await result.locator("[data-field=serial]").innerText()).trim();
  assert.match(renewed, /^[0-9a-f]+$/);
  assert.notEqual(renewed, issued.serial);
  assert.deepEqual(cspViolations(b.consoleErrors), []);

  // The key in the root holds the new certificate, as the root's own OpenSC reads it as the holder.
  const listed = inRoot(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "holder-key", "--login", "--pin", pin, "-O"]);
  assert.equal(listed.status, 0, listed.all);
  const objects = parseObjects(listed.stdout);
  assert.ok(objects.certificates.some((c) => c.serialHex === renewed), objects.raw);
  // The server's record: the order completed with that certificate, which is active; the old one superseded.
  const { orders } = await admin<{ orders: Array<{ id: string; state: string; newSerial: string | null }> }>("/orders?holderId=H1");
  const order = orders.find((o) => o.newSerial === renewed);
  assert.ok(order, JSON.stringify(orders));
  assert.equal(order.state, "completed");
  assert.equal((await world.certificate(renewed)).status, "active");
  assert.equal((await world.certificate(issued.serial)).status, "superseded");
});
