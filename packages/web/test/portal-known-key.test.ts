import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { keyArgs, opensslCsr, outboxCodes, runUkeyServer } from "../../server/test/support/fixtures.js";
import { createAgentWorld, type AgentWorld } from "../../agent/test/support/agent-world.js";
import { SoftkeyDir } from "../../agent/test/skf/support/softkey.js";
import { startAgent, type RunningAgent } from "./support/agent.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// Issue 15 part 6 in real Chromium: a signed-in holder whose certificate the
// server recorded on a 4th-generation key (serial PF20FA…), with no key
// plugged in, runs the portal's diagnostics. The portal passes the recorded
// serial to the real agent's doctor (`ukey agent start` on skf-softkey, the
// project's software stand-in for a vendor's SKF library, with no key
// present), which gives that generation's advice from the vendor table, in
// Chinese, and that generation's alone.
let world: AgentWorld;
let keys: SoftkeyDir;
let agent: RunningAgent;
let b: RunningBrowser;
let page: Page;
const recorded = "PF20FA000123";

const shot = (name: string) => join(process.env.UKEY_TEST_SHOTS ?? world.t.dir, name);

before(async () => {
  buildWeb();
  keys = new SoftkeyDir();
  world = createAgentWorld("ukey-portal-known-key-");
  // Issued as the agent reports a key at issuance: the server keeps the key's serial with the certificate.
  const { csr } = opensslCsr(world.t, "h3", keyArgs.p256);
  const issued = runUkeyServer(["issue", "--data-dir", world.dataDir, "--holder", "H3", "--profile", "e2e", "--csr", csr, "--token-serial", recorded, "--json"], world.env);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);
  await world.start();
  agent = await startAgent(world, [], { skf: { library: keys.build.library, dir: keys.dir } });
  b = await launchChromium();
  page = b.page;
});
after(async () => {
  await b?.close();
  await agent?.stop();
  await world?.cleanup();
  keys?.cleanup();
});

test("no key plugged in: the diagnostics give the advice of the key the server recorded (PF20FA, 4th generation), in Chinese", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}`);
  await page.locator("[data-page=pairing]").waitFor();
  await page.fill("#pair-code", (await agent.nextPairingCode()).code);
  await page.click("[data-page=pairing] button[type=submit]");
  await page.locator("[data-page=status]").waitFor();

  // The holder signs in with the customer number and the code sent to the registered phone.
  await page.goto(`${world.server!.url}/#/org`);
  await page.fill("#holder-id", "H3");
  await page.click("[data-form=holder-sign-in] button[type=submit]");
  await page.locator("#holder-code").waitFor();
  let code: string | undefined;
  for (let i = 0; i < 500 && !(code = outboxCodes(world.dataDir, "otp").at(-1)); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(code, "a sign-in code in the outbox");
  await page.fill("#holder-code", code);
  await page.click("[data-form=holder-sign-in] button.primary");
  await page.locator("[data-table=org-certificates]").waitFor();

  await page.goto(`${world.server!.url}/#/diagnostics`);
  await page.locator("[data-page=diagnostics] button.primary").click();
  const result = page.locator("[data-result=doctor]");
  await result.waitFor({ timeout: 120_000 });
  assert.match(await result.locator("[data-check=token]").innerText(), /没有检测到 UKey/);
  const advice = result.locator("[data-check=advice]");
  assert.equal(await advice.count(), 1, "that key's advice alone, not every generation's");
  const text = await advice.innerText();
  assert.match(text, /检测不到 UKey 时/);
  assert.match(text, new RegExp(`您的 UKey（四代蓝牙型 UKey，序列号 ${recorded}）`));
  assert.match(text, /长按电源键关机/);
  assert.match(text, /按住 UKey 上的“上”键/);
  assert.doesNotMatch(text, /C 键/, "not the 3rd generation's advice");
  // Each line carries its own mark (✓ ✗ •): no list bullet before it, and the advice reads as advice, not as a result.
  type Styled = { ownerDocument: { defaultView: { getComputedStyle(e: unknown): { listStyleType: string } } }; classList: { contains(c: string): boolean } };
  assert.equal(await result.locator("ul.checks").evaluate((e) => { const el = e as unknown as Styled; return el.ownerDocument.defaultView.getComputedStyle(el).listStyleType; }), "none");
  assert.equal(await advice.evaluate((e) => { const el = e as unknown as Styled; return el.classList.contains("advice") && !el.classList.contains("ok"); }), true);
  await page.screenshot({ path: shot("diagnostics-known-key.png"), fullPage: true });
  assert.deepEqual(cspViolations(b.consoleErrors), []);
});
