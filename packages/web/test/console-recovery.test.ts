import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { systemClock } from "@ukey/policy";
import type { Page } from "playwright-core";
import { totpCodeAt } from "../../server/src/admin/operator-credentials.js";
import { createKmcMasterKeyFile } from "../../server/src/kmc/kmc-master-key.js";
import { prepareEncryptionKey } from "../../server/src/renewal/renewal-order-service.js";
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
/** H1's SM2 pair, issued before the server starts. */
const pair = { signing: "", encryption: "", escrowId: "" };

before(async () => {
  buildWeb();
  t = tempDir("ukey-console-recovery-");
  const made = initialisedDataDir(t, "sm2");
  const dataDir = made.dataDir;
  // An SM2 pair profile (gov-supervision) and the KMC's master key file, so that H1 can hold a pair.
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")) as { profiles: unknown[]; kmc?: unknown };
  cfg.profiles.push({ id: "gm", preset: "gov-supervision" });
  cfg.kmc = { masterKey: { type: "file" } };
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  mkdirSync(`${dataDir}/kmc`, { recursive: true, mode: 0o700 });
  await createKmcMasterKeyFile(`${dataDir}/kmc/master-key.json`, "the KMC's own passphrase");
  const env = { ...made.env, UKEY_KMC_PASSPHRASE_FILE: t.write("kmc-pass", "the KMC's own passphrase\n") };
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  for (const [id, role] of [["olga", "operator"], ["audrey", "auditor"]] as const) {
    const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", id, "--role", role, "--password-file", t.write(`${id}.pw`, `${passwords[id]}\n`), "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    secrets[id] = r.json<{ totpSecret: string }>().totpSecret;
  }
  // Two encryption keys escrowed for H1 by the KMC, as its earlier SM2 pairs left them, and a pair of today.
  const ctx = await openServerContext(dataDir, env, systemClock);
  try {
    const kmc = ctx.kmc!.kmc;
    assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", t.path("old.pem")]).status, 0);
    assert.equal(openssl(["pkey", "-in", t.path("old.pem"), "-pubout", "-outform", "DER", "-out", t.path("old.der")]).status, 0);
    for (let i = 0; i < 2; i++) await kmc.issueEncryptionKey({ holderId: "H1", holderSigningSpki: readFileSync(t.path("old.der")), actor: "holder:H1" });
    assert.equal(openssl(["req", "-new", "-key", t.path("old.pem"), "-sm3", "-sigopt", "distid:1234567812345678", "-subj", "/", "-out", t.path("pair.csr")]).status, 0);
    const csr = ctx.ca.verifyCsr(readFileSync(t.path("pair.csr"), "utf8"));
    const profile = (await ctx.store.profiles.get("gm"))!.profile;
    const prepared = await prepareEncryptionKey(kmc, profile, csr, "H1", "operator:test");
    const issued = await ctx.issuance.issuePair({
      holderId: "H1", profileId: "gm", csr, actor: "operator:test", encryption: { spki: prepared.spki, escrowId: prepared.escrowId },
      onIntent: async (r) => { await kmc.recordIn(r, prepared, ctx.clock.now().getTime()); return undefined; },
    });
    Object.assign(pair, { signing: issued.signing.serial, encryption: issued.encryption.serial, escrowId: prepared.escrowId });
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
  assert.equal(await page.locator("[data-table=escrows] tr[data-escrow]").count(), 3);
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

test("the console shows a certificate pair: 签名证书 and 加密证书, each naming the other and the escrow, never key material", async () => {
  // Olga's tab of the first test, still signed in (a TOTP code is good for one sign-in only).
  const { page } = b;
  await page.goto(`${server.url}/console/#/holders/H1`);
  const signing = page.locator(`[data-table=certificates] tr[data-serial='${pair.signing}']`);
  const encryption = page.locator(`[data-table=certificates] tr[data-serial='${pair.encryption}']`);
  await signing.waitFor();
  assert.equal(await signing.locator("td[data-pair=signing]").count(), 1);
  assert.match(await signing.locator("td[data-pair]").innerText(), new RegExp(`^签名证书\\s+配对证书 ${pair.encryption}\\s+加密密钥托管记录 ${pair.escrowId}$`));
  assert.match(await encryption.locator("td[data-pair=encryption]").innerText(), new RegExp(`^加密证书\\s+配对证书 ${pair.signing}\\s+加密密钥托管记录 ${pair.escrowId}$`));
  // The admin API behind it: the pair and the escrow's id, never a wrapped key.
  const one = await (await fetch(`${server.url}/api/v1/admin/certificates/${pair.encryption}`, { headers: { authorization: `Bearer ${await tokenIn(page)}` } })).json() as Record<string, unknown>;
  assert.deepEqual(one.pair, { role: "encryption", otherSerial: pair.signing, escrowId: pair.escrowId });
  assert.doesNotMatch(JSON.stringify(one), /wrapped/i);
  const shot = process.env.UKEY_SCREENSHOT_DIR;
  if (shot) await page.locator("[data-table=certificates]").screenshot({ path: `${shot}/console-certificate-pair.png` });
  await page.click("button.lang");
  assert.match(await signing.locator("td[data-pair]").innerText(), /^Signing certificate/);
  await page.click("button.lang");
  assert.deepEqual(cspViolations(b.consoleErrors), []);
});
