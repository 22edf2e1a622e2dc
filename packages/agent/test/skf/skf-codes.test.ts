import { test } from "node:test";
import assert from "node:assert/strict";
import { catalogue } from "@ukey/policy";
import { DEVINFO_SIZE, parseDevInfo, parseNameList, eccSignatureToRaw } from "../../src/keys/skf/skf-blobs.js";
import { SAR, SkfCallError, skfError, type SkfContext } from "../../src/keys/skf/skf-codes.js";
import { containerId, containerName, devAuthResponse } from "../../src/keys/skf-backend.js";

// Issue 15: the pure parts of the SKF binding, without a library.

test("every SKF return code a holder can meet maps to a catalogue code, never a raw SAR", () => {
  const cases: [number, SkfContext, string, Record<string, unknown>?][] = [
    [SAR.DEVICE_REMOVED, { kind: "other" }, "TOKEN_REMOVED_DURING_OPERATION"],
    [SAR.PIN_INCORRECT, { kind: "verify-pin", pin: "user", triesLeft: 4 }, "TOKEN_PIN_INCORRECT", { triesLeft: 4, pin: "user" }],
    [SAR.PIN_INCORRECT, { kind: "verify-pin", pin: "admin", triesLeft: 0 }, "TOKEN_PIN_LOCKED", { pin: "admin" }],
    [SAR.PIN_LOCKED, { kind: "verify-pin", pin: "user" }, "TOKEN_PIN_LOCKED"],
    [SAR.PIN_LEN_RANGE, { kind: "verify-pin", pin: "user", triesLeft: 2 }, "TOKEN_PIN_INCORRECT", { triesLeft: 2 }],
    [SAR.PIN_LEN_RANGE, { kind: "set-pin" }, "PIN_TOO_WEAK"],
    [SAR.PIN_INVALID, { kind: "set-pin" }, "PIN_TOO_WEAK"],
    [SAR.NO_ROOM, { kind: "keygen" }, "TOKEN_STORAGE_FULL"],
    [SAR.REACH_MAX_CONTAINER_COUNT, { kind: "keygen" }, "TOKEN_STORAGE_FULL"],
    [SAR.TIMEOUTERR, { kind: "confirm" }, "TOKEN_CONFIRMATION_TIMEOUT"],
    [SAR.TIMEOUTERR, { kind: "other" }, "TOKEN_OPERATION_FAILED"],
    [SAR.USER_CANCEL, { kind: "confirm" }, "TOKEN_CONFIRMATION_CANCELLED"],
    [SAR.KEYNOTFOUNTERR, { kind: "other", id: "6b31" }, "TOKEN_KEY_NOT_FOUND", { id: "6b31" }],
    [SAR.APPLICATION_NOT_EXISTS, { kind: "other" }, "TOKEN_NOT_INITIALISED"],
    [SAR.GENRANDERR, { kind: "keygen" }, "TOKEN_KEYGEN_FAILED"],
    [0x0c0000ff, { kind: "other" }, "TOKEN_OPERATION_FAILED"],
  ];
  for (const [sar, ctx, code, params] of cases) {
    const e = skfError(new SkfCallError("SKF_Something", sar), "do it", ctx);
    assert.equal(e.code, code, `0x${sar.toString(16)} in ${ctx.kind}`);
    assert.ok(code in catalogue);
    for (const [k, v] of Object.entries(params ?? {})) assert.equal(e.params[k], v, `${code}.${k}`);
    const problem = e.toProblem();
    for (const text of [problem.message["zh-CN"], problem.message.en, problem.remedy["zh-CN"], problem.remedy.en]) {
      assert.doesNotMatch(text, /SAR_|0x0[AB]0/i, "the holder's message and remedy name no SKF code (it stays in the detail, for logs)");
    }
    assert.match(problem.detail ?? "", /SKF_Something returned/);
  }
});

test("name lists, DEVINFO and signature blobs are read as GM/T 0016 packs them", () => {
  assert.deepEqual(parseNameList(Buffer.from("dev1\0dev2\0\0")), ["dev1", "dev2"]);
  assert.deepEqual(parseNameList(Buffer.from("\0\0")), []);
  assert.deepEqual(parseNameList(Buffer.alloc(0)), []);
  assert.deepEqual(parseNameList(Buffer.from("only\0\0garbage"), 6), ["only"]);
  const d = Buffer.alloc(DEVINFO_SIZE);
  d[0] = 1; d[1] = 0;
  d.write("Feitian", 2); d.write("Bank", 66); d.write("Zhang San", 130); d.write("PF20FA0000000001", 162);
  d.writeUInt32LE(32768, 214); d.writeUInt32LE(1024, 218);
  const info = parseDevInfo(d);
  assert.deepEqual([info.manufacturer, info.issuer, info.label, info.serial, info.totalSpace, info.freeSpace],
    ["Feitian", "Bank", "Zhang San", "PF20FA0000000001", 32768, 1024]);
  const sig = Buffer.alloc(128);
  sig.fill(1, 32, 64); sig.fill(2, 96, 128);
  assert.deepEqual(eccSignatureToRaw(sig), Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32, 2)]));
  sig[0] = 1;
  assert.throws(() => eccSignatureToRaw(sig), RangeError);
});

test("container names are the ids, printable ASCII of at most 64 octets", () => {
  assert.equal(containerName(containerId("ukey-1a2b")), "ukey-1a2b");
  assert.throws(() => containerName("00ff"), /printable ASCII/);
  assert.throws(() => containerName("xyz"), /hexadecimal/);
  assert.throws(() => containerName("41".repeat(65)), /hexadecimal/);
});

test("device authentication is SM4-ECB of the zero-padded challenge (GB/T 32907 test vector key)", () => {
  // GB/T 32907 appendix A: key = plaintext = 0123456789abcdeffedcba9876543210 gives 681edf34d206965e86b3e94f536e4246.
  const key = Buffer.from("0123456789abcdeffedcba9876543210", "hex");
  assert.equal(devAuthResponse(key, key).toString("hex"), "681edf34d206965e86b3e94f536e4246");
  const short = devAuthResponse(Buffer.from("0102030405060708", "hex"), key);
  assert.equal(short.length, 16);
  assert.notEqual(short.toString("hex"), devAuthResponse(Buffer.from("0102030405060709", "hex"), key).toString("hex"));
});
