import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { TerminalPrompter } from "../src/terminal-prompter.js";
import { pressButton } from "../src/flows/token-access.js";

// The CLI's words for a key with its own PIN pad and for the key's OK
// button (issue 15 part 5). The prompter is the real one over a stream no
// one writes to: for a pad it must not read anything, not even a PIN file.

test("a key with a PIN pad: the terminal says the PIN goes on the key, reads nothing (not even --pin-file) and hands back no PIN", async () => {
  let screen = "";
  const stdin = new PassThrough();
  const p = new TerminalPrompter({ stdin, err: (s) => { screen += s; } }, "zh", { pin: "123456" });
  assert.equal(await p.pin({ tokenSerial: "PAD0001", tokenLabel: "密码键盘 UKey", reason: "renew", keyPad: true }), "");
  assert.equal(screen, "UKey 密码键盘 UKey（PAD0001）带有密码键盘：PIN 不在电脑上输入，请在 UKey 上输入 PIN 并按确认键。\n");
  // Without the pad the PIN file answers as before.
  assert.equal(await p.pin({ tokenSerial: "T1", tokenLabel: "k", reason: "renew" }), "123456");
});

test("the key's OK button: the terminal prints the wait with the key's timeout when known, in the holder's language", () => {
  for (const [lang, timeout, expected] of [
    ["zh", 30, "· 请在 UKey 上按确认键（OK 键）：30 秒内未按，UKey 会取消这次操作\n"],
    ["en", 30, "· Press OK on your UKey: if it is not pressed within 30 s, the UKey cancels the operation\n"],
    ["zh", undefined, "· 请在 UKey 上按确认键（OK 键）：长时间不按，UKey 会取消这次操作\n"],
  ] as const) {
    let screen = "";
    new TerminalPrompter({ stdin: new PassThrough(), err: (s) => { screen += s; } }, lang).progress(pressButton(timeout));
    assert.equal(screen, expected);
  }
});
