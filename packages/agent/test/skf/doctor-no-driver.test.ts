import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { doctorFlow } from "../../src/flows/doctor.js";
import { openBackend } from "../../src/keys/open-backend.js";
import { SkfBackend } from "../../src/keys/skf-backend.js";

// Issue 15 part 6: with no PKCS#11 module and no SKF library, `ukey doctor`
// says no UKey driver is installed, instead of "loaded file-token.p12" and
// "no key found". A file token asked for, or already there, is still checked as one.

test("doctor names the missing UKey driver when the agent fell back to a file token that does not exist", async () => {
  const home = mkdtempSync(join(tmpdir(), "ukey-doctor-"));
  try {
    const backend = await openBackend({ env: {}, home, discovered: [], discoveredSkf: [] });
    assert.equal(backend.kind, "pkcs12", "nothing found: the default file token");
    const server = { url: "" };
    const checks = await doctorFlow({ backend, server, fileTokenFallback: true });
    const module = checks.find((c) => c.id === "module")!;
    assert.equal(module.ok, false);
    assert.equal(module.code, "TOKEN_DRIVER_MISSING");
    assert.match(module.zh, /没有安装 UKey 驱动程序/);
    assert.match(module.en, /No UKey driver is installed/);
    assert.equal(checks.some((c) => c.id === "token"), false, "no misleading \"no key found\" beside it");
    // Asked for (--file): the file token is checked as one.
    const asked = await doctorFlow({ backend, server, fileTokenFallback: false });
    assert.equal(asked.find((c) => c.id === "module")?.ok, true);
    await backend.close();
    // A library that is not SKF: the check carries the path, so the message reads whole.
    const libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    const error = await SkfBackend.open(libc).then(() => undefined, (e: unknown) => e);
    const bad = await doctorFlow({ backend: { error, location: libc }, server });
    assert.equal(bad[0]!.code, "SKF_LIBRARY_INVALID");
    assert.equal(bad[0]!.params?.module, libc);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
