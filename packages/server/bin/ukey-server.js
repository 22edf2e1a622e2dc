#!/usr/bin/env node
// In a development checkout (tsx installed) this runs the TypeScript sources,
// so there is no build step to forget; in a production install
// (`npm ci --omit=dev`, no tsx) it runs the bundle that `node scripts/build.mjs` made.
let register;
try {
  ({ register } = await import("tsx/esm/api"));
} catch {
  register = undefined;
}
if (register) {
  register();
  const { main } = await import("../src/cli.ts");
  await main();
} else {
  try {
    await import("../dist/ukey-server.mjs");
  } catch (e) {
    if (e?.code !== "ERR_MODULE_NOT_FOUND" || !String(e.message).includes("dist/ukey-server.mjs")) throw e;
    process.stderr.write("ukey-server: this installation has no build (packages/server/dist). Run `node scripts/build.mjs` where the development dependencies are installed.\n");
    process.exitCode = 1;
  }
}
