import { test, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { createSoftHsmToken } from "../../ca/test/support/softhsm.js";
import { addHolder, keyArgs, openssl, opensslCsr, runUkeyServer, startUkeyServer, tempDir } from "./support/fixtures.js";

// The whole operator path with the CA keys in a real PKCS#11 token (SoftHSM2).
const t = tempDir();
const hsm = createSoftHsmToken("ukey-server-ca");
after(() => { t.cleanup(); hsm.cleanup(); });

test("init, issue, revoke and OCSP with CA keys in SoftHSM2; nothing of the key on disk", async () => {
  const pinFile = t.write("hsm-pin", `${hsm.pin}\n`);
  const env = { UKEY_HSM_PIN_FILE: pinFile, SOFTHSM2_CONF: hsm.conf };
  const dataDir = t.path("data");
  const init = runUkeyServer(["init", "--data-dir", dataDir, "--hsm-module", hsm.module, "--hsm-token", hsm.tokenLabel, "--json"], env);
  assert.equal(init.status, 0, init.stdout + init.stderr);
  assert.equal(init.json<{ keyStore: string }>().keyStore, "pkcs11");
  assert.ok(!existsSync(`${dataDir}/ca/issuing.key.pem`), "no key file with an HSM");
  assert.equal(JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8")).ca.keyStore.type, "pkcs11");

  assert.equal(addHolder(t, dataDir, env, "HSM1").status, 0);
  const { csr } = opensslCsr(t, "leaf", keyArgs.p256);
  const issued = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "HSM1", "--profile", "personal", "--csr", csr, "--out", t.path("leaf.pem"), "--json"], env);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);
  const v = openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, t.path("leaf.pem")]);
  assert.equal(v.status, 0, v.out);

  const wrongPin = t.write("wrong-pin", "0000-wrong\n");
  const refused = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], { ...env, UKEY_HSM_PIN_FILE: wrongPin });
  assert.equal(refused.status, 1);
  assert.equal(JSON.parse(refused.stdout.trim()).error.code, "HSM_PIN_INCORRECT");

  const server = await startUkeyServer(dataDir, env);
  try {
    const r = openssl(["ocsp", "-issuer", `${dataDir}/ca/issuing.cer.pem`, "-cert", t.path("leaf.pem"), "-url", `${server.url}/ocsp`, "-CAfile", `${dataDir}/ca/root.cer.pem`]);
    assert.match(r.out, /Response verify OK/);
    assert.match(r.out, /: good/);
  } finally {
    await server.stop();
  }
});

test("init with an unknown token or module is refused and leaves no configuration", () => {
  const pinFile = t.write("hsm-pin2", `${hsm.pin}\n`);
  const env = { UKEY_HSM_PIN_FILE: pinFile, SOFTHSM2_CONF: hsm.conf };
  const r1 = runUkeyServer(["init", "--data-dir", t.path("d1"), "--hsm-module", hsm.module, "--hsm-token", "no-such-token", "--json"], env);
  assert.equal(JSON.parse(r1.stdout.trim()).error.code, "HSM_TOKEN_NOT_FOUND");
  assert.ok(!existsSync(t.path("d1/config.json")));
  const r2 = runUkeyServer(["init", "--data-dir", t.path("d2"), "--hsm-module", "/nonexistent/lib.so", "--hsm-token", hsm.tokenLabel, "--json"], env);
  assert.equal(JSON.parse(r2.stdout.trim()).error.code, "HSM_MODULE_LOAD_FAILED");
  assert.ok(!existsSync(t.path("d2/config.json")));
});
