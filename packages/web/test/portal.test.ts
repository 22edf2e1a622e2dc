import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { errorCodes, legacyErrors } from "@ukey/policy";
import { initialisedDataDir, startUkeyServer, tempDir, type RunningServer, type TempDir, freePort } from "../../server/test/support/fixtures.js";
import { holderCodes } from "../src/shared/holder-codes.js";
import { buildWeb, cspViolations, launchChromium, type RunningBrowser } from "./support/browser.js";

// The holder's portal in real Chromium, served by the real server, for what
// needs no agent: the page when no agent answers (here nothing is published
// for download; portal-downloads.test.ts has the installers), help for
// every catalogue and legacy code, the language switch, a server that
// cannot be reached, and a link that tries to point the portal at a
// non-local "agent".
let t: TempDir;
let server: RunningServer;
let b: RunningBrowser;
let closedPort: number;

/** A port nothing listens on (taken, then released). */

before(async () => {
  buildWeb();
  t = tempDir("ukey-portal-");
  const { dataDir, env } = initialisedDataDir(t);
  server = await startUkeyServer(dataDir, env);
  closedPort = await freePort();
  b = await launchChromium();
});
after(async () => {
  await b?.close();
  await server?.stop();
  t?.cleanup();
});

test("the portal is served with a strict content security policy and no inline script", async () => {
  const r = await fetch(`${server.url}/`);
  assert.equal(r.status, 200);
  const csp = r.headers.get("content-security-policy") ?? "";
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-eval|unsafe-inline/);
  assert.doesNotMatch(await r.text(), /<script(?![^>]*\bsrc=)[^>]*>/);
  const asset = /src="(\/assets\/[^"]+\.js)"/.exec(await (await fetch(`${server.url}/`)).text())?.[1];
  assert.ok(asset);
  const a = await fetch(`${server.url}${asset}`);
  assert.match(a.headers.get("cache-control") ?? "", /immutable/);
});

test("a dot-path the portal does not have is a catalogue 404, never a 500 (/.well-known on the plain HTTP port, /.env)", async () => {
  for (const path of ["/.well-known/est/cacerts", "/.env", "/assets/.hidden"]) {
    const r = await fetch(`${server.url}${path}`);
    assert.equal(r.status, 404, path);
    assert.equal(((await r.json()) as { code: string }).code, "ROUTE_NOT_FOUND", path);
  }
});

test("no agent and no installers published: says so plainly, the command only under advanced, in zh-CN by default", async () => {
  const { page } = b;
  await page.goto(`${server.url}/?agent=http://127.0.0.1:${closedPort}`);
  const absent = page.locator("[data-page=agent-absent][data-code=AGENT_NOT_RUNNING]");
  await absent.waitFor();
  assert.equal(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { lang: string } } }).document.documentElement.lang), "zh-CN");
  await absent.locator("[data-downloads=none]").waitFor();
  assert.match(await absent.innerText(), /还没有在本网站提供 ukey 代理的安装包[\s\S]*联系您的机构/);
  assert.equal(await absent.locator("a[download]").count(), 0, "no dead download link");
  assert.doesNotMatch(await absent.innerText(), /Node\.js|终端|命令/, "nothing technical before advanced is opened");
  // The command the page gives under "advanced" works as typed: the agent starts and serves this site.
  await absent.locator("details.advanced summary").click();
  const command = (await absent.locator("[data-field=command]").innerText()).trim();
  assert.equal(command, `ukey agent start --server ${server.url}`);
  assert.deepEqual(await originsOfStartedAgent(command.split(/\s+/).slice(1)), [server.url]);
  await absent.locator(".problem[data-code=AGENT_NOT_RUNNING]").waitFor();
  assert.equal(await page.locator("input[inputmode=numeric]").inputValue(), String(closedPort));
  assert.deepEqual(cspViolations(b.consoleErrors), []);
});

test("an agent too old for the portal gets its page, with both versions", async () => {
  // No agent older than this portal exists to run here: a stand-in answers hello as version 0.0.9 would.
  const old = createHttpServer((req, res) => {
    res.setHeader("access-control-allow-origin", server.url);
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ agent: "ukey-agent", version: "0.0.9", protocol: 1, paired: false }));
  });
  await new Promise<void>((r) => old.listen(0, "127.0.0.1", r));
  try {
    const { page } = b;
    await page.goto(`${server.url}/?agent=http://127.0.0.1:${(old.address() as { port: number }).port}`);
    const p = page.locator("[data-page=agent-outdated] .problem[data-code=AGENT_OUTDATED]");
    await p.waitFor();
    assert.match(await p.innerText(), /0\.0\.9[\s\S]*0\.1\.0/);
    await page.locator("[data-page=agent-outdated] [data-downloads=none]").waitFor();
  } finally {
    await new Promise((r) => old.close(r));
    await b.page.goto(`${server.url}/?agent=http://127.0.0.1:${closedPort}`);
  }
});

test("every form control has a label, on the pages a holder meets first", async () => {
  const { page } = b;
  for (const hash of ["#/", "#/help"]) {
    await page.goto(`${server.url}/?agent=http://127.0.0.1:${closedPort}${hash}`);
    await page.locator("[data-page]").first().waitFor();
    await page.locator("details summary").first().click().catch(() => undefined);
    const unlabelled = await page.evaluate(`[...document.querySelectorAll("input, select, textarea")]
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby"))
      .map((el) => el.outerHTML)`) as string[];
    assert.deepEqual(unlabelled, [], hash);
    assert.equal(await page.locator("main h1").count(), 1, `${hash}: one heading`);
  }
});

test("a link cannot point the portal at an agent that is not on this computer", async () => {
  const { page } = b;
  await page.goto(`${server.url}/?agent=https://agent.attacker.example`);
  await page.locator("[data-page=agent-absent]").waitFor();
  // The remembered loopback address stays; the foreign one is ignored.
  assert.equal(await page.locator("input[inputmode=numeric]").inputValue(), String(closedPort));
  await page.locator("details summary").click();
  await page.fill("input[inputmode=numeric]", "80abc");
  await page.click("form button[type=submit]");
  await page.locator("[role=alert]", { hasText: "127.0.0.1" }).waitFor();
});

test("help for every catalogue code and every legacy code: 0116, a pasted message, a code", async () => {
  const { page } = b;
  await page.goto(`${server.url}/#/help`);
  const help = page.locator("[data-page=help]");
  await help.waitFor();
  assert.equal(await help.locator(".help-list .help-entry").count(), holderCodes.length, "every code a holder can meet has an entry");
  assert.ok(holderCodes.length < errorCodes.length);
  // Issue 16 (9): no operator's or integrator's code in the holder's list, no raw {placeholder}, and no English in zh-CN.
  assert.equal(await help.locator(".help-list .help-entry[data-code=DER_MALFORMED]").count(), 0);
  const listed = await help.locator(".help-list").innerText();
  assert.doesNotMatch(listed, /\{\w+\}|…/, "placeholders read as example values, not as {name} or an ellipsis");
  assert.match(await help.locator(".help-entry[data-code=RENEWAL_NOT_YET_OPEN]").innerText(), /在线更新将于 2027-03-01 开放/);
  assert.equal(await help.locator(".legacy-table tbody tr").count(), legacyErrors.length);

  await page.goto(`${server.url}/#/help/0116`);
  const first = page.locator(".lookup-results li").first();
  await first.waitFor();
  assert.match(await first.locator(".legacy").innerText(), /0116/);
  assert.ok(await first.locator(".help-entry[open]").count() >= 1, "our code's remedy is open");

  await page.fill("#help-q", "证书不存在");
  await page.locator(".lookup-results li").first().waitFor();
  await page.fill("#help-q", "token pin locked");
  await page.locator(".lookup-results .help-entry[data-code=TOKEN_PIN_LOCKED]").first().waitFor();
  await page.fill("#help-q", "zzzz-nothing-like-this");
  await page.locator("[data-page=help] [role=status]").waitFor();
});

test("the English switch changes every page's words and is remembered", async () => {
  const { page } = b;
  await page.goto(`${server.url}/#/help`);
  await page.locator("[data-page=help]").waitFor();
  assert.match(await page.locator("h1").innerText(), /帮助/);
  await page.click("button.lang");
  assert.match(await page.locator("h1").innerText(), /Help/);
  assert.match(await page.locator("header nav").innerText(), /My certificates/);
  await page.reload();
  await page.locator("[data-page=help]").waitFor();
  assert.match(await page.locator("h1").innerText(), /Help/);
  assert.equal(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { lang: string } } }).document.documentElement.lang), "en");
  await page.click("button.lang");
});

test("a server that cannot be reached gets its page: what happened and what to do", async () => {
  const { page } = b;
  await page.route("**/healthz", (r) => r.abort("connectionrefused"));
  try {
    await page.goto(`${server.url}/#/help`);
    await page.reload();
    await page.locator(".banner .problem[data-code=SERVER_UNREACHABLE]").waitFor();
    // Help still works: the catalogue is part of the page.
    await page.locator("[data-page=help] .help-entry").first().waitFor();
  } finally {
    await page.unroute("**/healthz");
  }
});

/** Runs `ukey ARGS --port 0 --json` with an empty agent home and returns the sites it says it serves. */
async function originsOfStartedAgent(args: string[]): Promise<string[]> {
  const home = tempDir("ukey-portal-cmd-");
  const bin = fileURLToPath(new URL("../../agent/bin/ukey.js", import.meta.url));
  const child = spawn(process.execPath, [bin, ...args, "--port", "0", "--json"], {
    env: { ...process.env, UKEY_AGENT_HOME: home.dir }, stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    return await new Promise<string[]>((resolve, reject) => {
      let out = "";
      let err = "";
      child.stderr.on("data", (d) => { err += String(d); });
      child.stdout.on("data", (d) => {
        out += String(d);
        for (const line of out.split("\n")) {
          if (!line.startsWith("{")) continue;
          const event = JSON.parse(line) as { event?: string; origins?: string[] };
          if (event.event === "listening") resolve(event.origins ?? []);
        }
      });
      child.on("exit", (code) => reject(new Error(`ukey ${args.join(" ")} exited ${code}: ${out}${err}`)));
    });
  } finally {
    child.kill("SIGTERM");
    home.cleanup();
  }
}
