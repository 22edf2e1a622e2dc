import { journeyTests } from "./support/journeys.js";

// The holder's journeys in Chromium, through playwright-core (issue 16): see support/journeys.ts.
journeyTests("chromium");
