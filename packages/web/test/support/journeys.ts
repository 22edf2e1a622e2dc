// The holder's three journeys that must work in every browser engine
// (issue 16): the page when no agent answers, a full renewal with the PIN in
// the agent's own window, and a download with the two codes. One body, run by
// portal-journeys.test.ts in each engine through the engine-neutral driver
// (support/engines.ts), with the real server, the real agent (`ukey agent
// start`) and SoftHSM2 tokens. Each test's name starts with its engine.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { totpCodeAt } from "../../../server/src/admin/operator-credentials.js";
import { runUkeyServer, freePort } from "../../../server/test/support/fixtures.js";
import { createAgentWorld, type AgentWorld } from "../../../agent/test/support/agent-world.js";
import { startAgent, type RunningAgent } from "./agent.js";
import { buildWeb, cspViolations } from "./browser.js";
import { launchEngine, type DriverPage, type Engine, type EngineBrowser } from "./engines.js";


/**
 * Registers the journeys' tests for each of `engines` in the calling test
 * file: one server, one agent and one SoftHSM2 token pair per engine (a
 * certificate to renew, a blank key to download onto), then each engine in
 * turn with its own fresh browser, which pairs with the agent anew.
 */
export function journeyTests(engines: readonly Engine[]): void {
  let world: AgentWorld;
  let agent: RunningAgent;
  let adminToken: string;
  let closedPort: number;
  const keys = new Map<Engine, { issued: { serial: string }; token: string; blank: string }>();
  const opPassword = "operator's long passphrase 9";

  async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await fetch(`${world.server!.url}/api/v1/admin${path}`, {
      method, headers: { authorization: `Bearer ${adminToken}`, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const j = await r.json() as T;
    assert.ok(r.ok, `${method} ${path}: ${JSON.stringify(j)}`);
    return j;
  }

  /** Opens the agent's PIN window from the portal and types the PIN there, as the holder does; the window's next page says to go back. */
  async function enterPin(page: DriverPage, pin: string): Promise<void> {
    const engine = page.engine;
    await page.waitFor("[data-input=pin] [data-action=open-pin]", { timeout: 120_000 });
    const popup = await page.clickForPopup("[data-action=open-pin]");
    assert.equal(new URL(await popup.url()).origin, agent.url, `${engine}: the PIN page is the agent's own`);
    await popup.waitFor("#pin");
    await popup.fill("#pin", pin);
    await popup.evaluate("(window.__ukeyBeforeSubmit = true)");
    await popup.click("button[type=submit]");
    await popup.waitForText("body", /此窗口可以关闭/, { timeout: 120_000 });
    assert.equal(await popup.evaluate("window.__ukeyBeforeSubmit === undefined"), true, `${engine}: the PIN went to the agent (a new page)`);
    await popup.close();
  }

  before(async () => {
    buildWeb();
    world = createAgentWorld("ukey-journeys-");
    for (const engine of engines) {
      const token = world.addToken(`renew-${engine}`);
      keys.set(engine, { token, issued: await world.issueOnToken("H1", "e2e", "p256", token), blank: world.addToken(`blank-${engine}`) });
    }
    const pw = world.t.write("op.pw", `${opPassword}\n`);
    const op = runUkeyServer(["operator", "add", "--data-dir", world.dataDir, "--id", "olga", "--role", "operator", "--password-file", pw, "--json"], world.env);
    assert.equal(op.status, 0, op.stdout + op.stderr);
    const server = await world.start();
    const signIn = await fetch(`${server.url}/api/v1/admin/sign-in`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ operatorId: "olga", password: opPassword, totp: totpCodeAt(op.json<{ totpSecret: string }>().totpSecret, new Date()) }),
    });
    assert.equal(signIn.status, 200, await signIn.clone().text());
    adminToken = (await signIn.json() as { token: string }).token;
    closedPort = await freePort();
    agent = await startAgent(world);
  });
  after(async () => {
    await agent?.stop();
    await world?.cleanup();
  });

  for (const engine of engines) describe(engine, () => {
    let b: EngineBrowser;
    let page: DriverPage;
    /** Where a screenshot goes: $UKEY_TEST_SHOTS to look at them, else the test's own directory. */
    const shot = (name: string) => join(process.env.UKEY_TEST_SHOTS ?? world.t.dir, `${engine}-${name}.png`);
    before(async () => {
      b = await launchEngine(engine);
      page = b.page;
    });
    after(async () => {
      await b?.close();
    });

    test(`${engine}: no agent — the page says what happened, what to do with nothing published, and the command under advanced`, async () => {
      await page.goto(`${world.server!.url}/?agent=http://127.0.0.1:${closedPort}`);
      await page.waitFor("[data-page=agent-absent] .problem[data-code=AGENT_NOT_RUNNING]");
      assert.equal(await page.evaluate("document.documentElement.lang"), "zh-CN");
      // This world publishes no installers (portal-downloads.test.ts has them): the page says so and offers no dead link.
      await page.waitFor("[data-page=agent-absent] [data-downloads=none]");
      const text = await page.text("[data-page=agent-absent]");
      assert.match(text, /还没有在本网站提供 ukey 代理的安装包[\s\S]*联系您的机构/);
      assert.equal(await page.count("[data-page=agent-absent] a[download]"), 0, "no dead download link");
      await page.click("[data-page=agent-absent] details.advanced summary");
      assert.equal((await page.text("[data-page=agent-absent] [data-field=command]")).trim(), `ukey agent start --server ${world.server!.url}`);
      assert.equal(await page.value("input[inputmode=numeric]"), String(closedPort));
      await page.screenshot(shot("agent-absent"));
      await b.collectErrors();
      assert.deepEqual(cspViolations(b.consoleErrors), []);
    });

    test(`${engine}: pairs with the agent's code, then a full renewal with the PIN in the agent's window`, async () => {
      await page.goto(`${world.server!.url}/?agent=${agent.url}`);
      await page.waitFor("[data-page=pairing]");
      const shown = await agent.nextPairingCode();
      assert.equal(shown.origin, world.server!.url);
      await page.fill("#pair-code", shown.code);
      await page.click("[data-page=pairing] button[type=submit]");
      await page.waitFor("[data-page=status]");

      await page.click(`article.cert[data-serial='${keys.get(engine)!.issued.serial}'] a.button`);
      await page.waitForText("[data-page=renew] .wizard-steps li.current", "选择证书");
      assert.equal(await page.evaluate(`document.querySelector("input[type=radio][value$='/${keys.get(engine)!.issued.serial}']").checked`), true);
      await page.click("[data-page=renew] button.primary");
      await page.waitFor("[data-page=operation][data-kind=renew]");
      // Issue 16 (seed 004 §3.5): the certificate and the new one are shown before the PIN, with one primary button.
      await page.waitFor("[data-input=confirm] [data-preview=renew]", { timeout: 120_000 });
      assert.equal(await page.text("[data-cert=current] [data-field=name]"), "Holder H1");
      assert.match(await page.text("[data-cert=next] [data-field=validity]"), /^\d{4}-\d{2}-\d{2} — \d{4}-\d{2}-\d{2}（以签发当天为准）$/);
      assert.equal(await page.count("[data-page=operation] button.primary"), 1);
      assert.equal(await page.count("[data-input=pin]"), 0, "no PIN before the holder confirmed");
      await page.screenshot(shot("renew-preview"));
      await page.click("[data-input=confirm] [data-action=confirm-yes]");
      await enterPin(page, world.hsm.pin);
      await page.waitFor("[data-result=renew]", { timeout: 120_000 });
      const serial = await page.text("[data-result=renew] [data-field=serial]");
      assert.match(serial, /^[0-9a-f]+$/);
      assert.notEqual(serial, keys.get(engine)!.issued.serial);
      assert.match(await page.text("[data-result=renew] [data-field=subject]"), /H1/);
      assert.match(await page.text("[data-result=renew] [data-field=validity]"), /^\d{4}-\d{2}-\d{2} — \d{4}-\d{2}-\d{2}$/);
      assert.ok(await page.count(".progress-log li") >= 3, "the steps were shown as they happened");
      assert.match(await page.text(".wizard-steps li.current"), /完成/);
      await page.screenshot(shot("renewed"));
      const objects = world.objects(`renew-${engine}`);
      assert.ok(objects.certificates.some((c) => c.serialHex === serial), objects.raw);
      assert.equal((await api<{ status: string }>("GET", `/certificates/${serial}`)).status, "active");
      await b.collectErrors();
      assert.deepEqual(cspViolations(b.consoleErrors), []);
    });

    test(`${engine}: download onto a blank key with two codes; a wrong code gets its page first and writes nothing`, async () => {
      const created = await api<{ referenceNumber: string; authorizationCode: string }>("POST", "/enrolments", { holderId: "H3", profileId: "e2e" });
      await page.goto(`${world.server!.url}/?agent=${agent.url}#/download?token=${keys.get(engine)!.blank}`);
      await page.waitFor("[data-page=download]");
      assert.equal(await page.value("#dl-token"), keys.get(engine)!.blank);
      await page.fill("#dl-ref", created.referenceNumber);
      await page.fill("#dl-code", "WRONG-CODE-1234");
      await page.click("[data-page=download] button[type=submit]");
      await page.waitFor("[data-page=operation][data-kind=download]");
      // Whether the PIN is asked before the codes are checked is the portal's business; the wrong code's page is what counts.
      await page.waitFor("[data-page=operation][data-state=failed], [data-input=pin]", { timeout: 120_000 });
      if (await page.count("[data-input=pin]")) await enterPin(page, world.hsm.pin);
      const wrong = await page.waitFor(".problem[data-code=DOWNLOAD_CODE_INVALID]", { timeout: 120_000 });
      assert.match(wrong, /参考号或授权码不正确，还可以再试 \d 次/);
      assert.deepEqual(world.objects(`blank-${engine}`).certificates, [], "nothing written");

      await page.goto(`${world.server!.url}/?agent=${agent.url}#/download?token=${keys.get(engine)!.blank}`);
      await page.waitFor("[data-page=download]");
      await page.fill("#dl-ref", created.referenceNumber);
      await page.fill("#dl-code", created.authorizationCode);
      await page.click("[data-page=download] button[type=submit]");
      await page.waitFor("[data-page=operation][data-kind=download]");
      // Seed 004 §4.5: the authorized certificate is shown (H3's) before the PIN.
      await page.waitFor("[data-input=confirm] [data-preview=download]", { timeout: 120_000 });
      assert.equal(await page.text("[data-cert=next] [data-field=name]"), "Holder H3");
      await page.click("[data-input=confirm] [data-action=confirm-yes]");
      await enterPin(page, world.hsm.pin);
      await page.waitFor("[data-result=download]", { timeout: 120_000 });
      const serial = await page.text("[data-result=download] [data-field=serial]");
      assert.match(await page.text("[data-result=download] [data-field=subject]"), /H3/);
      await page.screenshot(shot("downloaded"));
      const objects = world.objects(`blank-${engine}`);
      assert.ok(objects.certificates.some((c) => c.serialHex === serial), objects.raw);
      await b.collectErrors();
      assert.deepEqual(cspViolations(b.consoleErrors), []);
    });
  });
}
