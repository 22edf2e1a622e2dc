import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { totpCodeAt } from "../../server/src/admin/operator-credentials.js";
import { outboxCodes, runUkeyServer } from "../../server/test/support/fixtures.js";
import { createAgentWorld, type AgentWorld } from "../../agent/test/support/agent-world.js";
import { startAgent, type RunningAgent } from "./support/agent.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// The holder's portal in real Chromium with the real agent (`ukey agent
// start`) on SoftHSM2 tokens and the real server: pairing, status in words
// and dates, a full renewal with the PIN in the agent's own pop-up, refusal
// outside the window, an operator's revocation seen by the holder,
// initialisation then download with two codes, and a hostile origin.
let world: AgentWorld;
let agent: RunningAgent;
let b: RunningBrowser;
let page: Page;
let h1: { serial: string };
let long: { serial: string };
let tok2: string;
let tok3: string;
let otpCert: { serial: string };
let resumeCert: { serial: string };
let stepUpCert: { serial: string };
let stepUpToken: string;
let adminToken: string;
let renewedSerial = "";
const opPassword = "operator's long passphrase 9";
const newPin = "246810";

/** The code of the last message of `purpose` in the server's outbox file (reminders may be written there too). */
function lastCode(dataDir: string, purpose: string): string {
  const code = outboxCodes(dataDir, purpose).at(-1);
  assert.ok(code, `no ${purpose} message with a code in the outbox`);
  return code;
}

async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(`${world.server!.url}/api/v1/admin${path}`, {
    method, headers: { authorization: `Bearer ${adminToken}`, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const j = await r.json() as T;
  assert.ok(r.ok, `${method} ${path}: ${JSON.stringify(j)}`);
  return j;
}

/** Opens the agent's PIN pop-up from the portal and types each PIN in it, as the holder does (both fields when a new PIN is set). */
async function enterPins(pins: string[]): Promise<void> {
  await page.locator("[data-input=pin] [data-action=open-pin]").waitFor();
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.click("[data-action=open-pin]")]);
  assert.equal(new URL(popup.url()).origin, agent.url, "the PIN page is the agent's own");
  for (const [i, pin] of pins.entries()) {
    // After a PIN the window shows the next question or says to go back; a new PIN may be asked in one page (two fields) or two.
    if (i > 0 && !(await popup.locator("#pin").count())) break;
    await popup.locator("#pin").waitFor();
    await popup.fill("#pin", pin);
    if (await popup.locator("#pin2").count()) await popup.fill("#pin2", pin);
    await Promise.all([popup.waitForEvent("load"), popup.click("button[type=submit]")]);
  }
  await popup.close();
}

/** Issue 16 (seed 004 §3.5, §4.5): a renewal or download first shows the certificate it will write; the holder confirms with the one primary button. */
async function confirmPreview(kind: "renew" | "download"): Promise<void> {
  await page.locator(`[data-input=confirm] [data-preview=${kind}]`).waitFor({ timeout: 120_000 });
  await page.click("[data-input=confirm] [data-action=confirm-yes]");
}

before(async () => {
  buildWeb();
  world = createAgentWorld("ukey-portal-agent-");
  h1 = await world.issueOnToken("H1", "e2e", "p256");
  tok2 = world.addToken("second");
  long = await world.issueOnToken("H2", "long", "p256", tok2);
  tok3 = world.addToken("fresh");
  otpCert = await world.issueOnToken("H3", "otp", "p256", world.addToken("otp-key"));
  resumeCert = await world.issueOnToken("H1", "e2e", "p256", world.addToken("resume-key"));
  stepUpToken = world.addToken("stepup-key");
  stepUpCert = await world.importOnToken("OLD1", "stepup", "p256", new Date(Date.now() - 400 * 86_400_000), new Date(Date.now() - 20 * 86_400_000), stepUpToken);
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
  agent = await startAgent(world);
  b = await launchChromium();
  page = b.page;
});
after(async () => {
  await b?.close();
  await agent?.stop();
  await world?.cleanup();
});

test("pairs with the 6-digit code the agent shows; a wrong code gets its page and the right one works", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}`);
  await page.locator("[data-page=pairing]").waitFor();
  const shown = await agent.nextPairingCode();
  assert.equal(shown.origin, world.server!.url);
  const wrong = shown.code === "000000" ? "111111" : "000000";
  await page.fill("#pair-code", wrong);
  await page.click("[data-page=pairing] button[type=submit]");
  const wrongCode = page.locator("[data-page=pairing] .problem[data-code=PAIRING_CODE_INVALID]");
  await wrongCode.waitFor();
  assert.match(await wrongCode.innerText(), /配对码不正确，还可以再试 4 次/, "the pairing code's own words, with the tries left");
  assert.doesNotMatch(await wrongCode.innerText(), /授权码|短信|序号/);
  await page.fill("#pair-code", shown.code);
  await page.click("[data-page=pairing] button[type=submit]");
  await page.locator("[data-page=status]").waitFor();
});

test("status: each certificate in words and dates, the renewal window's dates, renew offered only inside the window", async () => {
  const open = page.locator(`article.cert[data-serial='${h1.serial}']`);
  await open.waitFor();
  assert.match(await open.getAttribute("data-state") ?? "", /^(valid|expiring)$/);
  assert.equal(await open.locator(".window").getAttribute("data-window"), "open");
  assert.match(await open.innerText(), /\d{4}-\d{2}-\d{2} — \d{4}-\d{2}-\d{2}/);
  assert.match(await open.innerText(), /更新期：\d{4}-\d{2}-\d{2} 至 \d{4}-\d{2}-\d{2}/);
  // Issue 16 (10): no raw DN, the serial's last digits (the whole one as a tooltip).
  assert.doesNotMatch(await open.innerText(), /CN=|serialNumber=/);
  assert.equal(await open.locator("[data-field=serial]").getAttribute("title"), h1.serial);
  assert.equal(await open.locator("a.button", { hasText: "更新" }).count(), 1);
  if (await open.getAttribute("data-state") === "expiring") assert.match(await open.getAttribute("class") ?? "", /\bwarn\b/, "red inside the notice period");

  const closed = page.locator(`article.cert[data-serial='${long.serial}']`);
  assert.equal(await closed.locator(".window").getAttribute("data-window"), "not-yet-open");
  assert.match(await closed.locator(".window").innerText(), /尚未开放 · 更新期：\d{4}-\d{2}-\d{2}/);
  assert.equal(await closed.locator("a.button").count(), 0);
});

test("full renewal: choose, PIN in the agent's window, visible progress, then serial, subject and new validity", async () => {
  await page.locator(`article.cert[data-serial='${h1.serial}'] a.button`).click();
  await page.locator("[data-page=renew] .wizard-steps li.current", { hasText: "选择证书" }).waitFor();
  assert.equal(await page.locator(`input[type=radio][value$='/${h1.serial}']`).isChecked(), true);
  await page.click("[data-page=renew] button.primary");
  await page.locator("[data-page=operation][data-kind=renew]").waitFor();
  const preview = page.locator("[data-input=confirm] [data-preview=renew]");
  await preview.waitFor({ timeout: 120_000 });
  assert.equal(await preview.locator("[data-cert=current] [data-field=name]").innerText(), "Holder H1");
  assert.match(await preview.locator("[data-cert=current] [data-field=name]").getAttribute("title") ?? "", /CN=Holder H1/, "the DN only as a tooltip");
  const tail = h1.serial.toUpperCase().slice(-8);
  assert.equal(await preview.locator("[data-cert=current] [data-field=serial]").innerText(), `${tail.slice(0, 4)} ${tail.slice(4)}`);
  assert.equal(await preview.locator("[data-cert=next] [data-field=algorithm]").innerText(), "ECDSA P-256");
  assert.match(await preview.innerText(), /以签发当天为准/);
  assert.doesNotMatch(await preview.innerText(), /CN=|serialNumber=/, "no raw DN on the page");
  assert.equal(await page.locator("[data-page=operation] .wizard-steps li.current").innerText().then((x) => /选择证书/.test(x)), true, "still the choice of the certificate");
  assert.equal(await page.locator("[data-input=pin]").count(), 0, "the PIN only after the holder confirmed");
  await confirmPreview("renew");
  await enterPins([world.hsm.pin]);
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 120_000 });
  renewedSerial = await result.locator("[data-field=serial]").innerText();
  assert.match(renewedSerial, /^[0-9a-f]+$/);
  assert.notEqual(renewedSerial, h1.serial);
  assert.match(await result.locator("[data-field=subject]").innerText(), /H1/);
  assert.match(await result.locator("[data-field=validity]").innerText(), /^\d{4}-\d{2}-\d{2} — \d{4}-\d{2}-\d{2}$/);
  assert.ok(await page.locator(".progress-log li").count() >= 3, "the steps were shown as they happened");
  assert.equal(await page.locator(".wizard-steps li.current").innerText().then((s) => /完成/.test(s)), true);
  const objects = world.objects();
  assert.ok(objects.certificates.some((c) => c.serialHex === renewedSerial), objects.raw);
  const cert = await api<{ status: string }>("GET", `/certificates/${renewedSerial}`);
  assert.equal(cert.status, "active");
});

test("refused outside the window: the server's reason and the date it opens, and nothing changed", async () => {
  const before = world.objects("second");
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/renew?token=${tok2}&cert=${long.serial}`);
  await page.locator("[data-page=renew] [role=note]").waitFor();
  await page.click("[data-page=renew] button.primary");
  await page.locator("[data-page=operation]").waitFor();
  const failed = page.locator("[data-page=operation][data-state=failed]");
  if (!(await failed.count())) {
    await Promise.race([failed.waitFor(), page.locator("[data-input=pin]").waitFor()]);
    if (await page.locator("[data-input=pin]").count()) await enterPins([world.hsm.pin]);
  }
  const problem = page.locator(".problem[data-code=RENEWAL_NOT_YET_OPEN]");
  await problem.waitFor({ timeout: 120_000 });
  assert.match(await problem.innerText(), /\d{4}-\d{2}-\d{2}/);
  const afterObjects = world.objects("second");
  assert.deepEqual(afterObjects.certificates.map((c) => c.serialHex).sort(), before.certificates.map((c) => c.serialHex).sort());
  assert.deepEqual(afterObjects.privateKeys.length, before.privateKeys.length);
});

test("issue 16 (seed 003, 冻结): a certificate on hold says 已冻结 with the remedy, not 已注销; its renewal page offers only the way back", async () => {
  await api("POST", `/certificates/${long.serial}/hold`);
  try {
    await page.goto(`${world.server!.url}/?agent=${agent.url}#/`);
    const card = page.locator(`article.cert[data-serial='${long.serial}']`);
    await card.waitFor();
    assert.equal(await card.getAttribute("data-state"), "on-hold");
    assert.equal(await card.locator(".state").innerText(), "已冻结（暂停使用）");
    assert.match(await card.locator("[data-note=on-hold]").innerText(), /请联系您的机构了解原因；机构解除冻结后，证书即可照常使用/);
    assert.doesNotMatch(await card.innerText(), /已注销/);
    assert.equal(await card.locator("a.button").count(), 0, "no renewal offered");
    await page.goto(`${world.server!.url}/?agent=${agent.url}#/renew?token=${tok2}&cert=${long.serial}`);
    await page.locator("[data-page=renew] [data-note=on-hold]").waitFor();
    assert.equal(await page.locator("[data-page=renew] button.primary").count(), 0, "no start button for a renewal that would be refused");
    assert.equal(await page.locator("[data-page=renew] a.button[href='#/']").count(), 1);
  } finally {
    await api("POST", `/certificates/${long.serial}/hold/release`);
  }
});

test("an operator revokes the renewed certificate and the holder sees it", async () => {
  assert.ok(renewedSerial, "the renewal test ran");
  await api("POST", `/certificates/${renewedSerial}/revoke`, { reason: "keyCompromise" });
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/`);
  const card = page.locator(`article.cert[data-serial='${renewedSerial}']`);
  await card.waitFor();
  assert.equal(await card.getAttribute("data-state"), "revoked");
  assert.match(await card.innerText(), /已注销/);
  assert.equal(await card.locator("a.button").count(), 0);
});

test("initialise a key, then download with two codes; a wrong code gets its page first", async () => {
  const created = await api<{ referenceNumber: string; authorizationCode: string }>("POST", "/enrolments", { holderId: "H3", profileId: "e2e" });
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/initialise?token=${tok3}`);
  await page.locator("[data-page=initialise] .warn").waitFor();
  await page.click("[data-page=initialise] .card button");
  await page.locator("[data-input=confirm] [data-action=confirm-yes]").click();
  // The SO PIN, then the new PIN (twice).
  await enterPins([world.hsm.soPin, newPin, newPin]);
  await page.locator("[data-result=initialise]").waitFor({ timeout: 120_000 });
  await page.click("[data-result=initialise] a.button");

  await page.locator("[data-page=download]").waitFor();
  assert.equal(await page.locator("#dl-token").inputValue(), tok3);
  await page.fill("#dl-ref", created.referenceNumber);
  await page.fill("#dl-code", "WRONG-CODE-1234");
  await page.click("[data-page=download] button[type=submit]");
  await page.locator("[data-page=operation][data-kind=download]").waitFor();
  await Promise.race([page.locator("[data-page=operation][data-state=failed]").waitFor(), page.locator("[data-input=pin]").waitFor()]);
  if (await page.locator("[data-input=pin]").count()) await enterPins([newPin]);
  const wrongDownload = page.locator(".problem[data-code=DOWNLOAD_CODE_INVALID]");
  await wrongDownload.waitFor({ timeout: 120_000 });
  assert.match(await wrongDownload.innerText(), /参考号或授权码不正确，还可以再试 \d 次/, "the download codes' own words, with the tries left");

  await page.goto(`${world.server!.url}/?agent=${agent.url}#/download?token=${tok3}`);
  await page.fill("#dl-ref", created.referenceNumber);
  await page.fill("#dl-code", created.authorizationCode);
  await page.click("[data-page=download] button[type=submit]");
  await page.locator("[data-page=operation][data-kind=download]").waitFor();
  await page.locator("[data-input=confirm] [data-preview=download] [data-cert=next] [data-field=name]", { hasText: "Holder H3" }).waitFor({ timeout: 120_000 });
  await confirmPreview("download");
  await enterPins([newPin]);
  const result = page.locator("[data-result=download]");
  await result.waitFor({ timeout: 120_000 });
  const serial = await result.locator("[data-field=serial]").innerText();
  assert.match(await result.locator("[data-field=subject]").innerText(), /H3/);
  assert.ok(world.objects("fresh", newPin).certificates.some((c) => c.serialHex === serial));
  assert.deepEqual(cspViolations(b.consoleErrors), []);
});

test("verification as the profile asks: ID number (a wrong one first), then the one-time code to the masked phone with a resend countdown", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/`);
  await page.locator(`article.cert[data-serial='${otpCert.serial}'] a.button`).click();
  await page.click("[data-page=renew] button.primary");
  await confirmPreview("renew");
  await enterPins([world.hsm.pin]);
  const idForm = page.locator("[data-input=id-number]");
  await idForm.waitFor({ timeout: 120_000 });
  assert.match(await idForm.innerText(), /居民身份证/);
  await page.fill("#id-number", "110101199001011111");
  await page.click("[data-input=id-number] button[type=submit]");
  await page.locator("[data-input=id-number] .problem[data-code=IDENTITY_MISMATCH]").waitFor();
  await page.fill("#id-number", "11010119900307123X");
  await page.click("[data-input=id-number] button[type=submit]");
  const otp = page.locator("[data-input=one-time-code]");
  await otp.waitFor({ timeout: 120_000 });
  assert.match(await otp.innerText(), /159\*+005/, "the phone is masked");
  assert.match(await otp.locator("[data-action=resend]").innerText(), /\d+ 秒后可重新发送/);
  assert.equal(await otp.locator("[data-action=resend]").isDisabled(), true);
  const code = lastCode(world.dataDir, "otp");
  await page.fill("#otp", code);
  await page.click("[data-input=one-time-code] button[type=submit]");
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 120_000 });
  assert.notEqual(await result.locator("[data-field=serial]").innerText(), otpCert.serial);
});

test("step-up for a long-expired certificate: a QR code and link, approved on a second device with the ID number, then renewed", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/`);
  const card = page.locator(`article.cert[data-serial='${stepUpCert.serial}']`);
  await card.waitFor();
  assert.equal(await card.getAttribute("data-state"), "expired");
  assert.equal(await card.locator(".window").getAttribute("data-window"), "open-step-up");
  await card.locator("a.button").click();
  await page.click("[data-page=renew] button.primary");
  await confirmPreview("renew");
  await enterPins([world.hsm.pin]);
  const stepUp = page.locator("[data-input=step-up]");
  await stepUp.waitFor({ timeout: 120_000 });
  await stepUp.locator("img[data-qr=step-up]").waitFor();
  const link = await stepUp.locator("[data-action=step-up-link]").getAttribute("href");
  assert.match(link ?? "", /\/step-up\/[^/]+$/);

  // The second device: its own browser, the link from the QR code.
  const phone = await b.browser.newContext({ locale: "zh-CN", viewport: { width: 390, height: 800 } });
  const second = await phone.newPage();
  await second.goto(new URL(new URL(link!).pathname, world.server!.url).href);
  await second.locator("[data-page=step-up-approval]").waitFor();
  await second.fill("#su-number", "110101199001011111");
  await second.click("[data-page=step-up-approval] button[type=submit]");
  await second.locator(".problem[data-code=IDENTITY_MISMATCH]").waitFor();
  await second.fill("#su-number", "11010119900307123X");
  await second.click("[data-page=step-up-approval] button[type=submit]");
  await second.locator("[data-result=step-up]").waitFor();
  await phone.close();

  await stepUp.locator("button.primary").click();
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 120_000 });
  assert.notEqual(await result.locator("[data-field=serial]").innerText(), stepUpCert.serial);
});

test("the pairing is withdrawn mid-renewal: the portal pairs again and the same renewal carries on to its result", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/`);
  await page.locator(`article.cert[data-serial='${resumeCert.serial}'] a.button`).click();
  await page.click("[data-page=renew] button.primary");
  await confirmPreview("renew");
  await page.locator("[data-input=pin] [data-action=open-pin]").waitFor();
  const opUrl = page.url();
  assert.match(opUrl, /#\/op\//);
  const unpaired = agent.command(["unpair", world.server!.url]);
  assert.equal(unpaired.status, 0, unpaired.stdout + unpaired.stderr);
  await page.reload();
  await page.locator("[data-page=pairing]").waitFor();
  await page.fill("#pair-code", (await agent.nextPairingCode()).code);
  await page.click("[data-page=pairing] button[type=submit]");
  assert.equal(page.url(), opUrl, "back on the same operation");
  await enterPins([world.hsm.pin]);
  const result = page.locator("[data-result=renew]");
  await result.waitFor({ timeout: 120_000 });
  assert.notEqual(await result.locator("[data-field=serial]").innerText(), resumeCert.serial);
});

test("diagnostics: the agent's doctor, each check with what it found", async () => {
  await page.goto(`${world.server!.url}/?agent=${agent.url}#/diagnostics`);
  const diag = page.locator("[data-page=diagnostics]");
  await diag.waitFor();
  assert.match(await diag.innerText(), new RegExp(agent.url.replace(/[.]/g, "\\.")));
  await diag.locator("button.primary").click();
  const checks = page.locator("[data-result=doctor] li[data-check]");
  await checks.first().waitFor({ timeout: 120_000 });
  assert.ok(await checks.count() >= 3, await page.locator("main").innerText());
  assert.equal(await page.locator("[data-result=doctor] li[data-check=server].ok").count(), 1, await page.locator("main").innerText());
});

test("a hostile origin cannot use the agent, not even with a token stolen from the portal", async () => {
  const stolen = await page.evaluate((k) => (globalThis as unknown as { localStorage: { getItem(k: string): string | null } }).localStorage.getItem(k), `ukey.agentToken:${agent.url}`);
  assert.ok(stolen, "the portal holds a token");
  const hostile = `http://localhost:${world.server!.http}`;
  const other = await b.context.newPage();
  await other.goto(`${hostile}/?agent=${agent.url}`);
  await other.locator("[data-page=not-allowed] .problem[data-code=ORIGIN_NOT_PAIRED]").waitFor();
  const outcome = await other.evaluate(async ([url, token]) => {
    const f = (globalThis as unknown as { fetch: (u: string, i?: unknown) => Promise<{ status: number }> }).fetch;
    const tries: string[] = [];
    for (const [path, method] of [["/v1/tokens", "GET"], ["/v1/operations", "POST"]]) {
      try {
        const r = await f(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: method === "POST" ? JSON.stringify({ kind: "doctor" }) : undefined });
        tries.push(`read ${r.status}`);
      } catch {
        tries.push("blocked");
      }
    }
    return tries;
  }, [agent.url, stolen] as const);
  assert.deepEqual(outcome, ["blocked", "blocked"]);
  // And what the agent answered the hostile origin, seen outside the browser.
  const direct = await fetch(`${agent.url}/v1/tokens`, { headers: { origin: hostile, authorization: `Bearer ${stolen}` } });
  assert.equal(direct.status, 403);
  assert.equal(direct.headers.get("access-control-allow-origin"), null);
  await other.close();
});
