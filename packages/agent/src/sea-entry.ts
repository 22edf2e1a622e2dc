// The entry of the self-contained executable (scripts/build-agent-installers.mjs):
// a CommonJS bundle, so no top-level await.
import { main } from "./cli.js";

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
