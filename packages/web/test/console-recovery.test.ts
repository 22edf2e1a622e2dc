import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { systemClock } from "@ukey/policy";
import type { Page } from "playwright-core";
import { totpCodeAt } from "../../server/src/admin/operator-credentials.js";
import { LocalKmc } from "../../server/src/kmc/key-management-centre.js";
import { createKmcMasterKeyFile } from "../../server/src/kmc/kmc-master-key.js";
import { openServerContext } from "../../server/src/server-context.js";
import {
  addHolder, initialisedDataDir, openssl, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir,
} from "../../server/test/support/fixtures.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// Issue 13 part 5 in the console, in real Chromium against the real server process: an operator opens a key
// recovery and is shown no way to approve it (and the server refuses if she tries anyway); a second person, an
// auditor in another tab, sees it pending and approves it, and gets the download slip; dates in China time.
let t: TempDir;
let server: RunningServer;
let b: RunningBrowser;
const secrets: Record<string, string> = {};
const passwords: Record<string, string> = { olga: "olga's long passphrase 42", audrey: "audrey reads the audit log" };

before(async () => {
  buildWeb();
  t = tempDir("ukey-console-recovery-");
  const { dataDir, env } = initialisedDataDir(t);
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  for (const [id, role] of [["olga", "operator"], ["audrey", "auditor"]] as const) {
    const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", id, "--role", role, "--password-file", t.write(`${id}.pw`, `${passwords[id]}\n`), "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    secrets[id] = r.json<{ totpSecret: string }>().totpSecret;
  }
  // Two encryption keys escrowed for H1 by the KMC, as its earlier SM2 pairs left them.
  const ctx = await openServerContext(dataDir, env, systemClock);
  try {
    const kmc = new LocalKmc({ store: ctx.store, masterKey: await createKmcMasterKeyFile(t.path("kmc.json"), "the KMC's own passphrase"), clock: ctx.clock });
    assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", t.path("old.pem")]).status, 0);
    assert.equal(openssl(["pkey", "-in", t.path("old.pem"), "-pubout", "-outform", "DER", "-out", t.path("old.der")]).status, 0);
    for (let i = 0; i < 2; i++) await kmc.issueEncryptionKey({ holderId: "H1", holderSigningSpki: readFileSync(t.path("old.der")), actor: "holder:H1" });
  } finally {
    await ctx.close();
  }
  server = await startUkeyServer(dataDir, env);
  b = await launchChromium();
});
after(async () => {
  await b?.close();
  await server?.stop();
  t?.cleanup();
});

async function signIn(page: Page, id: string): Promise<void> {
  await page.goto(`${server.url}/console/`);
  await page.fill("#op-id", id);
  await page.fill("#op-pw", passwords[id]!);
  await page.fill("#op-totp", totpCodeAt(secrets[id]!, new Date()));
  await page.click("button[type=submit]");
  await page.locator("[data-page=dashboard]").waitFor();
}

/** The console tab's session token (sessionStorage: one per tab). */
const tokenIn = (p: Page) => p.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem("ukey.adminToken"));

/** "YYYY-MM-DD HH:MM" in Asia/Shanghai. */
const chinaTime = (ms: number) => new Date(ms + 8 * 3_600_000).toISOString().slice(0, 16).replace("T", " ");

test("the requester cannot approve her own key recovery, in the console or over the API; an auditor in another tab can, and gets the slip", async () => {
  const { page } = b;
  await signIn(page, "olga");
  // The holder's page lists the escrowed keys and leads to a recovery request for that holder.
  await page.goto(`${server.url}/console/#/holders/H1`);
  await page.locator("[data-table=escrows] tr[data-escrow]").first().waitFor();
  assert.equal(await page.locator("[data-table=escrows] tr[data-escrow]").count(), 2);
  await page.click("[data-action=recover-keys]");
  await page.locator("[data-page=recoveries] h1", { hasText: "密钥恢复" }).waitFor();
  assert.match(await page.locator("[data-page=recoveries] p.hint").first().innerText(), /两个人/);
  assert.equal(await page.inputValue("form[data-form=open-recovery] input[name=holderId]"), "H1", "the holder is filled in");
  await page.fill("form[data-form=open-recovery] input[name=reason]", "UKey 丢失，补办新 UKey");
  await page.click("form[data-form=open-recovery] button[type=submit]");
  const row = page.locator("[data-table=recoveries] tr[data-status=pending]");
  await row.waitFor();
  const id = (await row.getAttribute("data-recovery"))!;
  assert.match(await row.innerText(), /待批准/);
  assert.equal(await row.locator("[data-action=approve]").count(), 0, "no approve button for the requester");
  assert.match(await row.locator("[data-note=own-request]").innerText(), /须由另一人批准/);
  // Past the page: the server refuses the requester's approval with the catalogue's words.
  const own = await fetch(`${server.url}/api/v1/admin/kmc-recoveries/${id}/approve`, { method: "POST", headers: { authorization: `Bearer ${await tokenIn(page)}` } });
  assert.deepEqual([own.status, (await own.json() as { code: string }).code], [403, "KMC_RECOVERY_SAME_PERSON"]);

  // The second person, in a tab of her own (sessions are per tab).
  const other = await b.context.newPage();
  await signIn(other, "audrey");
  await other.click("a[href='#/recoveries']");
  const theirs = other.locator(`[data-table=recoveries] tr[data-recovery='${id}']`);
  await theirs.waitFor();
  assert.equal(await other.locator("form[data-form=open-recovery]").count(), 0, "an auditor cannot open one");
  const rec = await (await fetch(`${server.url}/api/v1/admin/kmc-recoveries/${id}`, { headers: { authorization: `Bearer ${await tokenIn(other)}` } })).json() as { requestedAt: number; expiresAt: number };
  const cells = await theirs.locator("td").allInnerTexts();
  assert.equal(cells[3], "olga");
  assert.equal(cells[4], chinaTime(rec.requestedAt), "China time");
  assert.equal(cells[5], chinaTime(rec.expiresAt));
  await theirs.locator("[data-action=approve]").click();
  const slip = other.locator(`[data-recovery-slip='${id}']`);
  await slip.waitFor();
  assert.match(await slip.innerText(), /密钥恢复下载凭条/);
  const reference = await slip.locator("[data-field=reference]").innerText();
  const code = await slip.locator("[data-field=code]").innerText();
  await other.locator(`[data-table=recoveries] tr[data-recovery='${id}'][data-status=released]`).waitFor();
  assert.match(await other.locator(`[data-table=recoveries] tr[data-recovery='${id}']`).innerText(), /已批准，待下载[\s\S]*audrey/);

  // The slip's codes are a two-code download's.
  const check = await fetch(`${server.url}/api/v1/downloads/check`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ referenceNumber: reference, authorizationCode: code }) });
  assert.equal(check.status, 200, await check.text());

  // English too.
  await other.click("button.lang");
  await other.locator("[data-page=recoveries] h1", { hasText: "Key recovery" }).waitFor();
  assert.match(await other.locator(`[data-table=recoveries] tr[data-recovery='${id}']`).innerText(), /approved, awaiting download/);
  await other.click("button.lang");
  assert.deepEqual(cspViolations(b.consoleErrors), []);
  await other.close();
});
