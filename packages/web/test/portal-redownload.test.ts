import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { createAgentWorld, type AgentWorld } from "../../agent/test/support/agent-world.js";
import { startGateway, type Gateway } from "../../server/test/delivery-support.js";
import { startAgent, type RunningAgent } from "./support/agent.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// Issue 16, seed 000's 证书下载 after initialising a key: from 我的证书's
// no-certificate state, 1 customer number and ID number, 2 the SMS code (read
// from an SMS gateway on 127.0.0.1 that the real webhook sender posts to),
// 3 the key, then the agent's own download with the PIN in its window; the
// old certificate is superseded. Real server, agent, SoftHSM2 and Chromium.
let world: AgentWorld;
let agent: RunningAgent;
let b: RunningBrowser;
let page: Page;
let gateway: Gateway;
let old: { serial: string; notAfter: string };
let blank: string;
const shot = (name: string) => join(process.env.UKEY_TEST_SHOTS ?? world.t.dir, `redownload-${name}.png`);

before(async () => {
  buildWeb();
  gateway = await startGateway([200]);
  world = createAgentWorld("ukey-portal-redownload-");
  const cfgFile = `${world.dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.profiles.find((p: { id: string }) => p.id === "long").selfServiceRedownload = true;
  cfg.delivery = { sms: { type: "webhook", url: gateway.url, secretFile: "secrets/sms-hmac.key", attempts: 1 } };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  mkdirSync(`${world.dataDir}/secrets`, { recursive: true });
  writeFileSync(`${world.dataDir}/secrets/sms-hmac.key`, "gateway secret for the portal test\n");
  // H3 (phone 15900000005) had this certificate on a key; the key was initialised: a blank key now.
  old = await world.issueOnToken("H3", "long", "p256", world.addToken("before-init"));
  blank = world.addToken("initialised");
  await world.start();
  agent = await startAgent(world);
  b = await launchChromium();
  page = b.page;
});
after(async () => {
  await b?.close();
  await agent?.stop();
  await world?.cleanup();
  await gateway?.close();
});

/** The 6-digit codes the gateway was asked to send to H3's phone. */
const codesSent = () => gateway.requests.map((r) => JSON.parse(r.body) as { to: string; text: string })
  .filter((m) => m.to === "15900000005").map((m) => /\b(\d{6})\b/.exec(m.text)?.[1]).filter((c): c is string => !!c);

/**
 * Text a holder reads in zh-CN: no English words and no raw placeholders.
 * Data is left out: the keys' labels (the select), the certificate's name (its <strong>), and the catalogue code beside "错误代码".
 */
async function chineseOnly(selector: string): Promise<void> {
  const text = await page.locator(selector).evaluate((el) => {
    const c = el.cloneNode(true) as typeof el;
    for (const n of c.querySelectorAll("select, .choice strong")) n.remove();
    return c.textContent ?? "";
  });
  assert.doesNotMatch(text, /\{[a-zA-Z]+\}/, "no raw placeholder");
  assert.doesNotMatch(text.replace(/UKey|[A-Z][A-Z_]{2,}/g, ""), /[A-Za-z]{3,}/, `no English in: ${text}`);
}

test("after initialising a key: 证书重新下载 from 我的证书, ID number, SMS code, the agent's download; the old certificate is superseded", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}`);
  await page.locator("[data-page=pairing]").waitFor();
  await page.fill("#pair-code", (await agent.nextPairingCode()).code);
  await page.click("[data-page=pairing] button[type=submit]");
  await page.locator("[data-page=status]").waitFor();

  // 我的证书: the initialised key holds nothing, and offers the re-download first.
  const empty = page.locator(`section[data-token='${blank}'] [data-no-cert]`);
  await empty.waitFor();
  assert.match(await empty.innerText(), /这把 UKey 中没有证书。[\s\S]*证书重新下载/);
  await page.screenshot({ path: shot("0-status"), fullPage: true });
  await empty.locator("a.button").click();

  // 1 身份验证
  await page.locator("[data-page=redownload] [data-step=identity]").waitFor();
  assert.equal(await page.locator(".wizard-steps li.current").innerText(), "1 身份验证");
  await chineseOnly("[data-page=redownload]");
  await page.fill("#rd-holder", "H3");
  await page.fill("#rd-id", "11010119900307123x");
  await page.screenshot({ path: shot("1-identity"), fullPage: true });
  await page.click("[data-step=identity] button[type=submit]");

  // 2 短信验证: the phone masked; a wrong code says the tries left.
  await page.locator("[data-page=redownload] [data-step=sms]").waitFor();
  assert.match(await page.locator("[data-text=sent-to]").innerText(), /验证码已发送到登记的手机 159\*{5}005。\s*（\d{2}:\d{2} 前有效）/);
  for (let i = 0; i < 500 && codesSent().length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  const code = codesSent()[0]!;
  assert.match(code, /^\d{6}$/);
  await page.fill("#rd-code", code === "000000" ? "000001" : "000000");
  await page.click("[data-step=sms] button[type=submit]");
  const wrong = page.locator(".problem[data-code=SMS_CODE_INVALID]");
  await wrong.waitFor();
  assert.match(await wrong.innerText(), /短信验证码不正确，还可以再试 4 次/);
  await chineseOnly("[data-page=redownload]");
  await page.screenshot({ path: shot("2-sms-wrong"), fullPage: true });
  await page.fill("#rd-code", code);
  await page.click("[data-step=sms] button[type=submit]");

  // 3 下载证书: the certificate (one: chosen), the key from 我的证书, China time.
  await page.locator("[data-page=redownload] [data-step=download]").waitFor();
  assert.equal(await page.locator(".wizard-steps li.current").innerText(), "3 下载证书");
  assert.equal(await page.locator(`input[type=radio][value='${old.serial}']`).isChecked(), true);
  assert.equal(await page.locator("#rd-token").inputValue(), blank);
  assert.match(await page.locator("[data-text=authorized-until]").innerText(), /请在 \d{4}-\d{2}-\d{2} \d{2}:\d{2} 前完成下载。/);
  await chineseOnly("[data-page=redownload]");
  await page.screenshot({ path: shot("3-download"), fullPage: true });
  await page.click("[data-step=download] button[type=submit]");

  // The agent's download: the PIN in its own window, a new key on the key.
  await page.locator("[data-page=operation][data-kind=download]").waitFor();
  // First the preview of the certificate the codes authorize (seed 004 §4.5), confirmed with its one primary button.
  const preview = page.locator("[data-input=confirm] [data-preview=download]");
  await preview.waitFor({ timeout: 120_000 });
  assert.match(await preview.locator("[data-field=name]").first().innerText(), /Holder H3/, "the certificate the codes authorize, by its holder's name");
  await page.click("[data-input=confirm] [data-action=confirm-yes]");
  await page.locator("[data-input=pin] [data-action=open-pin]").waitFor({ timeout: 120_000 });
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.click("[data-action=open-pin]")]);
  assert.equal(new URL(popup.url()).origin, agent.url, "the PIN page is the agent's own");
  await popup.locator("#pin").waitFor();
  await popup.fill("#pin", world.hsm.pin);
  await Promise.all([popup.waitForEvent("load"), popup.click("button[type=submit]")]);
  await popup.close();
  await page.locator("[data-result=download]").waitFor({ timeout: 120_000 });
  const serial = (await page.locator("[data-result=download] [data-field=serial]").innerText()).trim();
  assert.notEqual(serial, old.serial);
  assert.match(await page.locator("[data-result=download] [data-field=subject]").innerText(), /H3/);
  await page.screenshot({ path: shot("4-result"), fullPage: true });
  assert.ok(world.objects("initialised").certificates.some((c) => c.serialHex === serial), "the new certificate is on the initialised key");
  const replaced = await world.certificate(old.serial) as unknown as { status: string; revocationReason: string | null };
  assert.deepEqual([replaced.status, replaced.revocationReason], ["superseded", "superseded"]);
  assert.equal((await world.certificate(serial)).status, "active");
  assert.deepEqual(cspViolations(b.consoleErrors), []);
});
