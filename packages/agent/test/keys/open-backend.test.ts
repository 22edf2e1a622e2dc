import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { isUkeyError } from "@ukey/policy";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { findModules, knownModules } from "../../src/keys/module-paths.js";
import { openBackend } from "../../src/keys/open-backend.js";
import { tempDir } from "./support/openssl.js";

let hsm: SoftHsmToken;
let tmp: { dir: string; cleanup(): void };
before(() => {
  hsm = createSoftHsmToken("agent-open", "123456", "654321");
  tmp = tempDir("ukey-open-");
});
after(() => {
  hsm.cleanup();
  tmp.cleanup();
});

describe("openBackend", () => {
  test("an explicit file wins, then an explicit module, then UKEY_PKCS11_MODULE", async () => {
    const file = join(tmp.dir, "holder.p12");
    let b = await openBackend({ pkcs12: file, module: hsm.module, env: { UKEY_PKCS11_MODULE: hsm.module } });
    assert.deepEqual([b.kind, b.location], ["pkcs12", file]);
    await b.close();
    b = await openBackend({ module: hsm.module, env: { UKEY_PKCS11_MODULE: "/nowhere/lib.so" } });
    assert.deepEqual([b.kind, b.location], ["pkcs11", hsm.module]);
    assert.ok((await b.listTokens()).some((t) => t.serial === hsm.tokenSerial));
    await b.close();
    b = await openBackend({ env: { UKEY_PKCS11_MODULE: hsm.module }, discovered: [] });
    assert.equal(b.kind, "pkcs11");
    await b.close();
  });

  test("a named module that cannot be loaded is an error, not a silent fallback", async () => {
    for (const [module, code] of [["/nowhere/lib.so", "TOKEN_DRIVER_MISSING"], ["/bin/ls", "HSM_MODULE_LOAD_FAILED"]] as const) {
      await assert.rejects(openBackend({ module, discovered: [] }), (e: unknown) => isUkeyError(e, code));
      await assert.rejects(openBackend({ env: { UKEY_PKCS11_MODULE: module }, discovered: [] }), (e: unknown) => isUkeyError(e, code));
    }
    await assert.rejects(openBackend({ pkcs12: " " }), (e: unknown) => isUkeyError(e, "CLI_USAGE"));
  });

  test("discovery takes the first well-known module with a token present, else the default file token", async () => {
    let b = await openBackend({ env: {}, discovered: ["/bin/ls", join(tmp.dir, "gone.so"), hsm.module] });
    assert.deepEqual([b.kind, b.location], ["pkcs11", hsm.module]);
    await b.close();
    b = await openBackend({ env: {}, discovered: ["/bin/ls"], home: join(tmp.dir, "home") });
    assert.deepEqual([b.kind, b.location], ["pkcs12", join(tmp.dir, "home", "file-token.p12")]);
    assert.deepEqual(await b.listTokens(), [], "the default file token does not exist until it is initialised");
    await b.close();
    b = await openBackend({ env: { UKEY_AGENT_HOME: join(tmp.dir, "env-home") }, discovered: [] });
    assert.equal(b.location, join(tmp.dir, "env-home", "file-token.p12"));
    await b.close();
  });
});

describe("findModules", () => {
  test("explicit path first, then UKEY_PKCS11_MODULE, then the well-known paths of the platform that exist", () => {
    const present = new Set(["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/libcastle.so.1.0.0", "/usr/local/lib/libcastle.1.0.0.dylib"]);
    const exists = (p: string) => present.has(p);
    assert.deepEqual(findModules({ env: {}, platform: "linux", exists }), ["/usr/lib/libcastle.so.1.0.0", "/usr/lib/softhsm/libsofthsm2.so"]);
    assert.deepEqual(findModules({ env: {}, platform: "darwin", exists }), ["/usr/local/lib/libcastle.1.0.0.dylib"]);
    assert.deepEqual(
      findModules({ explicit: "/opt/v/lib.so", env: { UKEY_PKCS11_MODULE: "/usr/lib/softhsm/libsofthsm2.so" }, platform: "linux", exists }),
      ["/opt/v/lib.so", "/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/libcastle.so.1.0.0"]);
    // The real machine: SoftHSM2 and OpenSC are installed for the tests.
    const here = findModules({ env: {} });
    assert.ok(here.includes(hsm.module), here.join(", "));
    assert.ok(knownModules.some((m) => m.vendor === "Feitian"));
  });
});
