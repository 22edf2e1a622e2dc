import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { cspViolations, launchChromium, type RunningBrowser } from "../../../web/test/support/browser.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import { scriptedFlows, startTestAgent, type TestAgent } from "./support.js";

// The agent's PIN page in real Chromium: what the browser itself sends and
// enforces (Origin: null from the page's own form under no-referrer, its
// Sec-Fetch-Site, frame-ancestors, the style hash). The whole pop-up flow
// from the portal is in packages/web/test/portal-agent.test.ts. The flows
// here are a stand-in that asks one PIN and records it.

const pins: string[] = [];
const flows = scriptedFlows(async (ctx) => {
  pins.push(await ctx.prompter.pin({ tokenSerial: "B1", tokenLabel: "browser key", reason: "renew" }));
  return {};
});

let agent: TestAgent;
let b: RunningBrowser;
let hostile: Server;
let hostileUrl: string;
let hostilePage = "";
let token: string;

before(async () => {
  agent = await startTestAgent(flows);
  token = await agent.pair();
  // Another origin on the same machine (same site as the agent: only the port differs).
  hostile = createServer((_req, res) => { res.writeHead(200, { "content-type": "text/html; charset=utf-8" }); res.end(hostilePage); });
  await new Promise<void>((r) => hostile.listen(0, "127.0.0.1", r));
  hostileUrl = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`;
  b = await launchChromium();
});
after(async () => {
  await b?.close();
  await new Promise((r) => hostile?.close(r));
  await agent?.close();
});

async function pinAsk(serial: string): Promise<{ id: string; url: string }> {
  const started = await agent.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: serial } });
  let v = started.json as unknown as OperationView;
  for (let i = 0; i < 20 && v.state !== "needs-input"; i++) {
    v = (await agent.call(`/v1/operations/${v.id}?revision=${v.revision}&wait=25`, { token })).json as unknown as OperationView;
  }
  assert.equal(v.input?.kind, "pin");
  return { id: v.id, url: (v.input as { promptUrl: string }).promptUrl };
}

async function stillAsking(id: string, url: string): Promise<void> {
  const v = (await agent.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.equal(v.state, "needs-input");
  assert.equal((v.input as { promptUrl: string }).promptUrl, url);
}

test("the PIN page renders under its CSP without violations and its own form delivers the PIN", async () => {
  const { id, url } = await pinAsk("B1");
  const page = await b.context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);
  assert.equal(await page.locator("main").evaluate((el) => (globalThis as unknown as { getComputedStyle(e: unknown): { borderTopLeftRadius: string } }).getComputedStyle(el).borderTopLeftRadius), "8px", "the hashed style applies");
  assert.match(await page.locator("body").innerText(), /网站看不到您输入的 PIN/);
  await page.fill("#pin", "483920");
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
  await page.locator("text=PIN received").waitFor();
  assert.deepEqual(cspViolations(errors), []);
  assert.deepEqual(pins, ["483920"]);
  const v = (await agent.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.notEqual(v.state, "needs-input");
  await page.close();
});

test("another page can neither frame the PIN page nor post a PIN to it", async () => {
  const { id, url } = await pinAsk("B2");
  const page = await b.context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  hostilePage = `<!doctype html><iframe id="f" src="${url}" width="600" height="400" onload="window.framed = true"></iframe>`;
  await page.goto(hostileUrl);
  await page.waitForFunction("window.framed === true");
  const frame = page.frames().find((f) => f !== page.mainFrame());
  assert.ok(frame, "the iframe exists");
  assert.equal(await frame.locator("#pin").count(), 0, `the PIN form never shows inside another page (frame at ${frame.url()})`);
  assert.ok(errors.some((e) => /frame-ancestors/.test(e)), `Chromium names the CSP that refused the frame: ${errors.join("\n")}`);

  // A form on the other origin, with and without a referrer (the latter sends Origin: null, but Sec-Fetch-Site: same-site).
  for (const referrer of ["", `<meta name="referrer" content="no-referrer">`]) {
    hostilePage = `<!doctype html>${referrer}<form id="x" method="post" action="${url}"><input name="pin" value="000000"></form>`;
    await page.goto(hostileUrl);
    const [res] = await Promise.all([page.waitForNavigation(), page.locator("#x").evaluate((form) => (form as unknown as { submit(): void }).submit())]);
    assert.equal(res?.status(), 403, referrer || "with referrer");
    await stillAsking(id, url);
  }
  assert.deepEqual(pins.filter((p) => p === "000000"), []);
  await page.close();
});
