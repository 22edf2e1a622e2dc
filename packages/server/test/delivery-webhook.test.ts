import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { isUkeyError } from "@ukey/policy";
import type { OutboxStatus, Store } from "@ukey/store";
import { WebhookSender } from "../src/delivery/index.js";
import { captureLog, clock, closedPort, codeMessage, freshCode, openTestStore, startGateway, type GatewayAnswer } from "./delivery-support.js";

const secret = "gateway-shared-secret-for-tests";

/** What the gateway's side does: verify the signature over the exact bytes received. */
function signatureVerifies(body: string, header: unknown): boolean {
  if (typeof header !== "string" || !header.startsWith("sha256=")) return false;
  const expected = createHmac("sha256", secret).update(body).digest();
  const got = Buffer.from(header.slice("sha256=".length), "hex");
  return got.length === expected.length && timingSafeEqual(got, expected);
}

interface Case {
  name: string;
  answers: GatewayAnswer[];
  options?: { timeoutMs?: number; attempts?: number };
  result: "sent" | "queued" | "refused";
  requests: number;
  row: { status: OutboxStatus; attempts: number; lastError: string | null };
  detail?: RegExp;
}

const cases: Case[] = [
  { name: "delivers on a 200 with a signature the gateway verifies", answers: [200], result: "sent", requests: 1,
    row: { status: "sent", attempts: 1, lastError: null } },
  { name: "reports a 202 as queued by the gateway", answers: [202], result: "queued", requests: 1,
    row: { status: "queued", attempts: 1, lastError: null } },
  { name: "retries on 503 and then succeeds", answers: [503, 503, 200], result: "sent", requests: 3,
    row: { status: "sent", attempts: 3, lastError: "HTTP 503" } },
  { name: "retries on 429 (rate limited) and then succeeds", answers: [429, 200], result: "sent", requests: 2,
    row: { status: "sent", attempts: 2, lastError: "HTTP 429" } },
  { name: "gives up after 3 attempts", answers: [503, 502, 500, 200], result: "refused", requests: 3,
    row: { status: "failed", attempts: 3, lastError: "HTTP 500, after 3 attempts" }, detail: /HTTP 500, after 3 attempts/ },
  { name: "does not retry on 400", answers: [400, 200], result: "refused", requests: 1,
    row: { status: "failed", attempts: 1, lastError: "gateway refused the message: HTTP 400" }, detail: /HTTP 400/ },
  { name: "does not follow a redirect", answers: [{ status: 302, body: "", headers: { location: "http://127.0.0.1:9/elsewhere" } }, 200],
    result: "refused", requests: 1, row: { status: "failed", attempts: 1, lastError: "gateway refused the message: HTTP 302" } },
  { name: "times out a gateway that never answers, and tries again", answers: ["hang"], options: { timeoutMs: 150, attempts: 2 },
    result: "refused", requests: 2, row: { status: "failed", attempts: 2, lastError: "no answer within 150 ms, after 2 attempts" } },
  { name: "succeeds after one attempt timed out", answers: ["hang", 200], options: { timeoutMs: 150 }, result: "sent", requests: 2,
    row: { status: "sent", attempts: 2, lastError: "no answer within 150 ms" } },
];

describe("the webhook sender", () => {
  let store: Store;
  let close: () => Promise<void>;
  before(async () => ({ store, close } = await openTestStore()));
  after(() => close());

  for (const c of cases) {
    test(c.name, async () => {
      const gateway = await startGateway(c.answers);
      try {
        const { log, lines } = captureLog();
        const sender = new WebhookSender({ outbox: store.outbox, clock, log, url: gateway.url, secret, retryDelayMs: 5, ...c.options });
        const code = freshCode();
        const m = codeMessage(code);
        let id: string;
        if (c.result === "refused") {
          let thrown: unknown;
          await assert.rejects(sender.send(m), (e: unknown) => { thrown = e; return isUkeyError(e, "CODE_DELIVERY_FAILED"); });
          const e = thrown as { params: unknown; detail: string };
          assert.deepEqual(e.params, { channel: "sms" });
          if (c.detail) assert.match(e.detail, c.detail);
          assert.ok(!e.detail.includes(code) && !e.detail.includes(gateway.url));
          id = /outbox (\S+)\)$/.exec(e.detail)![1]!;
        } else {
          const r = await sender.send(m);
          assert.equal(r.status, c.result);
          id = r.id;
        }
        assert.equal(gateway.requests.length, c.requests);
        for (const req of gateway.requests) {
          assert.equal(req.headers["content-type"], "application/json");
          assert.ok(signatureVerifies(req.body, req.headers["x-ukey-signature"]), `signature of ${req.body}`);
          // Every attempt carries the same id, so the gateway can drop a repeat.
          assert.deepEqual(JSON.parse(req.body), { id, channel: "sms", to: m.to, text: m.text, purpose: "otp" });
        }
        const row = await store.outbox.get(id);
        assert.deepEqual({ status: row?.status, attempts: row?.attempts, lastError: row?.lastError }, c.row);
        assert.deepEqual([row?.transport, row?.recipient, row?.redactedText], ["webhook", "15*****5", m.redactedText]);
        assert.ok(lines.length >= 1 && lines.every((l) => !l.includes(code) && !l.includes(gateway.url)), lines.join("\n"));
      } finally {
        await gateway.close();
      }
    });
  }

  test("a signature made with another secret does not verify", async () => {
    const gateway = await startGateway([200]);
    try {
      await new WebhookSender({ outbox: store.outbox, clock, url: gateway.url, secret: "some other secret" }).send(codeMessage(freshCode()));
      assert.equal(signatureVerifies(gateway.requests[0]!.body, gateway.requests[0]!.headers["x-ukey-signature"]), false);
    } finally {
      await gateway.close();
    }
  });

  test("retries a gateway that is not listening, then gives up", async () => {
    const url = `http://127.0.0.1:${await closedPort()}/sms`;
    const sender = new WebhookSender({ outbox: store.outbox, clock, url, secret, retryDelayMs: 5, newId: () => "webhook-down-1" });
    await assert.rejects(sender.send(codeMessage(freshCode())), (e: unknown) => isUkeyError(e, "CODE_DELIVERY_FAILED"));
    const row = await store.outbox.get("webhook-down-1");
    assert.deepEqual([row?.status, row?.attempts, row?.lastError], ["failed", 3, "network error (ECONNREFUSED), after 3 attempts"]);
  });

  test("records the time of the next attempt while retrying", async () => {
    let seen: { status: string; next: number | null } | undefined;
    const gateway = await startGateway([503, 200]);
    try {
      const outbox = {
        insert: store.outbox.insert,
        markSent: store.outbox.markSent,
        markFailed: async (id: string, error: string, next: number | null) => {
          await store.outbox.markFailed(id, error, next);
          const row = await store.outbox.get(id);
          seen = { status: row!.status, next: row!.nextAttemptAt };
        },
      };
      await new WebhookSender({ outbox, clock, url: gateway.url, secret, retryDelayMs: 40 }).send(codeMessage(freshCode()));
      assert.deepEqual(seen, { status: "pending", next: clock.now().getTime() + 40 });
    } finally {
      await gateway.close();
    }
  });
});
