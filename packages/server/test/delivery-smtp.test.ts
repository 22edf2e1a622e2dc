import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { isUkeyError } from "@ukey/policy";
import type { Store } from "@ukey/store";
import type { SMTPServerOptions } from "smtp-server";
import { SmtpSender, type SmtpOptions } from "../src/delivery/index.js";
import { captureLog, clock, closedPort, codeMessage, freshCode, mailBody, openTestStore, startMailServer } from "./delivery-support.js";

const from = "noreply@bank.example";
const to = "zhang.san@example.com";

// Loopback servers without TLS: the sender must be told it may send in clear.
const plainServer: SMTPServerOptions = { disabledCommands: ["STARTTLS", "AUTH"], authOptional: true };
const authServer: SMTPServerOptions = {
  disabledCommands: ["STARTTLS"],
  allowInsecureAuth: true,
  onAuth(auth, _session, callback) {
    if (auth.username === "ra-mailer" && auth.password === "mail-password") callback(null, { user: auth.username });
    else callback(new Error("Invalid username or password"));
  },
};

interface Case {
  name: string;
  server: SMTPServerOptions;
  options: Partial<SmtpOptions>;
  delivered: boolean;
  user?: string;
  lastError?: RegExp;
}

const cases: Case[] = [
  { name: "delivers to a plain server without sign-in", server: plainServer, options: { requireTls: false }, delivered: true },
  { name: "signs in and delivers", server: authServer, options: { requireTls: false, user: "ra-mailer", password: "mail-password" },
    delivered: true, user: "ra-mailer" },
  { name: "fails on a wrong password", server: authServer, options: { requireTls: false, user: "ra-mailer", password: "wrong" },
    delivered: false, lastError: /^mail server: EAUTH, reply 535$/ },
  { name: "refuses to send in clear by default to a server without STARTTLS", server: plainServer, options: {},
    delivered: false, lastError: /^mail server: ETLS/ },
  { name: "fails when the server refuses the recipient",
    server: { ...plainServer, onRcptTo: (_a, _s, cb) => cb(Object.assign(new Error("No such mailbox"), { responseCode: 550 })) },
    options: { requireTls: false }, delivered: false, lastError: /^mail server: EENVELOPE, reply 550$/ },
];

describe("the SMTP sender", () => {
  let store: Store;
  let close: () => Promise<void>;
  before(async () => ({ store, close } = await openTestStore()));
  after(() => close());

  for (const c of cases) {
    test(c.name, async () => {
      const server = await startMailServer(c.server);
      try {
        const { log, lines } = captureLog();
        const sender = new SmtpSender({
          outbox: store.outbox, clock, log, host: "127.0.0.1", port: server.port, secure: false, requireTls: true, from, timeoutMs: 5000,
          ...c.options,
        });
        const code = freshCode();
        const m = codeMessage(code, { channel: "email", to });
        let id: string;
        if (c.delivered) {
          const r = await sender.send(m);
          assert.equal(r.status, "sent");
          id = r.id;
          assert.equal(server.messages.length, 1);
          const got = server.messages[0]!;
          assert.deepEqual([got.from, got.to, got.user], [from, [to], c.user]);
          assert.equal(mailBody(got.raw).trim(), m.text);
          assert.match(got.raw, /^Subject: /m);
          assert.match(got.raw, new RegExp(`^Message-ID: <${id}@ukey-renew>`, "m"));
        } else {
          let detail = "";
          await assert.rejects(sender.send(m), (e: unknown) => {
            assert.ok(isUkeyError(e, "CODE_DELIVERY_FAILED"), String(e));
            assert.deepEqual(e.params, { channel: "email" });
            detail = String(e.detail);
            return true;
          });
          assert.ok(!detail.includes(code));
          assert.equal(server.messages.length, 0);
          id = /outbox (\S+)\)$/.exec(detail)![1]!;
        }
        const row = await store.outbox.get(id);
        assert.deepEqual([row?.transport, row?.channel, row?.recipient, row?.redactedText, row?.attempts],
          ["smtp", "email", "z***@example.com", m.redactedText, 1]);
        if (c.delivered) assert.deepEqual([row?.status, row?.lastError], ["sent", null]);
        else {
          assert.equal(row?.status, "failed");
          assert.match(row?.lastError ?? "", c.lastError!);
        }
        assert.ok(lines.every((l) => !l.includes(code) && !l.includes("zhang.san") && !l.includes("mail-password")), lines.join("\n"));
      } finally {
        await server.close();
      }
    });
  }

  test("fails when no mail server is listening", async () => {
    const port = await closedPort();
    const sender = new SmtpSender({
      outbox: store.outbox, clock, host: "127.0.0.1", port, secure: false, requireTls: false, from, newId: () => "smtp-down-1",
    });
    await assert.rejects(sender.send(codeMessage(freshCode(), { channel: "email", to })), (e: unknown) => isUkeyError(e, "CODE_DELIVERY_FAILED"));
    const row = await store.outbox.get("smtp-down-1");
    assert.deepEqual([row?.status, row?.lastError], ["failed", "mail server: ESOCKET"]);
  });
});
