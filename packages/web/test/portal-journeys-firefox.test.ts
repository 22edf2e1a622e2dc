import { journeyTests } from "./support/journeys.js";

// The holder's journeys in Firefox ESR, through puppeteer-core over WebDriver BiDi (issue 16): see support/journeys.ts.
journeyTests("firefox");
