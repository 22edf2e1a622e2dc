import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultKeyVendors, mergeKeyVendorTables, parseKeyVendorTable } from "@ukey/policy";
import { cspViolations, launchChromium, type RunningBrowser } from "../../../web/test/support/browser.js";
import { SkfBackend } from "../../src/keys/skf-backend.js";
import { login } from "../../src/flows/token-access.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import { ensureSoftkey, SoftkeyDir } from "../skf/support/softkey.js";
import { scriptedFlows, startTestAgent, waitForOperation, type TestAgent } from "./support.js";

// The agent's PIN page in real Chromium while the key itself acts (issue 15
// part 5): after the PIN, "press OK on your UKey" with the key's timeout,
// on skf-softkey (the project's software SKF key) whose button the test
// presses; and the PIN-pad variant, which asks for no PIN. No key with a PIN
// pad exists here (SoftHSM2 has none, nor has skf-softkey): that flow is a
// stand-in that asks as login() asks a pad key, and the page is the real one.

const USER_PIN = "12345678";
const institution = mergeKeyVendorTables(defaultKeyVendors, parseKeyVendorTable([
  { id: "softkey-timed", match: { serialPrefix: "SKFTMO" }, vendor: { zh: "测试厂商", en: "Test vendor" }, confirmationTimeoutSeconds: 30 },
]));

let keys: SoftkeyDir;
let skf: SkfBackend;
let agent: TestAgent;
let token: string;
let b: RunningBrowser;
const shots = process.env.UKEY_TEST_SHOTS ?? mkdtempSync(join(tmpdir(), "ukey-pin-shots-"));
const padPins: string[] = [];
let releasePad: () => void = () => undefined;

const flows = scriptedFlows(async (ctx, kind) => {
  if (kind === "renew") {
    // Real: the PIN from the page logs in to the software SKF key, whose signature then waits for its button.
    const { session } = await login(ctx.backend, ctx.prompter, "SKFTMO0002", "renew", { vendors: institution });
    try {
      const [key] = await session.listKeys();
      await session.sign(key!.id, Buffer.from("challenge"));
    } finally {
      await session.close();
    }
    return {};
  }
  // Stand-in for a PKCS#11 key with a PIN pad: asked as login() asks one, then "typing on the pad" until the test releases it.
  padPins.push(await ctx.prompter.pin({ tokenSerial: "PAD0001", tokenLabel: "密码键盘 UKey", reason: "renew", keyPad: true }));
  ctx.prompter.progress({ step: "key-pad", zh: "请在 UKey 自带的键盘上输入 PIN，然后按确认键", en: "Type the PIN on the UKey's own keypad, then press OK" });
  await new Promise<void>((r) => { releasePad = r; });
  return {};
});

before(async () => {
  const build = ensureSoftkey();
  console.log(`# SKF library: ${build.library} — skf-softkey, the project's software stand-in for a vendor's SKF library, not a vendor's`);
  keys = new SoftkeyDir(build);
  process.env.SKF_SOFTKEY_DIR = keys.dir;
  keys.create("timed", { serial: "SKFTMO0002", label: "张三的 UKey", buttonTimeoutMs: 30_000 });
  keys.genKey("timed", "DEFAULT_APP", "sign-1");
  skf = await SkfBackend.open(build.library);
  agent = await startTestAgent(flows, { backendFactory: async () => skf });
  token = await agent.pair();
  b = await launchChromium();
  console.log(`# screenshots: ${shots}`);
});
after(async () => {
  await b?.close();
  await agent?.close();
  await skf?.close();
  keys?.cleanup();
});

async function pinAsk(kind: "renew" | "clean-up", serial: string): Promise<{ id: string; url: string }> {
  const started = (await agent.call("/v1/operations", { token, body: { kind, tokenSerial: serial } })).json as unknown as OperationView;
  const v = await waitForOperation(agent, token, started.id, (x) => x.state === "needs-input");
  assert.equal(v.input?.kind, "pin");
  return { id: v.id, url: (v.input as { promptUrl: string }).promptUrl };
}

test("after the PIN, the page says to press OK on the UKey with the key's 30 s, at once; OK on the key finishes the operation", async () => {
  const { id, url } = await pinAsk("renew", "SKFTMO0002");
  const page = await b.context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);
  assert.match(await page.locator("h1").innerText(), /输入 UKey 密码（PIN）/);
  await page.screenshot({ path: join(shots, "pin-page-zh.png"), fullPage: true });
  // An ordinary ask takes no post without a PIN (only a pad ask, marked so by the agent itself, does).
  const empty = await fetch(url, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "" });
  assert.equal(empty.status, 400);
  assert.match(await empty.text(), /请输入 PIN。/);
  assert.equal(((await agent.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView).state, "needs-input");
  keys.button("timed", "wait");
  await page.fill("#pin", USER_PIN);
  const began = Date.now();
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
  await page.locator("text=请在 UKey 上操作").waitFor();
  // The page does not sit out the agent's 20 s wait: the key's wait is news at once.
  assert.ok(Date.now() - began < 10_000, `answered after ${Date.now() - began} ms`);
  const text = await page.locator("main").innerText();
  assert.match(text, /请在 UKey 上按确认键（OK 键）：30 秒内未按，UKey 会取消这次操作/);
  assert.match(text, /Press OK on your UKey: if it is not pressed within 30 s/);
  await page.screenshot({ path: join(shots, "pin-page-press-ok-zh.png"), fullPage: true });
  const view = (await agent.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.equal(view.state, "running");
  assert.deepEqual(view.progress.filter((p) => p.step === "press-button").map((p) => p.timeoutSeconds), [30]);
  keys.press("timed", "ok");
  const done = await waitForOperation(agent, token, id, (x) => x.state === "done" || x.state === "failed");
  assert.equal(done.state, "done", JSON.stringify(done.error));
  assert.deepEqual(cspViolations(errors), []);
  await page.close();
});

test("for a key with its own PIN pad the page has no PIN field, says the PIN goes on the key, and Start hands the flow no PIN", async () => {
  const { id, url } = await pinAsk("clean-up", "PAD0001");
  const page = await b.context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);
  assert.equal(await page.locator("input").count(), 0, "no field: the PIN never passes through the computer");
  assert.match(await page.locator("h1").innerText(), /在 UKey 上输入 PIN/);
  const padText = await page.locator("main").innerText();
  assert.match(padText, /这把 UKey 带有密码键盘：PIN 在 UKey 上输入，不在电脑上输入，本页不会要求您输入 PIN。/);
  // The safety note agrees with the pad: no "type the PIN only in this window" on a page that takes no PIN.
  assert.match(padText, /这把 UKey 的 PIN 只在 UKey 自己的键盘上输入：任何网页或窗口要求您在电脑上输入它，都不要输入。/);
  assert.doesNotMatch(padText, /窗口中输入 PIN|Type the PIN only in a window/);
  await page.screenshot({ path: join(shots, "pin-page-keypad-zh.png"), fullPage: true });
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
  await page.locator("text=请在 UKey 自带的键盘上输入 PIN").waitFor();
  assert.doesNotMatch(await page.locator("main").innerText(), /窗口中输入 PIN|Type the PIN only in a window/, "nor once the key waits on its pad");
  await page.screenshot({ path: join(shots, "pin-page-keypad-after-zh.png"), fullPage: true });
  assert.deepEqual(padPins, [""]);
  releasePad();
  assert.equal((await waitForOperation(agent, token, id, (x) => x.state === "done" || x.state === "failed")).state, "done");
  assert.deepEqual(cspViolations(errors), []);
  await page.close();
});
