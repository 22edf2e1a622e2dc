import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { isUkeyError } from "@ukey/policy";
import type { Store } from "@ukey/store";
import { OutboxSender, maskRecipient, scrub, secretsOf, type OutgoingMessage } from "../src/delivery/index.js";
import { captureLog, clock, codeMessage, freshCode, openTestStore } from "./delivery-support.js";
import type { TempDir } from "./support/fixtures.js";

describe("masking recipients", () => {
  const cases: Array<[string, OutgoingMessage["channel"], string, string]> = [
    ["a mainland mobile number as seed 000 shows it", "sms", "15812345675", "15*****5"],
    ["a number with +86 and spaces", "sms", "+86 158 1234 5675", "15*****5"],
    ["a number with 0086", "sms", "0086-138-0000-0001", "13*****1"],
    ["a landline keeps its own first digits", "sms", "010-8888 1234", "01*****4"],
    ["a number too short to show any digit", "sms", "123", "*****"],
    ["an e-mail address", "email", "zhang.san@example.com", "z***@example.com"],
    ["a one-letter local part", "email", "z@example.cn", "z***@example.cn"],
    ["something that is not an address", "email", "nobody", "***"],
  ];
  for (const [name, channel, to, masked] of cases) {
    test(name, () => assert.equal(maskRecipient(channel, to), masked));
  }
});

describe("finding a message's secrets", () => {
  const m = (text: string, redactedText: string, purpose: OutgoingMessage["purpose"] = "otp") => ({ text, redactedText, purpose });
  const found: Array<[string, ReturnType<typeof m>, string[]]> = [
    ["one code", m("code 123456 ok", "code ****** ok"), ["123456"]],
    ["the same code twice", m("码 123456；code 123456.", "码 ******；code ******."), ["123456", "123456"]],
    ["a reference number and an authorization code", m("ref R-77 auth ABCD-EFGH", "ref ****** auth ******", "enrolment"), ["R-77", "ABCD-EFGH"]],
    ["a code at the very start and end", m("123456 then 654321", "****** then ******"), ["123456", "654321"]],
    ["a reminder with no secret", m("Your certificate expires soon.", "Your certificate expires soon.", "reminder"), []],
  ];
  for (const [name, msg, secrets] of found) {
    test(`finds ${name}`, () => assert.deepEqual(secretsOf(msg), secrets));
  }
  const refused: Array<[string, ReturnType<typeof m>]> = [
    ["a code message that redacts nothing", m("code 123456", "code 123456")],
    ["an enrolment message that redacts nothing", m("auth ABCD", "auth ABCD", "enrolment")],
    ["a redaction of some other text", m("code 123456", "PIN ******")],
    ["a code left in clear further on", m("code 123456, again 123456", "code ******, again 123456")],
    ["a different text with nothing replaced", m("code 123456", "code 000000", "notice")],
    ["an empty secret", m("code  ok", "code ****** ok")],
  ];
  for (const [name, msg] of refused) {
    test(`refuses ${name}`, () => assert.throws(() => secretsOf(msg), (e: unknown) => isUkeyError(e, "INTERNAL")));
  }
  test("scrubs every secret out of a text", () => {
    assert.equal(scrub("gateway said: bad code 123456 for 123456", ["123456"]), "gateway said: bad code ****** for ******");
  });
});

describe("the outbox sender", () => {
  let store: Store;
  let t: TempDir;
  let close: () => Promise<void>;
  before(async () => ({ store, t, close } = await openTestStore()));
  after(() => close());

  test("appends the whole message to the file and records it redacted", async () => {
    const file = t.path("outbox.jsonl");
    const { log, lines } = captureLog();
    const sender = new OutboxSender({ outbox: store.outbox, clock, log, file });
    const code = freshCode();
    const sms = codeMessage(code);
    const email = codeMessage(code, { channel: "email", to: "zhang.san@example.com", purpose: "enrolment", holderId: undefined });
    const results = [await sender.send(sms), await sender.send(email)];
    assert.deepEqual(results.map((r) => r.status), ["sent", "sent"]);

    const written = readFileSync(file, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(written, [
      { id: results[0]!.id, at: "2026-11-21T10:00:00.000Z", channel: "sms", to: sms.to, subject: sms.subject, text: sms.text, purpose: "otp", holderId: "H001" },
      { id: results[1]!.id, at: "2026-11-21T10:00:00.000Z", channel: "email", to: email.to, subject: email.subject, text: email.text, purpose: "enrolment", holderId: null },
    ]);
    assert.equal(statSync(file).mode & 0o777, 0o600);

    const at = clock.now().getTime();
    assert.deepEqual(await store.outbox.get(results[0]!.id), {
      id: results[0]!.id, channel: "sms", transport: "outbox", recipient: "15*****5", purpose: "otp", holderId: "H001",
      redactedText: sms.redactedText, status: "sent", attempts: 1, lastError: null, nextAttemptAt: null, createdAt: at, sentAt: at,
    });
    assert.equal((await store.outbox.get(results[1]!.id))?.recipient, "z***@example.com");
    assert.equal(lines.length, 2);
    assert.ok(lines.every((l) => !l.includes(code) && !l.includes("zhang.san") && !l.includes("1234 5675")), lines.join("\n"));
  });

  test("tightens an outbox file that was left readable by others", async () => {
    const file = t.path("wide.jsonl");
    writeFileSync(file, "", { mode: 0o644 });
    await new OutboxSender({ outbox: store.outbox, clock, file }).send(codeMessage(freshCode()));
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  test("records a failure and throws CODE_DELIVERY_FAILED when the file cannot be written", async () => {
    const sender = new OutboxSender({ outbox: store.outbox, clock, file: t.path("no-such-dir/outbox.jsonl"), newId: () => "outbox-fail-1" });
    await assert.rejects(sender.send(codeMessage(freshCode())), (e: unknown) => {
      assert.ok(isUkeyError(e, "CODE_DELIVERY_FAILED"), String(e));
      assert.deepEqual(e.params, { channel: "sms" });
      assert.match(String(e.detail), /ENOENT.*outbox-fail-1/);
      return true;
    });
    const row = await store.outbox.get("outbox-fail-1");
    assert.deepEqual([row?.status, row?.attempts, row?.lastError], ["failed", 1, "cannot append to the outbox file (ENOENT)"]);
  });

  test("refuses a code message whose redacted text still holds the code, and records nothing", async () => {
    const code = freshCode();
    const sender = new OutboxSender({ outbox: store.outbox, clock, file: t.path("refused.jsonl"), newId: () => "outbox-refused-1" });
    await assert.rejects(sender.send({ ...codeMessage(code), redactedText: codeMessage(code).text }), (e: unknown) => isUkeyError(e, "INTERNAL"));
    assert.equal(await store.outbox.get("outbox-refused-1"), undefined);
    assert.throws(() => statSync(t.path("refused.jsonl")));
  });
});
