// The entry of the built program (scripts/build.mjs bundles from here).
import { main } from "./cli.js";

await main();
