import { journeyTests } from "./support/journeys.js";
import { engines } from "./support/engines.js";

// The holder's journeys in three browser engines (issue 16): Chromium through
// playwright-core, Firefox ESR through puppeteer-core over WebDriver BiDi, and
// WebKitGTK through WebKitWebDriver on Xvfb. One server, agent and set of
// SoftHSM2 keys; each engine in turn. See support/journeys.ts.
journeyTests(engines);
