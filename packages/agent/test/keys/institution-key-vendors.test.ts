import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { defaultKeyVendors, isUkeyError } from "@ukey/policy";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { initialisedDataDir, startUkeyServer, tempDir, type RunningServer, type TempDir } from "../../../server/test/support/fixtures.js";
import { testBundles } from "../../../server/test/support/test-bundle.js";
import { doctorFlow } from "../../src/flows/doctor.js";
import type { DoctorCheck, TokenStatus } from "../../src/flows/flow-types.js";
import { flows } from "../../src/flows/index.js";
import { forgetKeyVendors, institutionKeyVendors, openInstitutionBackend } from "../../src/flows/key-vendor-source.js";
import { statusFlow } from "../../src/flows/status.js";
import { openSession } from "../../src/flows/token-access.js";
import type { KeyStoreBackend } from "../../src/keys/key-store.js";
import { openBackend } from "../../src/keys/open-backend.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import type { Prompter } from "../../src/prompter.js";
import { portal, startTestAgent, waitForOperation } from "../local-api/support.js";

// Issue 15 part 6: the institution's key vendor table (GET /api/v1/key-vendors)
// reaches every path that opens a PKCS#11 key, not only renewal's login:
// `ukey doctor`, the CLI's status and the local API's status and doctor.
// The token is SoftHSM2, the server is real. The operator's entry for
// SoftHSM2's token model names SM2 mechanisms (TASS's values) that SoftHSM2
// does not have, and a vendor name of its own: doctor must then say
// TOKEN_MECHANISM_MISSING, as renewal refuses, and status must name the
// operator's vendor. No PKCS#11 module with SM2 runs here, so the check
// that passes is not exercised on a real SM2 token.

const operatorName = { zh: "本行测试令牌（SoftHSM2）", en: "The bank's test token (SoftHSM2)" };
const tass = { keyType: "0x80000004", keyPairGen: "0x80008001", sm3WithSm2: "0x80008100" };
const missing = "SM2 key pair generation (0x80008001)";
const unreachable = { url: "http://127.0.0.1:9" };

let t: TempDir;
let server: RunningServer;
let hsm: SoftHsmToken;
const opened: KeyStoreBackend[] = [];
const track = <B extends KeyStoreBackend>(b: B): B => { opened.push(b); return b; };

before(async () => {
  hsm = createSoftHsmToken("vendor-table-key");
  console.log(`# PKCS#11 module: ${hsm.module} (SoftHSM2; it has no SM2 mechanism, so only the refusal is shown)`);
  t = tempDir("ukey-vendor-table-");
  const { dataDir, env } = initialisedDataDir(t);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8")) as Record<string, unknown>;
  // Replaces the built-in SoftHSM2 entry (same id): the operator's name, generation and SM2 values.
  cfg.keyVendors = [{ id: "pkcs11-softhsm2", match: { manufacturerId: "SoftHSM project", model: "SoftHSM v2" }, vendor: operatorName, generation: 3, pkcs11Sm2: tass }];
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  server = await startUkeyServer(dataDir, env);
  forgetKeyVendors();
});
after(async () => {
  for (const b of opened) await b.close();
  await server?.stop();
  hsm?.cleanup();
  t?.cleanup();
});

const check = (checks: DoctorCheck[], id: DoctorCheck["id"]) => checks.find((c) => c.id === id);

test("openInstitutionBackend: the store carries the server's table; an unreachable server or none gives the built-in one, as renewal falls back", async () => {
  const b = track(await openInstitutionBackend({ url: server.url }, { module: hsm.module }));
  assert.equal(b.kind, "pkcs11");
  assert.equal(b.keyVendors?.find((e) => e.id === "pkcs11-softhsm2")?.pkcs11Sm2?.keyPairGen, 0x80008001);
  const why: unknown[] = [];
  const off = track(await openInstitutionBackend(unreachable, { module: hsm.module }, (e) => why.push(e)));
  assert.equal(off.keyVendors, defaultKeyVendors);
  assert.ok(isUkeyError(why[0], "SERVER_UNREACHABLE"), String(why[0]));
  assert.equal(await institutionKeyVendors(unreachable), defaultKeyVendors, "renewal's source gives the same fallback");
  const none = track(await openInstitutionBackend({ url: "" }, { module: hsm.module }));
  assert.equal(none.keyVendors, defaultKeyVendors);
});

test("doctor on SoftHSM2 with the institution's table: TOKEN_MECHANISM_MISSING, the same refusal renewal's login gives; with the built-in table no SM2 check", async () => {
  const b = track(await openInstitutionBackend({ url: server.url }, { module: hsm.module }));
  const checks = await doctorFlow({ backend: b, server: { url: "" } });
  assert.equal(check(checks, "token")?.ok, true);
  const mech = check(checks, "mechanisms");
  assert.equal(mech?.ok, false, JSON.stringify(checks));
  assert.equal(mech?.code, "TOKEN_MECHANISM_MISSING");
  assert.equal(mech?.params?.mechanism, missing);
  assert.equal(mech?.zh, `UKey 驱动没有提供 ${missing}`);

  // Renewal logs in with institutionKeyVendors: the same values, and generation is refused for the same mechanism.
  const no = () => Promise.reject(new Error("not asked in this test"));
  const prompter: Prompter = { pin: async () => hsm.pin, idNumber: no, oneTimeCode: no, stepUp: no, confirm: no, progress: () => undefined };
  const session = await openSession(b, prompter, hsm.tokenSerial, "renew", { vendors: await institutionKeyVendors({ url: server.url }) });
  try {
    assert.equal(session.pkcs11Sm2?.keyPairGen, 0x80008001);
    await assert.rejects(session.generateKeyPair("sm2", "sm2-key"), (e) => isUkeyError(e, "TOKEN_MECHANISM_MISSING") && e.params.mechanism === missing);
  } finally {
    await session.close();
  }

  // The built-in table names no SM2 values for SoftHSM2: nothing to check, nothing refused.
  const builtIn = track(await openInstitutionBackend(unreachable, { module: hsm.module }));
  assert.equal(check(await doctorFlow({ backend: builtIn, server: { url: "" } }), "mechanisms"), undefined);
});

test("status names the key by the institution's table", async () => {
  const b = track(await openInstitutionBackend({ url: server.url }, { module: hsm.module }));
  const [status] = await statusFlow({ backend: b, server: { url: "" } });
  assert.deepEqual(status?.vendor, { name: operatorName, generation: "3" });
  const builtIn = track(await openInstitutionBackend(unreachable, { module: hsm.module }));
  const [plain] = await statusFlow({ backend: builtIn, server: { url: "" } });
  assert.equal(plain?.vendor?.name.zh, "SoftHSM（测试用软件令牌）");
});

test("`ukey doctor` and `ukey status` read the table from the server themselves", () => {
  const env = { PATH: process.env.PATH ?? "", HOME: t.dir, UKEY_AGENT_HOME: t.path("agent-home"), SOFTHSM2_CONF: hsm.conf, LANG: "zh_CN.UTF-8" };
  const ukey = (args: string[]) => spawnSync(process.execPath, [testBundles().agent, ...args, "--module", hsm.module, "--server", server.url, "--json"], { encoding: "utf8", env });
  const doctor = ukey(["doctor"]);
  const out = JSON.parse(doctor.stdout) as { checks: DoctorCheck[] };
  assert.notEqual(doctor.status, 0, "a failing check fails the command");
  assert.equal(check(out.checks, "mechanisms")?.code, "TOKEN_MECHANISM_MISSING", doctor.stdout);
  assert.equal(check(out.checks, "mechanisms")?.params?.mechanism, missing);
  const status = ukey(["status"]);
  assert.equal(status.status, 0, status.stderr);
  const tokens = (JSON.parse(status.stdout) as { tokens: TokenStatus[] }).tokens;
  assert.deepEqual(tokens[0]?.vendor, { name: operatorName, generation: "3" });
});

test("the local API's status and doctor use the institution's table, even over a store opened without it", async () => {
  // A store opened with the built-in table (as the agent's would be had the server been down at its start).
  const agent = await startTestAgent(flows, { server: { url: server.url }, backendFactory: () => openBackend({ module: hsm.module }) });
  try {
    const token = await agent.pair(portal);
    const tokens = await agent.call("/v1/tokens", { token });
    assert.equal(tokens.status, 200, tokens.text);
    assert.deepEqual((tokens.json as unknown as TokenStatus[])[0]?.vendor, { name: operatorName, generation: "3" });
    const r = await agent.call("/v1/operations", { token, body: { kind: "doctor" } });
    assert.equal(r.status, 202, r.text);
    const v = await waitForOperation(agent, token, (r.json as unknown as OperationView).id, (x) => x.state === "done" || x.state === "failed");
    assert.equal(v.state, "done", JSON.stringify(v.error));
    const mech = check(v.result as DoctorCheck[], "mechanisms");
    assert.equal(mech?.code, "TOKEN_MECHANISM_MISSING", JSON.stringify(v.result));
    assert.equal(mech?.params?.mechanism, missing);
  } finally {
    await agent.close();
  }
});
