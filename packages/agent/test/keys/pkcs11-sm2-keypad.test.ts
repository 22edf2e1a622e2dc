import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { defaultKeyVendors, isUkeyError, mergeKeyVendorTables, parseKeyVendorTable, type KeyVendorTable } from "@ukey/policy";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import { CK } from "../../src/keys/cryptoki.js";
import { Pkcs11Backend } from "../../src/keys/pkcs11-backend.js";
import { checkPkcs11Sm2 } from "../../src/keys/pkcs11-sm2.js";
import { login } from "../../src/flows/token-access.js";
import type { Prompter, ProgressEvent } from "../../src/prompter.js";

// SM2 on PKCS#11 keys and the PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH),
// against the one real PKCS#11 module here, SoftHSM2. SoftHSM2 has no SM2
// mechanism and no PIN pad, so neither an SM2 key generation nor a PIN-pad
// login runs here: these tests check everything up to the module call
// (the table's values, C_GetMechanismList's real answer, the refusal code,
// that a token without a pad is asked for its PIN) and say so in the output.

let hsm: SoftHsmToken;
let backend: Pkcs11Backend;

before(() => {
  hsm = createSoftHsmToken("sm2-keypad", "123456", "654321");
  backend = new Pkcs11Backend(hsm.module);
});
after(async () => {
  await backend?.close();
  hsm?.cleanup();
});

/** The public values of xipki's vendor.conf for TASS HSMs (docs/key-vendors.md), here matched to SoftHSM2's token. */
const tassLikeSoftHsm: KeyVendorTable = mergeKeyVendorTables(defaultKeyVendors, parseKeyVendorTable([{
  id: "pkcs11-softhsm2",
  match: { manufacturerId: "SoftHSM project", model: "SoftHSM v2" },
  vendor: { zh: "SoftHSM（测试用软件令牌）", en: "SoftHSM (software token for tests)" },
  pkcs11Sm2: { keyType: "0x80000004", keyPairGen: "0x80008001", sm3WithSm2: "0x80008100", sm2: "0x80008000" },
}]));

test("the vendor table reads SM2 values as integers or 0x strings, and refuses values that are not vendor-defined", () => {
  const entry = tassLikeSoftHsm.find((e) => e.id === "pkcs11-softhsm2")!;
  assert.deepEqual(entry.pkcs11Sm2, { keyType: 0x80000004, keyPairGen: 0x80008001, sm3WithSm2: 0x80008100, sm2: 0x80008000 });
  const bad = (pkcs11Sm2: unknown) => () => parseKeyVendorTable([{ id: "x", match: { manufacturerId: "X" }, vendor: { zh: "甲", en: "X" }, pkcs11Sm2 }]);
  // CKM_EC_KEY_PAIR_GEN is a standard mechanism, not a vendor's SM2.
  assert.throws(bad({ keyType: 3, keyPairGen: CK.CKM_EC_KEY_PAIR_GEN, sm3WithSm2: 0x80008100 }), (e) => isUkeyError(e, "KEY_VENDOR_TABLE_INVALID") && /keyType: must be vendor-defined/.test(String(e.params.reason)));
  assert.throws(bad({ keyType: "0x80000004", keyPairGen: "80008001", sm3WithSm2: "0x80008100" }), (e) => isUkeyError(e, "KEY_VENDOR_TABLE_INVALID") && /keyPairGen/.test(String(e.params.reason)));
  assert.throws(bad({ keyType: "0x80000004", keyPairGen: "0x80008001" }), (e) => isUkeyError(e, "KEY_VENDOR_TABLE_INVALID") && /sm3WithSm2/.test(String(e.params.reason)));
  assert.throws(bad({ keyType: "0x80000004", keyPairGen: "0x80008001", sm3WithSm2: "0x80008100", sm9: 1 }), (e) => isUkeyError(e, "KEY_VENDOR_TABLE_INVALID"));
});

test("SoftHSM2 offers no SM2: C_GetMechanismList lacks the configured key pair generation, so TOKEN_MECHANISM_MISSING names it before any key is made", async () => {
  const [token] = await backend.listTokens();
  assert.ok(token);
  const offered = await backend.mechanisms(token.serial);
  // The list is the module's own: SoftHSM2 has EC key generation and ECDSA, and nothing vendor-defined.
  assert.ok(offered.includes(CK.CKM_EC_KEY_PAIR_GEN) && offered.includes(CK.CKM_ECDSA), `SoftHSM2's list: ${offered.length} mechanisms`);
  assert.deepEqual(offered.filter((m) => m >= 0x80000000), [], "SoftHSM2 lists no vendor-defined mechanism");
  console.log("NOTE: no PKCS#11 module with SM2 is available here (SoftHSM2 has none): SM2 key generation and SM3withSM2 signing over PKCS#11 are NOT exercised;"
    + ` this test checks the vendor values and the refusal up to C_GetMechanismList (SoftHSM2 lists ${offered.length} mechanisms, none vendor-defined).`);

  await assert.rejects(checkPkcs11Sm2(backend, token, tassLikeSoftHsm), (e) => {
    assert.ok(isUkeyError(e, "TOKEN_MECHANISM_MISSING"), String(e));
    assert.equal(e.params.mechanism, "SM2 key pair generation (0x80008001)");
    assert.equal(e.params.module, hsm.module);
    return true;
  });
  // A key whose entry gives no SM2 values: the same code, saying SM2 as a whole is not configured.
  await assert.rejects(checkPkcs11Sm2(backend, token, defaultKeyVendors), (e) => isUkeyError(e, "TOKEN_MECHANISM_MISSING") && e.params.mechanism === "SM2" && /no entry of the key vendor table/.test(e.detail ?? ""));
  // With values the module does list (stand-ins to reach the second check), the SM3withSM2 one is checked too.
  const ecAsIf: KeyVendorTable = [{ ...tassLikeSoftHsm.find((e) => e.id === "pkcs11-softhsm2")!, pkcs11Sm2: { keyType: 0x80000004, keyPairGen: CK.CKM_EC_KEY_PAIR_GEN, sm3WithSm2: 0x80008100 } }];
  await assert.rejects(checkPkcs11Sm2(backend, token, ecAsIf), (e) => isUkeyError(e, "TOKEN_MECHANISM_MISSING") && e.params.mechanism === "SM3withSM2 (0x80008100)");
});

function recordingPrompter(): Prompter & { asked: Parameters<Prompter["pin"]>[0][]; events: ProgressEvent[] } {
  const asked: Parameters<Prompter["pin"]>[0][] = [];
  const events: ProgressEvent[] = [];
  const no = () => Promise.reject(new Error("not asked in this test"));
  return {
    asked, events,
    pin: async (r) => { asked.push(r); return hsm.pin; },
    idNumber: no, oneTimeCode: no, stepUp: no, confirm: no,
    progress: (e) => { events.push(e); },
  };
}

test("a token without a PIN pad (SoftHSM2 sets no CKF_PROTECTED_AUTHENTICATION_PATH) is asked for its PIN as usual", async () => {
  const [token] = await backend.listTokens();
  assert.ok(token);
  assert.equal(token.pin.keyPad, undefined, "SoftHSM2 reports no PIN pad");
  console.log("NOTE: SoftHSM2 cannot show a PIN pad (no CKF_PROTECTED_AUTHENTICATION_PATH, and C_Login with a NULL PIN is not a pad login there):"
    + " the PIN-pad login (C_Login with NULL) is NOT exercised against a module here; the PIN page's pad variant is tested in pin-page-browser.test.ts.");
  const p = recordingPrompter();
  const { session, pin } = await login(backend, p, token.serial, "renew");
  await session.close();
  assert.equal(pin, hsm.pin);
  assert.equal(p.asked.length, 1);
  assert.equal(p.asked[0]!.keyPad, undefined, "no pad: the PIN is asked");
  assert.deepEqual(p.events.filter((e) => e.step === "key-pad"), []);
});

test("with an empty PIN a token without a pad is refused as a wrong PIN, never logged in", async () => {
  const [token] = await backend.listTokens();
  await assert.rejects(backend.open(token!.serial, ""), (e) => isUkeyError(e, "TOKEN_PIN_INCORRECT"));
});
