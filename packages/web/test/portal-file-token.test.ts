import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { createAgentWorld, type AgentWorld } from "../../agent/test/support/agent-world.js";
import { fileTokenSerial } from "../../agent/src/keys/pkcs12-backend.js";
import { startAgent, type RunningAgent } from "./support/agent.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// Issue 16, problem 1: the demo's file token (`ukey agent start --pkcs12
// FILE`) in the portal, in real Chromium with the real agent and server. The
// file's certificates are encrypted: the page says so and offers to type the
// PIN in the agent's own window (never in the page); then it lists the
// certificate and renews it.
let world: AgentWorld;
let agent: RunningAgent;
let b: RunningBrowser;
let page: Page;
let file: string;
let issued: { serial: string };

/** Where a screenshot goes: $UKEY_TEST_SHOTS to look at them, else the test's own directory. */
const shot = (name: string) => join(process.env.UKEY_TEST_SHOTS ?? world.t.dir, name);

/** Opens the agent's PIN pop-up from the portal and types the PIN in it. */
async function enterPin(pin: string): Promise<void> {
  await page.locator("[data-input=pin] [data-action=open-pin]").waitFor();
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.click("[data-action=open-pin]")]);
  assert.equal(new URL(popup.url()).origin, agent.url, "the PIN page is the agent's own");
  assert.match(await popup.locator("h1").innerText(), /证书文件密码/);
  await popup.fill("#pin", pin);
  await Promise.all([popup.waitForEvent("load"), popup.click("button[type=submit]")]);
  await popup.close();
}

before(async () => {
  buildWeb();
  world = createAgentWorld("ukey-portal-file-");
  file = world.t.path("demo-token.p12");
  issued = await world.issueInFile("H1", "e2e", file);
  await world.start();
  agent = await startAgent(world, [], { pkcs12: file });
  b = await launchChromium();
  page = b.page;
  await page.goto(`${world.server!.url}/?agent=${agent.url}`);
  await page.locator("[data-page=pairing]").waitFor();
  await page.fill("#pair-code", (await agent.nextPairingCode()).code);
  await page.click("[data-page=pairing] button[type=submit]");
  await page.locator("[data-page=status]").waitFor();
});
after(async () => {
  await b?.close();
  await agent?.stop();
  await world?.cleanup();
});

test("issue 16 (1): the status page asks for the file's PIN in the agent's window, then lists its certificate", async () => {
  const hidden = page.locator(`[data-hidden-certs='${fileTokenSerial(file)}']`);
  await hidden.waitFor();
  assert.doesNotMatch(await page.locator("[data-page=status]").innerText(), /没有证书/, "a file not yet opened is not called empty");
  assert.equal(await page.locator("input[type=password]").count(), 0, "the portal has no PIN field of its own");
  await page.screenshot({ path: shot("file-token-hidden.png"), fullPage: true });
  await hidden.locator("button.primary").click();
  await page.locator("[data-page=operation][data-kind=read-certificates]").waitFor();
  await enterPin(world.hsm.pin);
  // Done, the portal goes back to the status page by itself, now with the certificate.
  const card = page.locator(`article.cert[data-serial='${issued.serial}']`);
  await card.waitFor({ timeout: 60_000 });
  assert.equal(await card.locator(".window").getAttribute("data-window"), "open");
  // Seed 004's login rule: inside the notice period the holder is told from which day logins will be refused.
  assert.match(await card.locator("[data-login-refused-from]").innerText(), /从 \d{4}-\d{2}-\d{2} 起，系统将拒绝用这张证书登录/);
  assert.equal(await page.locator("[data-hidden-certs]").count(), 0);
});

test("issue 16 (1, 6): a file token's renewal in the portal; the agent stopped midway leaves a page that starts it again", async () => {
  await page.locator(`article.cert[data-serial='${issued.serial}'] a.button`).click();
  await page.locator("[data-page=renew]").waitFor();
  assert.equal(await page.locator(`input[type=radio][value$='/${issued.serial}']`).isChecked(), true);
  await page.click("[data-page=renew] button.primary");
  // Issue 16: the file's certificates were read (status page): the preview comes before the PIN.
  await page.locator("[data-page=operation][data-kind=renew] [data-input=confirm] [data-preview=renew]").waitFor();
  await page.click("[data-input=confirm] [data-action=confirm-yes]");
  await page.locator("[data-page=operation][data-kind=renew] [data-input=pin]").waitFor();

  // The holder's agent stops while it waits for the PIN, and comes back (same address, same pairing).
  const port = Number(new URL(agent.url).port);
  await agent.stop();
  await page.locator(".problem[data-code=AGENT_NOT_RUNNING]").waitFor();
  agent = await startAgent(world, [], { pkcs12: file, home: agent.home, port });
  const lost = page.locator("[data-page=operation][data-state=lost]");
  await lost.waitFor({ timeout: 60_000 });
  assert.equal(await lost.locator(".problem[data-code=OPERATION_NOT_FOUND]").count(), 1);
  assert.equal(await lost.locator("[role=status]", { hasText: "正在进行" }).count(), 0, "nothing says it is still running");
  assert.equal(await lost.locator("[data-input=pin]").count(), 0);
  assert.equal(await lost.locator(".wizard-steps li.current.failed").count(), 1, "the step bar shows where it stopped, not a step in progress");
  await page.screenshot({ path: shot("operation-lost.png"), fullPage: true });
  await lost.locator("button.primary", { hasText: "重新开始" }).click();
  await page.locator("[data-page=operation][data-state=needs-input][data-kind=renew]").waitFor();
  // The restarted agent sees the file's certificates only with its password: the preview comes after it, still before anything changes.
  await enterPin(world.hsm.pin);
  await page.locator("[data-input=confirm] [data-preview=renew]").waitFor({ timeout: 120_000 });
  await page.click("[data-input=confirm] [data-action=confirm-yes]");
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 120_000 });
  const renewed = await result.locator("[data-field=serial]").innerText();
  assert.notEqual(renewed, issued.serial);
  await page.screenshot({ path: shot("file-token-renewed.png"), fullPage: true });
  assert.deepEqual(cspViolations(b.consoleErrors), []);
});
