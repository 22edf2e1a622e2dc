import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { isUkeyError } from "@ukey/policy";
import type { Store } from "@ukey/store";
import { OutboxSender, SmtpSender, WebhookSender, createSenders, deliveryConfigSchema } from "../src/delivery/index.js";
import { clock, codeMessage, freshCode, openTestStore, startGateway } from "./delivery-support.js";
import type { TempDir } from "./support/fixtures.js";

describe("the delivery configuration", () => {
  test("an empty section sends both channels to the outbox file", () => {
    assert.deepEqual(deliveryConfigSchema.parse({}), {
      sms: { type: "outbox", file: "outbox.jsonl" },
      email: { type: "outbox", file: "outbox.jsonl" },
    });
  });

  test("a webhook and an SMTP server get their safe defaults", () => {
    const c = deliveryConfigSchema.parse({
      sms: { type: "webhook", url: "https://sms.bank.example/send", secretFile: "secrets/sms-hmac.key" },
      email: { type: "smtp", host: "mail.bank.example", from: "noreply@bank.example" },
    });
    assert.deepEqual(c, {
      sms: { type: "webhook", url: "https://sms.bank.example/send", secretFile: "secrets/sms-hmac.key", timeoutMs: 5000, attempts: 3, retryDelayMs: 500 },
      email: { type: "smtp", host: "mail.bank.example", port: 587, secure: false, requireTls: true, from: "noreply@bank.example", timeoutMs: 10_000 },
    });
  });

  const accepted: Array<[string, unknown]> = [
    ["plain http to a gateway on this machine", { sms: { type: "webhook", url: "http://127.0.0.1:9000/sms", secretFile: "k" } }],
    ["plain http to localhost", { sms: { type: "webhook", url: "http://localhost:9000/sms", secretFile: "k" } }],
    ["SMTP with sign-in", { email: { type: "smtp", host: "h", from: "a@b.example", user: "u", passwordFile: "p", secure: true, port: 465 } }],
  ];
  for (const [name, input] of accepted) {
    test(`accepts ${name}`, () => assert.equal(deliveryConfigSchema.safeParse(input).success, true));
  }

  const webhook = { type: "webhook", url: "https://sms.bank.example/send", secretFile: "k" };
  const smtp = { type: "smtp", host: "mail.bank.example", from: "noreply@bank.example" };
  const refused: Array<[string, unknown, string]> = [
    ["an unknown key", { fax: { type: "outbox" } }, ""],
    ["an unknown key in a channel", { sms: { type: "outbox", path: "x" } }, "sms"],
    ["an unknown key in the webhook", { sms: { ...webhook, secret: "inline" } }, "sms"],
    ["an unknown key in SMTP", { email: { ...smtp, password: "inline" } }, "email"],
    ["an unknown channel type", { sms: { type: "pigeon" } }, "sms.type"],
    ["SMTP for text messages", { sms: smtp }, "sms.type"],
    ["a webhook for e-mail", { email: webhook }, "email.type"],
    ["a webhook URL that is not a URL", { sms: { ...webhook, url: "not a url" } }, "sms.url"],
    ["a webhook URL that is not http(s)", { sms: { ...webhook, url: "ftp://sms.bank.example/" } }, "sms.url"],
    ["plain http to another machine", { sms: { ...webhook, url: "http://sms.bank.example/send" } }, "sms.url"],
    ["a webhook without its secret file", { sms: { type: "webhook", url: webhook.url } }, "sms.secretFile"],
    ["a timeout of zero", { sms: { ...webhook, timeoutMs: 0 } }, "sms.timeoutMs"],
    ["more than 10 attempts", { sms: { ...webhook, attempts: 11 } }, "sms.attempts"],
    ["a From that is not an address", { email: { ...smtp, from: "Bank" } }, "email.from"],
    ["a user without a password file", { email: { ...smtp, user: "u" } }, "email.passwordFile"],
    ["a password file without a user", { email: { ...smtp, passwordFile: "p" } }, "email.passwordFile"],
    ["a port out of range", { email: { ...smtp, port: 70000 } }, "email.port"],
  ];
  for (const [name, input, path] of refused) {
    test(`refuses ${name}`, () => {
      const r = deliveryConfigSchema.safeParse(input);
      assert.equal(r.success, false);
      assert.equal(r.error!.issues[0]!.path.join("."), path, JSON.stringify(r.error!.issues));
    });
  }
});

describe("building the senders", () => {
  let store: Store;
  let t: TempDir;
  let close: () => Promise<void>;
  before(async () => ({ store, t, close } = await openTestStore()));
  after(() => close());

  test("the defaults write both channels to <data-dir>/outbox.jsonl", async () => {
    const senders = createSenders(deliveryConfigSchema.parse({}), { dataDir: t.dir, outbox: store.outbox, clock });
    assert.ok(senders.sms instanceof OutboxSender && senders.email instanceof OutboxSender);
    const code = freshCode();
    await senders.sms.send(codeMessage(code));
    await senders.email.send(codeMessage(code, { channel: "email", to: "z@example.cn" }));
    const lines = readFileSync(t.path("outbox.jsonl"), "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as { channel: string });
    assert.deepEqual(lines.map((l) => l.channel), ["sms", "email"]);
  });

  test("the webhook's secret comes from its file, relative to the data directory", async () => {
    t.write("sms-hmac.key", "from-the-file\n");
    const gateway = await startGateway([200]);
    try {
      const config = deliveryConfigSchema.parse({
        sms: { type: "webhook", url: gateway.url, secretFile: "sms-hmac.key" },
        email: { type: "smtp", host: "127.0.0.1", from: "noreply@bank.example", user: "u", passwordFile: t.path("sms-hmac.key") },
      });
      const senders = createSenders(config, { dataDir: t.dir, outbox: store.outbox, clock });
      assert.ok(senders.sms instanceof WebhookSender && senders.email instanceof SmtpSender);
      await senders.sms.send(codeMessage(freshCode()));
      const { createHmac } = await import("node:crypto");
      const req = gateway.requests[0]!;
      assert.equal(req.headers["x-ukey-signature"], `sha256=${createHmac("sha256", "from-the-file").update(req.body).digest("hex")}`);
    } finally {
      await gateway.close();
    }
  });

  const badSecrets: Array<[string, () => string, string]> = [
    ["a missing secret file", () => "no-such.key", "FILE_UNREADABLE"],
    ["an empty secret file", () => { t.write("empty.key", "\n"); return "empty.key"; }, "CONFIG_INVALID"],
  ];
  for (const [name, file, code] of badSecrets) {
    test(`stops at start on ${name}`, () => {
      const config = deliveryConfigSchema.parse({ sms: { type: "webhook", url: "https://sms.bank.example/", secretFile: file() } });
      assert.throws(() => createSenders(config, { dataDir: t.dir, outbox: store.outbox, clock }), (e: unknown) => isUkeyError(e, code as "FILE_UNREADABLE"));
    });
  }
});
