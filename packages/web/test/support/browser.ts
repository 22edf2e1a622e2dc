// Real Chromium for the portal's and console's tests: Debian's /usr/bin/chromium
// driven by playwright-core. There is no skip: without Chromium the tests fail
// and say how to install it.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const chromiumPath = process.env.UKEY_CHROMIUM ?? "/usr/bin/chromium";
const repo = resolve(import.meta.dirname, "../../../..");

/** Builds packages/web/dist when its sources changed (scripts/build-web.sh), so the server has a portal to serve. */
export function buildWeb(): void {
  execFileSync("bash", [join(repo, "scripts/build-web.sh")], { stdio: ["ignore", "pipe", "inherit"], timeout: 300_000 });
  if (!existsSync(join(repo, "packages/web/dist/index.html"))) throw new Error("scripts/build-web.sh made no packages/web/dist/index.html");
}

export interface RunningBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  /** Messages the page logged as errors (CSP violations among them). */
  consoleErrors: string[];
  close(): Promise<void>;
}

/**
 * Launches headless Chromium with a fresh profile (playwright makes a new
 * temporary one each launch). The flags: no sandbox
 * (tests run as root), and no background networking, component updates or
 * sync, which a closed network refuses. `opts.args` adds flags (for example
 * a host name mapped to 127.0.0.1 that Chromium treats as a public site).
 * @throws Error, loudly, when Chromium is not installed.
 */
export async function launchChromium(opts: { args?: string[] } = {}): Promise<RunningBrowser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`\n\n*** CHROMIUM IS REQUIRED: the portal's browser tests drive ${chromiumPath}. Install it: apt-get install chromium (scripts/ensure-system-deps.sh does). ***\n`);
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath, headless: true, timeout: 120_000,
    // The browser's own locale (chromium-l10n): a date field shows 年/月/日, as in a holder's zh-CN Chromium.
    env: { ...process.env, LANG: "zh_CN.UTF-8", LANGUAGE: "zh_CN:zh" },
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", ...(opts.args ?? []),
    ],
  });
  const context = await browser.newContext({ locale: "zh-CN", viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  const consoleErrors: string[] = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  return {
    browser, context, page, consoleErrors,
    close: () => browser.close(),
  };
}

/** Console errors other than failed requests the test provoked on purpose. */
export function cspViolations(errors: string[]): string[] {
  return errors.filter((e) => /Content Security Policy|Refused to (execute|load|apply|evaluate)/i.test(e));
}
