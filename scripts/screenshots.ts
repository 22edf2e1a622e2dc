// Writes docs/screenshots/*.png: the portal's and the console's main pages,
// in real Chromium against the real server and the real agent on SoftHSM2,
// with demo data. Run by hand after changing the pages:
//   node --import tsx scripts/screenshots.ts
// Needs Chromium and a CJK font (Debian: fonts-wqy-microhei or fonts-noto-cjk).
import "reflect-metadata";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import type { Page } from "playwright-core";
import { systemClock } from "@ukey/policy";
import { openServerContext } from "@ukey/server";
import { totpCodeAt } from "../packages/server/src/admin/operator-credentials.js";
import { runUkeyServer } from "../packages/server/test/support/fixtures.js";
import { createAgentWorld } from "../packages/agent/test/support/agent-world.js";
import { startAgent } from "../packages/web/test/support/agent.js";
import { buildWeb, launchChromium } from "../packages/web/test/support/browser.js";

const out = resolve(import.meta.dirname, "../docs/screenshots");
const DAY = 86_400_000;
// Names for the console's demo certificates.
const SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林"];
const GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀兰", "霞"];

const fonts = execFileSync("fc-list", [":lang=zh"], { encoding: "utf8" });
if (!fonts.trim()) throw new Error("no CJK font: install fonts-wqy-microhei (or fonts-noto-cjk) so that the zh-CN pages are legible");

buildWeb();
mkdirSync(out, { recursive: true });
const world = createAgentWorld("ukey-screenshots-");
try {
  // The holders a Chinese page shows: Chinese names, as the institution's records hold them (the test world's holders
  // are named "Holder H1", which would put English on every zh-CN screenshot).
  for (const [id, name, idNumber] of [["P0001", "王晓明", "110101199003071234"], ["P0002", "陈静", "110101198506061228"], ["P0003", "刘洋", "11010119920415123X"]]) {
    const added = runUkeyServer(["holder", "add", "--data-dir", world.dataDir, "--id", id!, "--name", name!, "--id-type", "resident-id",
      "--id-number-file", world.t.write(`${id}.idnum`, `${idNumber}\n`), "--phone", "15900000005", "--json"], world.env);
    assert.equal(added.status, 0, added.stderr);
  }
  const h1 = await world.issueOnToken("P0001", "e2e", "p256");
  await world.issueOnToken("P0002", "long", "p256", world.addToken("office-key"));
  const pw = world.t.write("op.pw", "screenshot operator passphrase\n");
  const op = runUkeyServer(["operator", "add", "--data-dir", world.dataDir, "--id", "olga", "--role", "admin", "--password-file", pw, "--json"], world.env);
  assert.equal(op.status, 0, op.stderr);

  // Demo certificates over the coming year (and a few overdue) for the expiry chart.
  const ctx = await openServerContext(world.dataDir, world.env, systemClock);
  const now = Date.now();
  for (let i = 0; i < 400; i++) {
    const notAfter = now + Math.floor((Math.random() ** 1.6) * 380 - 20) * DAY;
    await ctx.store.certificates.insertImported({
      serial: `5${randomBytes(9).toString("hex")}`, issuerKeyId: "aa11", issuerDn: "CN=Earlier CA", subjectDn: `CN=${SURNAMES[i % SURNAMES.length]}${GIVEN[(i * 7) % GIVEN.length]}`, sans: [],
      notBefore: notAfter - 1825 * DAY, notAfter, status: notAfter < now ? "expired" : "active", revocationReason: null, revokedAt: null,
      spkiSha256: randomBytes(32).toString("hex"), kind: "hardware", tokenSerial: null, holderId: "P0002", profileId: "personal",
      der: Buffer.from([0x30, 0x00]), createdAt: now, updatedAt: now,
    });
  }
  await ctx.close();

  // Installers as an institution publishes them (demo bytes of typical sizes), so the download page has its button.
  const installers = [["ukey-agent_0.1.0_amd64.deb", 27.4], ["ukey-agent-0.1.0-x64.msi", 31.2], ["ukey-0.1.0-win-x64.exe", 78.5]] as const;
  const published = runUkeyServer(["downloads", "publish", "--data-dir", world.dataDir, "--agent-version", "0.1.0", "--json",
    ...installers.flatMap(([name, mb]) => ["--file", world.t.write(name, randomBytes(Math.round(mb * 1_048_576)))])], world.env);
  assert.equal(published.status, 0, published.stderr);

  const server = await world.start();
  const agent = await startAgent(world);
  const b = await launchChromium();
  const page = b.page;
  const shot = async (p: Page, name: string) => {
    await p.waitForTimeout(300);
    await p.screenshot({ path: join(out, `${name}.png`), fullPage: false });
    console.log(`docs/screenshots/${name}.png`);
  };
  try {
    // The download page as a Windows holder sees it.
    const windows = await b.browser.newContext({
      locale: "zh-CN", viewport: { width: 1200, height: 1000 },
      userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
    });
    const wpage = await windows.newPage();
    await wpage.goto(`${server.url}/?agent=http://127.0.0.1:9`);
    await wpage.locator("[data-page=agent-absent] a.button.primary").waitFor();
    await shot(wpage, "portal-agent-absent");
    // An agent older than the portal needs: a stand-in answers hello as version 0.0.9 would.
    const old = createServer((_req, res) => {
      res.setHeader("access-control-allow-origin", server.url);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ agent: "ukey-agent", version: "0.0.9", protocol: 1, paired: false }));
    });
    await new Promise<void>((r) => old.listen(0, "127.0.0.1", r));
    await wpage.goto(`${server.url}/?agent=http://127.0.0.1:${(old.address() as AddressInfo).port}`);
    await wpage.locator("[data-page=agent-outdated] a.button.primary").waitFor();
    await shot(wpage, "portal-agent-outdated");
    old.close();
    await windows.close();
    // Chrome's local network question, for a portal on a public address: explained first, then refused (headless refuses every prompt).
    const publicOrigin = `http://portal.bank.example:${server.http}`;
    const lb = await launchChromium({
      args: ["--host-resolver-rules=MAP portal.bank.example 127.0.0.1", `--ip-address-space-overrides=127.0.0.1:${server.http}=public`, `--unsafely-treat-insecure-origin-as-secure=${publicOrigin}`],
    });
    try {
      await lb.page.goto(`${publicOrigin}/?agent=${agent.url}`);
      await lb.page.locator("[data-page=lna-explain]").waitFor();
      await shot(lb.page, "portal-local-network");
      await lb.page.click("[data-page=lna-explain] button.primary");
      await lb.page.locator("[data-page=lna-blocked]").waitFor();
      await shot(lb.page, "portal-local-network-blocked");
    } finally {
      await lb.close();
    }

    await page.goto(`${server.url}/?agent=${agent.url}`);
    await page.locator("[data-page=pairing]").waitFor();
    await shot(page, "portal-pairing");
    await page.fill("#pair-code", (await agent.nextPairingCode()).code);
    await page.click("[data-page=pairing] button[type=submit]");
    await page.locator(`article.cert[data-serial='${h1.serial}']`).waitFor();
    await shot(page, "portal-status");

    await page.locator(`article.cert[data-serial='${h1.serial}'] a.button`).click();
    await page.click("[data-page=renew] button.primary");
    await page.locator("[data-input=confirm] [data-preview=renew]").waitFor();
    await shot(page, "portal-renewal-preview");
    await page.click("[data-input=confirm] [data-action=confirm-yes]");
    await page.locator("[data-input=pin]").waitFor();
    await shot(page, "portal-renewal-pin");
    const [popup] = await Promise.all([page.waitForEvent("popup"), page.click("[data-action=open-pin]")]);
    await popup.setViewportSize({ width: 520, height: 640 });
    await popup.locator("#pin").waitFor();
    await shot(popup, "agent-pin-window");
    await popup.fill("#pin", world.hsm.pin);
    await popup.click("button[type=submit]");
    await page.locator("[data-result=renew]").waitFor({ timeout: 120_000 });
    await popup.close().catch(() => undefined);
    await shot(page, "portal-renewal-result");

    await page.goto(`${server.url}/?agent=${agent.url}#/help/0116`);
    await page.locator(".lookup-results li").first().waitFor();
    await shot(page, "portal-help");

    await page.goto(`${server.url}/console/`);
    await page.fill("#op-id", "olga");
    await page.fill("#op-pw", "screenshot operator passphrase");
    await page.fill("#op-totp", totpCodeAt(op.json<{ totpSecret: string }>().totpSecret, new Date()));
    await page.click("button[type=submit]");
    await page.locator("[data-chart=expiries] svg").waitFor();
    await page.locator("[data-chart=funnel]").waitFor();
    await shot(page, "console-dashboard");
    await page.goto(`${server.url}/console/#/certificates`);
    await page.locator("[data-table=certificates]").waitFor();
    await shot(page, "console-certificates");
    await page.goto(`${server.url}/console/#/enrolments`);
    await page.fill("input[name=holderId]", "P0003");
    await page.click("form.filters button[type=submit]");
    await page.locator(".print-slip").waitFor();
    await shot(page, "console-enrolment");
    await page.goto(`${server.url}/console/#/profiles`);
    await page.locator("[data-profile] img.timeline").first().waitFor();
    await shot(page, "console-profiles");
    await page.goto(`${server.url}/console/#/audit`);
    await page.click("[data-action=verify]");
    await page.locator("[data-verify=ok]").waitFor();
    await shot(page, "console-audit");
  } finally {
    await b.close();
    await agent.stop();
  }
} finally {
  await world.cleanup();
}
