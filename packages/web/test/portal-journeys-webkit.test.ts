import { journeyTests } from "./support/journeys.js";

// The holder's journeys in WebKitGTK, through WebKitWebDriver on Xvfb (issue 16): see support/journeys.ts.
journeyTests("webkit");
