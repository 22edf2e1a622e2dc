import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  addHolder, initialisedDataDir, keyArgs, opensslCsr, outboxCodes, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir,
} from "../../server/test/support/fixtures.js";
import { buildWeb, launchChromium, type RunningBrowser } from "./support/browser.js";

// Seed 003's organisations in the portal, in real Chromium against the real
// server: the organisation signs in with its customer number and the code
// sent to its phone, sees every certificate of its members, and the
// expiring ones are at the top and counted under the bell.
let t: TempDir;
let server: RunningServer;
let b: RunningBrowser;
let dataDir: string;
const serials: Record<string, string> = {};

before(async () => {
  buildWeb();
  t = tempDir("ukey-org-");
  const init = initialisedDataDir(t);
  dataDir = init.dataDir;
  const cfgFile = join(dataDir, "config.json");
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8")) as { profiles: unknown[] };
  cfg.profiles.push({ id: "short", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256"] });
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, init.env, "ORG1", ["--kind", "organisation", "--phone", "13900000009"]).status, 0);
  for (const [id, profile] of [["M1", "short"], ["M2", "personal"]] as const) {
    assert.equal(addHolder(t, dataDir, init.env, id, ["--organisation", "ORG1"]).status, 0);
    const { csr } = opensslCsr(t, id, keyArgs.p256);
    const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", id, "--profile", profile, "--csr", csr, "--json"], init.env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    serials[id] = r.json<{ serial: string }>().serial;
  }
  server = await startUkeyServer(dataDir, init.env);
  b = await launchChromium();
});
after(async () => {
  await b?.close();
  await server?.stop();
  t?.cleanup();
});

test("an organisation signs in with its customer number and a code, sees its members' certificates, the expiring one first and under the bell", async () => {
  const { page } = b;
  await page.goto(`${server.url}/#/org`);
  const form = page.locator("[data-form=holder-sign-in]");
  await form.waitFor();
  await page.fill("#holder-id", "ORG1");
  await page.click("[data-form=holder-sign-in] button[type=submit]");
  await page.locator("#holder-code").waitFor();
  // The page names no phone: the same words whether or not the number is registered.
  assert.match(await form.locator("[data-text=code-sent]").innerText(), /如果该客户号已登记，验证码已发送到登记的手机或邮箱/);
  assert.doesNotMatch(await form.innerText(), /139/);
  // Reminders go to the same outbox: take the last sign-in code (it goes out just after the answer).
  const otps = () => outboxCodes(dataDir, "otp");
  for (let i = 0; i < 500 && otps().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  const code = otps().at(-1)!;
  assert.ok(code, "the last sign-in message has a code");

  await page.fill("#holder-code", "000000" === code ? "111111" : "000000");
  await page.click("[data-form=holder-sign-in] button.primary");
  await page.locator("[data-form=holder-sign-in] .problem").waitFor();
  await page.fill("#holder-code", code);
  await page.click("[data-form=holder-sign-in] button.primary");

  const table = page.locator("[data-table=org-certificates]");
  await table.waitFor();
  const rows = table.locator("tbody tr");
  assert.equal(await rows.count(), 2);
  assert.equal(await rows.first().getAttribute("data-serial"), serials.M1, "the earliest expiry first");
  assert.match(await rows.first().getAttribute("class") ?? "", /warn/);
  await page.locator(`[data-list=expiring] li[data-serial='${serials.M1}']`).waitFor();
  assert.equal(await page.locator(`[data-list=expiring] li[data-serial='${serials.M2}']`).count(), 0);
  assert.equal(await page.locator("header .bell .badge").innerText(), "1");
});

test("without sign-in the holder API's refusal is never a blank page", async () => {
  const { page } = b;
  await page.evaluate(() => (globalThis as unknown as { sessionStorage: { setItem(k: string, v: string): void } }).sessionStorage.setItem("ukey.holderToken", "forged.token.value"));
  await page.goto(`${server.url}/#/org`);
  await page.reload();
  await page.locator("[data-page=org] .problem").waitFor();
  await page.locator("[data-form=holder-sign-in]").waitFor();
});
