import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Browser, Page } from "playwright-core";
import { runUkeyServer, startUkeyServer, freePort } from "../../server/test/support/fixtures.js";
import { createAgentWorld, type AgentWorld } from "../../agent/test/support/agent-world.js";
import { startAgent, type RunningAgent } from "./support/agent.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// Issue 14, part 5: the portal's page for a holder without the agent is a
// download page. Real server with installers published by `ukey-server
// downloads publish`, real Chromium with a Linux and a Windows user agent,
// the real agent started while the page is open, an agent older than the
// published version, and Chromium's own local network permission (the page
// served under a host name Chromium treats as a public site).
let world: AgentWorld;
let b: RunningBrowser;
let agent: RunningAgent | undefined;
let agentPort: number;
const lnaHost = "portal.bank.example";
let lnaOrigin: string;

const uas = {
  linux: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
  windows: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
};

/** The installers as a build would make them: distinct sizes, random bytes (so each checksum is its own). */
const files = {
  deb: { name: "ukey-agent_0.1.0_amd64.deb", bytes: randomBytes(1_572_864 + 12_345) },
  msi: { name: "ukey-agent-0.1.0-x64.msi", bytes: randomBytes(2_621_440 + 777) },
  exe: { name: "ukey-0.1.0-win-x64.exe", bytes: randomBytes(3_670_016 + 99) },
};
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const mb = (b: Buffer) => `${(b.length / 1_048_576).toFixed(1)} MB`;


/** `ukey-server downloads publish` (the server must be stopped: it holds the embedded database). */
function publish(version: string, withFiles = true): void {
  const args = ["downloads", "publish", "--data-dir", world.dataDir, "--agent-version", version, "--json"];
  if (withFiles) for (const f of Object.values(files)) args.push("--file", world.t.write(f.name, f.bytes));
  const r = runUkeyServer(args, world.env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
}

/** A page in a fresh context with this user agent (zh-CN, like the other portal tests). */
async function pageAs(browser: Browser, ua: string): Promise<Page> {
  const ctx = await browser.newContext({ locale: "zh-CN", userAgent: ua, viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const page = await ctx.newPage();
  page.setDefaultTimeout(60_000);
  return page;
}

before(async () => {
  buildWeb();
  world = createAgentWorld("ukey-portal-downloads-");
  publish("0.1.0");
  await world.start();
  agentPort = await freePort();
  lnaOrigin = `http://${lnaHost}:${world.server!.http}`;
  b = await launchChromium();
});
after(async () => {
  await b?.close();
  await agent?.stop();
  await world?.cleanup();
});

test("Linux: one button for the .deb with its version, size in MB and SHA-256; other systems and the command only when asked", async () => {
  const page = await pageAs(b.browser, uas.linux);
  await page.goto(`${world.server!.url}/?agent=http://127.0.0.1:${agentPort}`);
  const absent = page.locator("[data-page=agent-absent]");
  await absent.waitFor();
  const primary = absent.locator("a.button.primary");
  await primary.waitFor();
  assert.equal(await primary.count(), 1, "one primary button");
  assert.equal(await primary.getAttribute("href"), `/downloads/${files.deb.name}`);
  assert.match(await primary.innerText(), /下载 ukey 代理（Linux 版）/);
  const offer = absent.locator(".offer");
  assert.match(await offer.innerText(), new RegExp(`版本 0\\.1\\.0 · ${mb(files.deb.bytes).replace(".", "\\.")}`));
  assert.equal(await offer.locator("[data-field=sha256]").innerText(), sha(files.deb.bytes));
  // The three steps, numbered.
  assert.deepEqual((await absent.locator(".install-steps li strong").allInnerTexts()).map((s) => s.replace(/\s+/g, " ").trim()), ["1 下载", "2 安装", "3 回到本页"]);
  // The button downloads exactly the file whose checksum it shows.
  const [download] = await Promise.all([page.waitForEvent("download"), primary.click()]);
  assert.equal(download.suggestedFilename(), files.deb.name);
  assert.equal(sha(readFileSync(await download.path())), sha(files.deb.bytes));
  // Other platforms one click away.
  assert.equal(await absent.locator(".other-files").count(), 0);
  await absent.locator("button", { hasText: "其他系统的安装包" }).click();
  assert.deepEqual((await absent.locator(".other-files li").evaluateAll((els) => els.map((e) => e.getAttribute("data-file")))).sort(), [files.exe.name, files.msi.name].sort());
  // The command line only under "advanced".
  const command = absent.locator("[data-field=command]");
  assert.equal(await command.isVisible(), false, "the command is hidden at first");
  await absent.locator("details.advanced summary").click();
  assert.equal(await command.isVisible(), true);
  assert.equal((await command.innerText()).trim(), `ukey agent start --server ${world.server!.url}`);
  await page.context().close();
});

test("Windows: the button is the MSI (not the bare .exe), with its own size and checksum", async () => {
  const page = await pageAs(b.browser, uas.windows);
  await page.goto(`${world.server!.url}/?agent=http://127.0.0.1:${agentPort}`);
  const primary = page.locator("[data-page=agent-absent] a.button.primary");
  await primary.waitFor();
  assert.equal(await primary.getAttribute("data-file"), files.msi.name);
  assert.match(await primary.innerText(), /Windows 版/);
  const offer = page.locator("[data-page=agent-absent] .offer");
  assert.match(await offer.innerText(), new RegExp(mb(files.msi.bytes).replace(".", "\\.")));
  assert.equal(await offer.locator("[data-field=sha256]").innerText(), sha(files.msi.bytes));
  await page.context().close();
});

test("the agent started while the page is open: the page moves on by itself, without a reload", async () => {
  const page = await pageAs(b.browser, uas.linux);
  await page.goto(`${world.server!.url}/?agent=http://127.0.0.1:${agentPort}`);
  await page.locator("[data-page=agent-absent] a.button.primary").waitFor();
  await page.evaluate(() => { (globalThis as unknown as { stillTheSamePage: boolean }).stillTheSamePage = true; });
  agent = await startAgent(world, [lnaOrigin], { port: agentPort });
  await page.locator("[data-page=pairing]").waitFor({ timeout: 20_000 });
  assert.equal(await page.evaluate(() => (globalThis as unknown as { stillTheSamePage?: boolean }).stillTheSamePage), true, "no reload happened");
  await page.context().close();
});

test("Chrome's local network permission: explained before the first request to 127.0.0.1; refused, how to allow it again", async () => {
  assert.ok(agent, "the agent runs (the test that starts it)");
  // The portal under a host name Chromium takes for a public site, so that it asks before the page may reach 127.0.0.1.
  const lb = await launchChromium({
    args: [`--host-resolver-rules=MAP ${lnaHost} 127.0.0.1`, `--ip-address-space-overrides=127.0.0.1:${world.server!.http}=public`, `--unsafely-treat-insecure-origin-as-secure=${lnaOrigin}`],
  });
  try {
    const page = lb.page;
    await page.goto(`${lnaOrigin}/?agent=${agent.url}`);
    const explain = page.locator("[data-page=lna-explain]");
    await explain.waitFor();
    assert.match(await explain.innerText(), /允许/);
    assert.match(await explain.locator(".lna-box").innerText(), new RegExp(`${lnaHost}.*想要`));
    // Nothing reached for 127.0.0.1 yet: headless Chromium refuses every prompt, so a request would have turned "prompt" into "denied".
    const state = () => page.evaluate(async () => (await (globalThis as unknown as { navigator: { permissions: { query(d: { name: string }): Promise<{ state: string }> } } })
      .navigator.permissions.query({ name: "loopback-network" })).state);
    assert.equal(await state(), "prompt");
    await explain.locator("button.primary").click();
    const blocked = page.locator("[data-page=lna-blocked]");
    await blocked.locator(".problem[data-code=LOCAL_NETWORK_BLOCKED]").waitFor();
    assert.equal(await state(), "denied");
    assert.match(await blocked.innerText(), /网站设置[\s\S]*允许/);
    // The holder allows it in the site settings: the page sees the permission change and carries on to pairing by itself.
    await lb.context.grantPermissions(["local-network-access"], { origin: lnaOrigin });
    await page.locator("[data-page=pairing]").waitFor({ timeout: 20_000 });
  } finally {
    await lb.close();
  }
});

test("an agent older than the published version gets AGENT_OUTDATED with the same download button", async () => {
  assert.ok(agent, "the agent runs (the test that starts it)");
  // The institution publishes 0.2.0; the running agent is 0.1.0.
  const port = world.server!.http;
  await world.stop();
  publish("0.2.0", false);
  world.server = await startUkeyServer(world.dataDir, world.env, ["--port", String(port)]);
  const page = await pageAs(b.browser, uas.windows);
  await page.goto(`${world.server!.url}/?agent=${agent.url}`);
  const outdated = page.locator("[data-page=agent-outdated]");
  const problem = outdated.locator(".problem[data-code=AGENT_OUTDATED]");
  await problem.waitFor();
  assert.match(await problem.innerText(), /0\.1\.0[\s\S]*0\.2\.0/, "both versions");
  const primary = outdated.locator("a.button.primary");
  assert.equal(await primary.getAttribute("href"), `/downloads/${files.msi.name}`);
  assert.match(await outdated.locator(".offer").innerText(), /版本 0\.2\.0/);
  assert.equal(await outdated.locator("[data-field=sha256]").innerText(), sha(files.msi.bytes));
  assert.deepEqual(cspViolations(b.consoleErrors), []);
  await page.context().close();
});
