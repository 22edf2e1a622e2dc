// One small driver interface for the portal's journeys in three browser
// engines, so the same test body runs in each:
// - Chromium: Debian's /usr/bin/chromium through playwright-core (CDP);
// - Firefox ESR: Debian's /usr/bin/firefox-esr through puppeteer-core over
//   WebDriver BiDi;
// - WebKitGTK: Debian's MiniBrowser through WebKitWebDriver (webkit2gtk-driver,
//   W3C WebDriver classic) with selenium-webdriver as the client, on an Xvfb
//   display (MiniBrowser has no headless mode).
// Waits are polls of the page's DOM through `evaluate`, the same in every
// engine; clicks and typing are each engine's own (real input events).
// There is no skip: a missing browser, driver or Xvfb throws and says which
// Debian package to install (scripts/ensure-system-deps.sh installs them).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { chromium, type Page as PwPage } from "playwright-core";
import puppeteer, { type Page as PpPage } from "puppeteer-core";
import { Builder, By, type WebDriver } from "selenium-webdriver";
import { chromiumPath } from "./browser.js";
import { freePort } from "../../../server/test/support/fixtures.js";

export type Engine = "chromium" | "firefox" | "webkit";
export const engines: readonly Engine[] = ["chromium", "firefox", "webkit"];

export const firefoxPath = process.env.UKEY_FIREFOX ?? "/usr/bin/firefox-esr";
export const webkitDriverPath = process.env.UKEY_WEBKIT_DRIVER ?? "/usr/bin/WebKitWebDriver";
export const miniBrowserPath = process.env.UKEY_MINIBROWSER ?? "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
const xvfbPath = "/usr/bin/Xvfb";

export interface WaitOptions { timeout?: number }

/** A page (or the agent's pop-up window) in one engine. Selectors are CSS. */
export interface DriverPage {
  readonly engine: Engine;
  goto(url: string): Promise<void>;
  url(): Promise<string>;
  /** Runs a JavaScript expression in the page and returns its (JSON) value. */
  evaluate<T>(expression: string): Promise<T>;
  click(selector: string): Promise<void>;
  /** Clicks the first element matching `selector` whose text contains `text`. */
  clickText(selector: string, text: string): Promise<void>;
  /** Replaces the value of an input, typing it as a user does. */
  fill(selector: string, value: string): Promise<void>;
  /** Waits until an element matches `selector`; returns its text. */
  waitFor(selector: string, opts?: WaitOptions): Promise<string>;
  /** Waits until an element matching `selector` shows `text`; returns its text. */
  waitForText(selector: string, text: string | RegExp, opts?: WaitOptions): Promise<string>;
  count(selector: string): Promise<number>;
  text(selector: string): Promise<string>;
  attribute(selector: string, name: string): Promise<string | null>;
  value(selector: string): Promise<string>;
  screenshot(path: string): Promise<void>;
  /** Clicks `selector`, which opens a window (window.open); returns that window. */
  clickForPopup(selector: string): Promise<DriverPage>;
  /** Closes this window (for a pop-up). */
  close(): Promise<void>;
}

export interface EngineBrowser {
  engine: Engine;
  page: DriverPage;
  /**
   * Console errors the page logged (Chromium, Firefox). Classic WebDriver has
   * no log: in WebKit these are the Content Security Policy violations a
   * listener saw after each page load (`securitypolicyviolation`), gathered by collectErrors.
   */
  consoleErrors: string[];
  /** Brings what the engine has seen into consoleErrors (WebKit: reads the page's listener); call before checking them. */
  collectErrors(): Promise<void>;
  close(): Promise<void>;
}

const js = (v: unknown) => JSON.stringify(v);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The engine-neutral parts, built on evaluate. */
abstract class BasePage implements DriverPage {
  abstract readonly engine: Engine;
  abstract goto(url: string): Promise<void>;
  abstract url(): Promise<string>;
  abstract evaluate<T>(expression: string): Promise<T>;
  abstract click(selector: string): Promise<void>;
  abstract fill(selector: string, value: string): Promise<void>;
  abstract screenshot(path: string): Promise<void>;
  abstract clickForPopup(selector: string): Promise<DriverPage>;
  abstract close(): Promise<void>;

  async clickText(selector: string, text: string): Promise<void> {
    const mark = `t${Math.random().toString(36).slice(2)}`;
    await this.poll(`(() => { const el = [...document.querySelectorAll(${js(selector)})].find((e) => (e.innerText ?? e.textContent ?? "").includes(${js(text)}));
      if (!el) return null; el.setAttribute("data-driver-mark", ${js(mark)}); return true; })()`, `${selector} with text ${js(text)}`, 60_000);
    await this.click(`[data-driver-mark=${mark}]`);
  }

  waitFor(selector: string, opts: WaitOptions = {}): Promise<string> {
    return this.poll(`(() => { const el = document.querySelector(${js(selector)}); return el ? (el.innerText ?? el.textContent ?? "") : null; })()`, selector, opts.timeout ?? 60_000);
  }

  async waitForText(selector: string, text: string | RegExp, opts: WaitOptions = {}): Promise<string> {
    const pattern = typeof text === "string" ? { source: text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), flags: "" } : { source: text.source, flags: text.flags };
    return this.poll(`(() => { const re = new RegExp(${js(pattern.source)}, ${js(pattern.flags)});
      const el = [...document.querySelectorAll(${js(selector)})].find((e) => re.test(e.innerText ?? e.textContent ?? ""));
      return el ? (el.innerText ?? el.textContent ?? "") : null; })()`, `${selector} showing ${String(text)}`, opts.timeout ?? 60_000);
  }

  count(selector: string): Promise<number> {
    return this.evaluate<number>(`document.querySelectorAll(${js(selector)}).length`);
  }

  text(selector: string): Promise<string> {
    return this.waitFor(selector);
  }

  async attribute(selector: string, name: string): Promise<string | null> {
    await this.waitFor(selector);
    return this.evaluate<string | null>(`document.querySelector(${js(selector)}).getAttribute(${js(name)})`);
  }

  async value(selector: string): Promise<string> {
    await this.waitFor(selector);
    return this.evaluate<string>(`document.querySelector(${js(selector)}).value`);
  }

  /** Evaluates `expression` until it is neither null nor undefined (a navigation in between is retried). */
  protected async poll<T>(expression: string, what: string, timeout: number): Promise<T> {
    const deadline = Date.now() + timeout;
    let last: unknown;
    for (;;) {
      try {
        const v = await this.evaluate<T | null>(expression);
        if (v !== null && v !== undefined) return v;
      } catch (e) {
        last = e; // the document changed under the script: try again
      }
      if (Date.now() > deadline) {
        let body = "";
        try { body = await this.evaluate<string>("document.body ? document.body.innerText : ''"); } catch { /* the page is gone */ }
        throw new Error(`${this.engine}: waited ${timeout} ms for ${what} at ${await this.url().catch(() => "?")}${last ? ` (last error: ${String(last)})` : ""}\npage text:\n${body.slice(0, 2000)}`);
      }
      await sleep(150);
    }
  }
}

// ---------- Chromium (playwright-core) ----------
class ChromiumPage extends BasePage {
  readonly engine = "chromium" as const;
  constructor(private readonly p: PwPage) { super(); }
  async goto(url: string) { await this.p.goto(url); }
  url() { return Promise.resolve(this.p.url()); }
  evaluate<T>(expression: string) { return this.p.evaluate(expression) as Promise<T>; }
  async click(selector: string) { await this.p.click(selector); }
  async fill(selector: string, value: string) { await this.p.fill(selector, value); }
  async screenshot(path: string) { await this.p.screenshot({ path }); }
  async clickForPopup(selector: string) {
    const [popup] = await Promise.all([this.p.waitForEvent("popup"), this.p.click(selector)]);
    await popup.waitForLoadState();
    popup.setDefaultTimeout(60_000);
    return new ChromiumPage(popup);
  }
  async close() { await this.p.close(); }
}

async function launchChromiumEngine(): Promise<EngineBrowser> {
  if (!existsSync(chromiumPath)) throw new Error(`\n\n*** CHROMIUM IS REQUIRED: ${chromiumPath} is missing. apt-get install chromium (scripts/ensure-system-deps.sh does). ***\n`);
  const browser = await chromium.launch({
    executablePath: chromiumPath, headless: true, timeout: 120_000,
    // The browser's own locale (chromium-l10n): a date field shows 年/月/日, as in a holder's zh-CN Chromium.
    env: { ...process.env, LANG: "zh_CN.UTF-8", LANGUAGE: "zh_CN:zh" },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ locale: "zh-CN", viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  const consoleErrors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  return { engine: "chromium", page: new ChromiumPage(page), consoleErrors, collectErrors: () => Promise.resolve(), close: () => browser.close() };
}

// ---------- Firefox ESR (puppeteer-core, WebDriver BiDi) ----------
class FirefoxPage extends BasePage {
  readonly engine = "firefox" as const;
  constructor(private readonly p: PpPage) { super(); }
  async goto(url: string) { await this.p.goto(url, { waitUntil: "load" }); }
  url() { return Promise.resolve(this.p.url()); }
  evaluate<T>(expression: string) { return this.p.evaluate(expression) as Promise<T>; }
  async click(selector: string) { await this.p.locator(selector).setTimeout(60_000).click(); }
  async fill(selector: string, value: string) { await this.p.locator(selector).setTimeout(60_000).fill(value); }
  async screenshot(path: string) { await this.p.screenshot({ path }); }
  async clickForPopup(selector: string) {
    const popup = new Promise<PpPage | null>((resolve) => this.p.once("popup", resolve));
    await this.click(selector);
    const page = await popup;
    if (!page) throw new Error("firefox: the click opened no window");
    const w = new FirefoxPage(page);
    await w.poll("document.readyState === 'complete' && location.href !== 'about:blank' ? true : null", "the pop-up's page", 60_000);
    return w;
  }
  async close() { await this.p.close(); }
}

async function launchFirefoxEngine(): Promise<EngineBrowser> {
  if (!existsSync(firefoxPath)) throw new Error(`\n\n*** FIREFOX ESR IS REQUIRED: ${firefoxPath} is missing. apt-get install firefox-esr (scripts/ensure-system-deps.sh does). ***\n`);
  const browser = await puppeteer.launch({
    browser: "firefox", executablePath: firefoxPath, headless: true, timeout: 120_000,
    defaultViewport: { width: 1200, height: 900 },
    extraPrefsFirefox: {
      "intl.accept_languages": "zh-CN, zh", "intl.locale.requested": "zh-CN",
      // A closed network: no update checks, telemetry or remote settings.
      "app.update.enabled": false, "datareporting.policy.dataSubmissionEnabled": false, "toolkit.telemetry.enabled": false,
      "browser.safebrowsing.malware.enabled": false, "browser.safebrowsing.phishing.enabled": false,
      // window.open from a click opens a window (a tab would do too), never blocked.
      "dom.disable_open_during_load": false,
    },
  });
  const page = (await browser.pages())[0] ?? await browser.newPage();
  await page.setViewport({ width: 1200, height: 900 }); // the first page predates defaultViewport
  page.setDefaultTimeout(60_000);
  const consoleErrors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  return { engine: "firefox", page: new FirefoxPage(page), consoleErrors, collectErrors: () => Promise.resolve(), close: () => browser.close() };
}

// ---------- WebKitGTK (WebKitWebDriver, selenium-webdriver, Xvfb) ----------

/** Keeps the page's Content Security Policy violations from now on (WebKit has no console log over classic WebDriver). */
const watchCsp = `(() => { if (!window.__ukeyCsp) { window.__ukeyCsp = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__ukeyCsp.push("Refused to load " + e.blockedURI + ": Content Security Policy " + e.violatedDirective)); } return true; })()`;

class WebKitPage extends BasePage {
  readonly engine = "webkit" as const;
  constructor(private readonly d: WebDriver, private readonly handle: string) { super(); }
  /** Every command goes to this page's window (the pop-up and the portal share one driver session). */
  private async on(): Promise<WebDriver> {
    if (await this.d.getWindowHandle().catch(() => "") !== this.handle) await this.d.switchTo().window(this.handle);
    return this.d;
  }
  async goto(url: string) {
    await (await this.on()).get(url);
    await this.evaluate(watchCsp);
  }
  async url() { return (await this.on()).getCurrentUrl(); }
  async evaluate<T>(expression: string) { return (await this.on()).executeScript<T>(`return (${expression});`); }
  async click(selector: string) {
    await this.waitFor(selector);
    await (await this.on()).findElement(By.css(selector)).click();
  }
  async fill(selector: string, value: string) {
    await this.waitFor(selector);
    const el = (await this.on()).findElement(By.css(selector));
    await el.clear();
    await el.sendKeys(value);
  }
  async screenshot(path: string) { writeFileSync(path, Buffer.from(await (await this.on()).takeScreenshot(), "base64")); }
  async clickForPopup(selector: string) {
    const d = await this.on();
    const before = new Set(await d.getAllWindowHandles());
    await this.click(selector);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const fresh = (await d.getAllWindowHandles()).find((h) => !before.has(h));
      if (fresh) {
        const w = new WebKitPage(d, fresh);
        await w.poll("document.readyState === 'complete' && location.href !== 'about:blank' ? true : null", "the pop-up's page", 60_000);
        return w;
      }
      if (Date.now() > deadline) throw new Error("webkit: the click opened no window");
      await sleep(150);
    }
  }
  async close() {
    const d = await this.on();
    await d.close();
    const rest = await d.getAllWindowHandles();
    if (rest[0]) await d.switchTo().window(rest[0]);
  }
}


function stopChild(c: ChildProcess | undefined): Promise<void> {
  return new Promise((r) => { if (!c || c.exitCode !== null || c.signalCode !== null) return r(); c.once("exit", () => r()); c.kill("SIGTERM"); });
}

/** Starts Xvfb on a display it picks itself (-displayfd) and resolves with that display, ":N". */
async function startXvfb(): Promise<{ child: ChildProcess; display: string }> {
  const child = spawn(xvfbPath, ["-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => { err += String(d); });
  const display = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Xvfb gave no display: ${err}`)), 30_000);
    child.stdout!.once("data", (d) => { clearTimeout(timer); resolve(`:${String(d).trim()}`); });
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`Xvfb exited ${code}: ${err}`)); });
  });
  return { child, display };
}

async function launchWebKitEngine(): Promise<EngineBrowser> {
  for (const [path, pkg] of [[webkitDriverPath, "webkit2gtk-driver"], [miniBrowserPath, "webkit2gtk-driver (libwebkit2gtk-4.1-0's MiniBrowser)"], [xvfbPath, "xvfb"]] as const) {
    if (!existsSync(path)) throw new Error(`\n\n*** WEBKITGTK'S DRIVER IS REQUIRED: ${path} is missing. apt-get install ${pkg} (scripts/ensure-system-deps.sh does). ***\n`);
  }
  const xvfb = await startXvfb();
  const port = await freePort();
  let driverErr = "";
  const driverProc = spawn(webkitDriverPath, [`--port=${port}`], {
    env: { ...process.env, DISPLAY: xvfb.display, LANG: "zh_CN.UTF-8", LANGUAGE: "zh_CN", TZ: "Asia/Shanghai", GDK_BACKEND: "x11" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  driverProc.stderr!.on("data", (d) => { driverErr += String(d); });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/status`);
        if (r.ok) break;
      } catch { /* not listening yet */ }
      if (driverProc.exitCode !== null || Date.now() > deadline) throw new Error(`WebKitWebDriver did not start: ${driverErr}`);
      await sleep(100);
    }
    const driver = await new Builder().usingServer(`http://127.0.0.1:${port}`).withCapabilities({
      browserName: "MiniBrowser",
      "webkitgtk:browserOptions": { binary: miniBrowserPath, args: ["--automation"] },
    }).build();
    await driver.manage().setTimeouts({ pageLoad: 120_000, script: 60_000 });
    await driver.manage().window().setRect({ width: 1200, height: 900 }).catch(() => undefined);
    const handle = await driver.getWindowHandle();
    const page = new WebKitPage(driver, handle);
    const consoleErrors: string[] = [];
    return {
      engine: "webkit", page, consoleErrors,
      collectErrors: async () => {
        const seen = await page.evaluate<string[] | null>("window.__ukeyCsp || null").catch(() => null);
        for (const e of seen ?? []) if (!consoleErrors.includes(e)) consoleErrors.push(e);
      },
      close: async () => {
        await driver.quit().catch(() => undefined);
        await stopChild(driverProc);
        await stopChild(xvfb.child);
      },
    };
  } catch (e) {
    await stopChild(driverProc);
    await stopChild(xvfb.child);
    throw new Error(`${String(e)}\nWebKitWebDriver said: ${driverErr}`);
  }
}

/** Launches `engine` with a fresh profile, its page in zh-CN at 1200×900. */
export function launchEngine(engine: Engine): Promise<EngineBrowser> {
  switch (engine) {
    case "chromium": return launchChromiumEngine();
    case "firefox": return launchFirefoxEngine();
    case "webkit": return launchWebKitEngine();
  }
}
