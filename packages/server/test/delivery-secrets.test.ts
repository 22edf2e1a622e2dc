// The invariant: a code reaches the holder's channel and nothing else. Each
// channel really receives it; the database files, the log and the errors
// thrown never hold it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isUkeyError } from "@ukey/policy";
import { openStore } from "@ukey/store";
import { OutboxSender, SmtpSender, WebhookSender, type MessageSender, type OutgoingMessage } from "../src/delivery/index.js";
import { captureLog, clock, codeMessage, freshCode, mailBody, startGateway, startMailServer } from "./delivery-support.js";
import { tempDir } from "./support/fixtures.js";

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

test("a code reaches each channel but no database row, log line or error", async () => {
  const t = tempDir("ukey-delivery-secrets-");
  const codes = { outbox: freshCode(), webhook: freshCode(), refused: freshCode(), smtp: freshCode(), auth: `AUTH-${freshCode()}` };
  // The gateway quotes the code back in its error bodies, as careless gateways do.
  const gateway = await startGateway([
    { status: 500, body: `temporary failure sending ${codes.webhook}` }, 200,
    { status: 400, body: `invalid message: ${codes.refused}` },
  ]);
  const mail = await startMailServer({
    disabledCommands: ["STARTTLS"], allowInsecureAuth: true,
    onAuth: (a, _s, cb) => (a.password === "mail-password" ? cb(null, { user: a.username }) : cb(new Error("no"))),
  });
  const store = await openStore({ dataDir: t.dir });
  const { log, lines } = captureLog();
  const errors: string[] = [];
  try {
    const deps = { outbox: store.outbox, clock, log };
    const outbox = new OutboxSender({ ...deps, file: t.path("outbox.jsonl") });
    const webhook = new WebhookSender({ ...deps, url: gateway.url, secret: "hmac-secret", retryDelayMs: 5 });
    const smtp = new SmtpSender({
      ...deps, host: "127.0.0.1", port: mail.port, secure: false, requireTls: false, from: "noreply@bank.example",
      user: "ra-mailer", password: "mail-password",
    });
    const send = async (sender: MessageSender, m: OutgoingMessage, fails = false) => {
      if (!fails) return void (await sender.send(m));
      await assert.rejects(sender.send(m), (e: unknown) => {
        assert.ok(isUkeyError(e, "CODE_DELIVERY_FAILED"), String(e));
        errors.push(String(e), JSON.stringify(e.toProblem()));
        return true;
      });
    };
    const enrolment: OutgoingMessage = {
      ...codeMessage("x"), channel: "email", to: "zhang.san@example.com", purpose: "enrolment",
      text: `参考号 R20261121，授权码 ${codes.auth}。 Reference R20261121, authorization code ${codes.auth}.`,
      redactedText: "参考号 R20261121，授权码 ******。 Reference R20261121, authorization code ******.",
    };
    await send(outbox, codeMessage(codes.outbox));
    await send(webhook, codeMessage(codes.webhook));
    await send(webhook, codeMessage(codes.refused), true);
    await send(smtp, codeMessage(codes.smtp, { channel: "email", to: "zhang.san@example.com" }));
    await send(smtp, enrolment);

    // Each channel did receive its code.
    const gatewayBodies = gateway.requests.map((r) => r.body).join("\n");
    const mailBodies = mail.messages.map((m) => mailBody(m.raw)).join("\n");
    assert.ok(readFileSync(t.path("outbox.jsonl"), "utf8").includes(codes.outbox));
    assert.ok(gatewayBodies.includes(codes.webhook) && gatewayBodies.includes(codes.refused));
    assert.ok(mailBodies.includes(codes.smtp) && mailBodies.includes(codes.auth));
    const rows = await store.outbox.list({ limit: 10 });
    assert.deepEqual(rows.map((r) => r.transport).sort(), ["outbox", "smtp", "smtp", "webhook", "webhook"]);
    assert.ok(rows.every((r) => r.redactedText.includes("******")));
  } finally {
    await store.close();
    await gateway.close();
    await mail.close();
  }
  try {
    // The whole database: the file, and its WAL and shared memory if left behind.
    const dbFiles = filesUnder(t.dir).filter((f) => !f.endsWith("outbox.jsonl"));
    assert.ok(dbFiles.some((f) => f.endsWith(".sqlite")), dbFiles.join(", "));
    assert.ok(lines.length >= 6 && errors.length === 2, `${lines.length} log lines, ${errors.length / 2} errors`);
    const places = [
      ...dbFiles.map((f) => ({ where: f, text: readFileSync(f).toString("latin1") })),
      { where: "log", text: lines.join("\n") },
      { where: "errors", text: errors.join("\n") },
    ];
    for (const code of Object.values(codes)) {
      for (const p of places) assert.ok(!p.text.includes(code), `code ${code} found in ${p.where}`);
    }
  } finally {
    t.cleanup();
  }
});
