import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir, type TempDir, freePort } from "../../server/test/support/fixtures.js";
import { launchEngine, type DriverPage, type EngineBrowser } from "./support/engines.js";

// Issue 16: the README's demo, exactly as it tells a newcomer, so that the
// README cannot drift from what works. The commands, the address and the
// buttons' words are read from README.md: `npm start` (in the repository, as
// written; only the data directory and the port are moved, through the
// UKEY_DATA_DIR and UKEY_PORT that scripts/start.sh documents, so a
// developer's own .data and port 8080 are left alone), then the agent
// command of the README in a second process, then the portal in Chromium:
// pair with the code the agent prints, "输入 PIN 查看证书" with the file's PIN in the agent's window,
// "更新", the ID number on record, and the renewed certificate. The agent
// runs on its default port, as the README starts it, so the portal finds it
// without any ?agent= in the address.
const repo = resolve(import.meta.dirname, "../../..");
const readme = readFileSync(join(repo, "README.md"), "utf8");

let t: TempDir;
let dataDir: string;
let port: number;
let server: ChildProcess | undefined;
let agent: ChildProcess | undefined;
let serverOut = "";
let agentOut = "";
let b: EngineBrowser;
let page: DriverPage;


/** The README's commands as a newcomer types them, with only the data directory and the port moved. */
function asHere(command: string): string {
  return command.replaceAll("http://localhost:8080", `http://localhost:${port}`).replace(/(^|\s)\.data\b/g, `$1${dataDir}`);
}

/** Runs a shell command in the repository in its own process group (so that the whole tree can be stopped), collecting its output. */
function run(command: string, env: Record<string, string>, sink: (s: string) => void): ChildProcess {
  const child = spawn("bash", ["-c", command], { cwd: repo, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  child.stdout!.on("data", (d) => sink(String(d)));
  child.stderr!.on("data", (d) => sink(String(d)));
  return child;
}

function stopTree(c: ChildProcess | undefined): Promise<void> {
  return new Promise((r) => {
    if (!c || c.exitCode !== null || c.signalCode !== null) return r();
    c.once("exit", () => r());
    try { process.kill(-c.pid!, "SIGTERM"); } catch { r(); }
  });
}

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeout: number, out: () => string): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`waited ${timeout} ms for ${what}; output:\n${out()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Opens the agent's PIN window from the portal and types the PIN there. */
async function enterPin(pin: string): Promise<void> {
  await page.waitFor("[data-input=pin] [data-action=open-pin]", { timeout: 120_000 });
  const popup = await page.clickForPopup("[data-action=open-pin]");
  assert.equal(new URL(await popup.url()).origin, "http://127.0.0.1:24817", "the PIN page is the agent's own, on its default port");
  await popup.fill("#pin", pin);
  await popup.click("button[type=submit]");
  await popup.waitForText("body", /此窗口可以关闭/, { timeout: 120_000 });
  await popup.close();
}

before(async () => {
  t = tempDir("ukey-readme-demo-");
  dataDir = join(t.dir, ".data");
  port = await freePort();
  b = await launchEngine("chromium");
  page = b.page;
});
after(async () => {
  await b?.close();
  await stopTree(agent);
  await stopTree(server);
  t?.cleanup();
});

test("README: `npm start` initialises the demo and prints the portal's and the console's addresses the README gives", async () => {
  assert.match(readme, /```sh\nnpm start\n```/, "the README's first command");
  assert.match(readme, /serves it on http:\/\/localhost:8080, the operator console on\s+http:\/\/localhost:8080\/console\//);
  // npm start reinstalls node_modules (npm ci) when the lockfile is newer: never in the middle of a test run.
  assert.ok(statSync(join(repo, "node_modules/.package-lock.json")).mtimeMs >= statSync(join(repo, "package-lock.json")).mtimeMs,
    "node_modules is older than package-lock.json: run bash scripts/ensure-node-modules.sh (npm test does) before this test");
  server = run("npm start", { UKEY_DATA_DIR: dataDir, UKEY_PORT: String(port) }, (s) => { serverOut += s; });
  server.once("exit", (code) => { serverOut += `\n[npm start exited ${code}]`; });
  await until("the server to answer", async () => {
    if (server!.exitCode !== null) throw new Error(`npm start exited ${server!.exitCode}:\n${serverOut}`);
    try { return (await fetch(`http://localhost:${port}/healthz`)).status < 500 ? true : undefined; } catch { return undefined; }
  }, 600_000, () => serverOut);
  assert.match(serverOut, new RegExp(`portal \\(holders\\):\\s+http://localhost:${port}/`));
  assert.match(serverOut, new RegExp(`console \\(operators\\): http://localhost:${port}/console/`));
  // The file token and the secrets the README names are where it says.
  for (const f of [`${dataDir}.demo-token.p12`, `${dataDir}.secrets/demo-token-pin`, `${dataDir}.secrets/demo2-id-number`, `${dataDir}.secrets/operator-password`, `${dataDir}.secrets/operator-admin.txt`]) {
    assert.doesNotThrow(() => readFileSync(f), f);
  }
});

test("README: the agent command from the README, then the demo's file certificate renewed in the portal in Chromium", async () => {
  assert.ok(server && server.exitCode === null, "npm start is serving");
  const agentCommand = /^npx ukey agent start .*$/m.exec(readme)?.[0];
  assert.equal(agentCommand, "npx ukey agent start --server http://localhost:8080 --pkcs12 .data.demo-token.p12", "the README's agent command");
  const portal = /open (http:\/\/localhost:8080\/):/.exec(readme)?.[1];
  assert.equal(portal, "http://localhost:8080/");
  const [readButton, renewButton] = [...readme.matchAll(/press\s+"([^"]+)"[\s\S]*?then\s+"([^"]+)"/g)].flatMap((m) => [m[1]!, m[2]!]);
  assert.equal(readButton, "输入 PIN 查看证书");
  assert.equal(renewButton, "更新");

  const home = join(t.dir, "holder-home");
  mkdirSync(home);
  agent = run(asHere(agentCommand!), { HOME: home, UKEY_AGENT_HOME: home, LANG: "zh_CN.UTF-8" }, (s) => { agentOut += s; });
  agent.once("exit", (code) => { agentOut += `\n[the agent exited ${code}]`; });
  await until("the agent to listen", () => /ukey 代理正在运行：http:\/\/127\.0\.0\.1:24817/.test(agentOut) ? true : (agent!.exitCode !== null ? (() => { throw new Error(`the agent exited (is port 24817 taken?):\n${agentOut}`); })() : undefined), 60_000, () => agentOut);

  await page.goto(asHere(portal!));
  await page.waitFor("[data-page=pairing]");
  const code = await until("the agent to print a pairing code", () => /配对码 (\d{6})/.exec(agentOut)?.[1], 60_000, () => agentOut);
  assert.match(agentOut, new RegExp(`网站 http://localhost:${port} 请求使用您的 UKey`));
  await page.fill("#pair-code", code);
  await page.click("[data-page=pairing] button[type=submit]");
  await page.waitFor("[data-page=status]");

  const pin = readFileSync(`${dataDir}.secrets/demo-token-pin`, "utf8").trim();
  await page.clickText("[data-hidden-certs] button", readButton!);
  await enterPin(pin);
  await page.waitFor("article.cert[data-serial] a.button", { timeout: 120_000 });
  const serial = await page.attribute("article.cert[data-serial]", "data-serial");
  assert.match(await page.text("article.cert"), /李四/, "the demo's second holder");
  await page.clickText("article.cert a.button", renewButton!);
  await page.waitFor("[data-page=renew]");
  await page.click("[data-page=renew] button.primary");
  // Issue 16: the README's third button, on the preview of the certificate and the new one.
  const confirmButton = /press\s+"([^"]+)":/.exec(readme)?.[1];
  assert.equal(confirmButton, "确认更新");
  await page.waitFor("[data-input=confirm] [data-preview=renew]", { timeout: 120_000 });
  await page.clickText("[data-input=confirm] button.primary", confirmButton!);
  await page.waitFor("[data-input=pin], [data-input=id-number]", { timeout: 120_000 });
  if (await page.count("[data-input=pin]")) await enterPin(pin);
  await page.waitFor("[data-input=id-number]", { timeout: 120_000 });
  await page.fill("#id-number", readFileSync(`${dataDir}.secrets/demo2-id-number`, "utf8").trim());
  await page.click("[data-input=id-number] button[type=submit]");
  await page.waitFor("[data-result=renew]", { timeout: 120_000 });
  const renewed = await page.text("[data-result=renew] [data-field=serial]");
  assert.match(renewed, /^[0-9a-f]+$/);
  assert.notEqual(renewed, serial);
  assert.match(await page.text("[data-result=renew] [data-field=validity]"), /^\d{4}-\d{2}-\d{2} — \d{4}-\d{2}-\d{2}$/);
});
