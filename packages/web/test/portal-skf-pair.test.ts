import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { createAgentWorld, type AgentWorld } from "../../agent/test/support/agent-world.js";
import { SkfBackend, skfMarks } from "../../agent/src/keys/skf-backend.js";
import { SoftkeyDir } from "../../agent/test/skf/support/softkey.js";
import { enablePairs, issuePair, opensslSerialOf, opensslVerifySm2 } from "../../agent/test/skf/support/pairs.js";
import { startAgent, type RunningAgent } from "./support/agent.js";
import { shortSerial } from "@ukey/policy";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// Issue 15 part 7: an SM2 signing + encryption pair renewed through the portal in real Chromium, with the real
// agent on the software SKF key (skf-softkey, the project's stand-in for a vendor's GM/T 0016 library) and the
// real server with an SM2 CA and its key management centre. Afterwards the key holds the new pair in one
// container beside the old pair (its encryption key kept), and OpenSSL verifies both new certificates.
let world: AgentWorld;
let keys: SoftkeyDir;
let agent: RunningAgent;
let b: RunningBrowser;
let page: Page;
let old: { oldSign: string; oldEnc: string; oldContainer: string };
const serial = "SKFPORTAL0000001";
const pin = "123456";

const shot = (name: string) => join(process.env.UKEY_TEST_SHOTS ?? world.t.dir, name);

before(async () => {
  buildWeb();
  keys = new SoftkeyDir();
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  world = createAgentWorld("ukey-portal-skf-", { caAlgorithm: "sm2" });
  enablePairs(world);
  keys.create("portal", { serial, userPin: pin, adminPin: "87654321", label: "Zhang San" });
  const backend = await SkfBackend.open(keys.build.library);
  try {
    old = await issuePair(world, backend, serial, pin);
  } finally {
    await backend.close();
  }
  await world.start();
  agent = await startAgent(world, [], { skf: { library: keys.build.library, dir: keys.dir } });
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
  keys?.cleanup();
});

test("an SM2 pair on an SKF key renewed in the portal: preview, PIN in the agent's window, the new pair in one container", async () => {
  const card = page.locator(`article.cert[data-serial='${old.oldSign}']`);
  await card.waitFor({ timeout: 60_000 });
  // The pair's encryption certificate is shown as such, without a renewal of its own.
  const encCard = page.locator(`article.cert[data-serial='${old.oldEnc}']`);
  assert.match(await encCard.locator("[data-pair-half=encryption]").innerText(), /加密证书/);
  assert.equal(await encCard.locator("a.button").count(), 0, "no separate renewal for the encryption half");
  assert.equal(await encCard.locator(".window").count(), 0, "no renewal-window advice on the encryption half: its signing card says when");
  assert.equal(await card.locator(".window").count(), 1, "the signing card keeps its window");
  await page.screenshot({ path: shot("skf-pair-status.png"), fullPage: true });
  await card.locator("a.button").click();
  await page.locator("[data-page=renew]").waitFor();
  await page.click("[data-page=renew] button.primary");
  const preview = page.locator("[data-input=confirm] [data-preview=renew]");
  await preview.waitFor({ timeout: 120_000 });
  assert.match(await preview.innerText(), /加密证书/, "the preview names the encryption certificate of the pair");
  await page.screenshot({ path: shot("skf-pair-preview.png"), fullPage: true });
  await page.click("[data-input=confirm] [data-action=confirm-yes]");
  await page.locator("[data-input=pin] [data-action=open-pin]").waitFor({ timeout: 120_000 });
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.click("[data-action=open-pin]")]);
  assert.equal(new URL(popup.url()).origin, agent.url, "the PIN page is the agent's own");
  await popup.fill("#pin", pin);
  await Promise.all([popup.waitForEvent("load"), popup.click("button[type=submit]")]);
  await popup.close();
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 180_000 });
  const renewed = await result.locator("[data-field=serial]").innerText();
  assert.notEqual(renewed, old.oldSign);
  // The pair's new encryption certificate is on the result page too, under its own heading.
  const encResult = result.locator("[data-result-half=encryption]");
  assert.match(await encResult.locator("h3").innerText(), /加密证书/);
  const renewedEnc = await encResult.locator("[data-field=encryption-serial]").innerText();
  assert.notEqual(renewedEnc, renewed);
  // The progress log names the certificates by their serial's last digits, as the status card does, never in full.
  const log = await page.locator("ol.progress-log").innerText();
  assert.ok(!log.includes(renewed) && !log.includes(old.oldSign), `no whole serial in the progress log: ${log}`);
  assert.match(log, new RegExp(`序列号尾号 ${shortSerial(renewed)}`));
  await page.screenshot({ path: shot("skf-pair-renewed.png"), fullPage: true });
  assert.deepEqual(cspViolations(b.consoleErrors), []);

  const containers = keys.show("portal").applications[0]!.containers;
  const names = containers.map((c) => c.name);
  assert.equal(names.length, 2, `the old pair and the new one: ${JSON.stringify(names)}`);
  assert.ok(!names.some((n) => skfMarks.isMark(n)), "no mark left");
  const fresh = containers.find((c) => c.name !== old.oldContainer)!;
  assert.ok(fresh.name.startsWith(skfMarks.keyPrefix));
  assert.equal(opensslSerialOf(fresh.signCertificate), renewed.toLowerCase());
  assert.ok(fresh.encPublicKey && fresh.encCertificate, "the new encryption key and certificate");
  assert.equal(opensslSerialOf(fresh.encCertificate), renewedEnc.toLowerCase(), "the result page's encryption certificate is the one on the key");
  const kept = containers.find((c) => c.name === old.oldContainer)!;
  assert.equal(opensslSerialOf(kept.encCertificate), old.oldEnc.toLowerCase(), "the old encryption certificate and key stay");
  const issuing = readFileSync(`${world.dataDir}/ca/issuing.cer.pem`, "utf8");
  opensslVerifySm2(world, fresh.signCertificate, issuing);
  opensslVerifySm2(world, fresh.encCertificate, issuing);
});
