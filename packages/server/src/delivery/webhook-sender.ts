import { createHmac } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { beginDelivery, type SenderDeps } from "./delivery-record.js";
import type { MessageSender, OutgoingMessage, SendResult } from "./outgoing-message.js";

/** How to reach the institution's SMS gateway. */
export interface WebhookOptions {
  /** The gateway's URL. Never logged or stored: it may carry an API key. */
  url: string;
  /** The HMAC key shared with the gateway (read from a file by `createSenders`). */
  secret: string | Buffer;
  /** Per attempt, until the response headers arrive. Default 5000. */
  timeoutMs?: number;
  /** Attempts in all, at least 1. Default 3. */
  attempts?: number;
  /** Wait before the second attempt, doubled before each further one. Default 500. */
  retryDelayMs?: number;
}

type Outcome = { ok: true; status: number } | { ok: false; retry: boolean; error: string };

/** The signature header's value for a body: `sha256=` and the hex HMAC-SHA256 of the exact bytes sent. */
export function webhookSignature(secret: string | Buffer, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body, "utf8").digest("hex")}`;
}

/**
 * Sends through the institution's SMS gateway: POSTs
 * `{ id, channel, to, text, purpose }` as JSON with an
 * `X-Ukey-Signature: sha256=<hex HMAC of the body>` header. The same id is
 * sent on every attempt, so the gateway can drop a repeat. A 2xx answer is
 * success (202 means the gateway queued it); 5xx, 408, 429, a network error
 * or no answer within the timeout is tried again (up to `attempts`, with
 * doubling waits); any other answer, redirects included (a redirect would
 * carry the code to a host nobody configured), fails at once. The response
 * body is never read, so nothing the gateway echoes can reach a log.
 * Every attempt is recorded, redacted, in the outbox row.
 *
 * `send` throws UkeyError CODE_DELIVERY_FAILED when the gateway refuses it
 * or every attempt failed, INTERNAL for a message whose redacted text would
 * leak a secret.
 */
export class WebhookSender implements MessageSender {
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly retryDelayMs: number;

  constructor(private readonly deps: SenderDeps & WebhookOptions) {
    this.timeoutMs = deps.timeoutMs ?? 5000;
    this.attempts = Math.max(1, Math.floor(deps.attempts ?? 3));
    this.retryDelayMs = deps.retryDelayMs ?? 500;
  }

  async send(m: OutgoingMessage): Promise<SendResult> {
    const d = await beginDelivery(this.deps, m, "webhook");
    const body = JSON.stringify({ id: d.id, channel: m.channel, to: m.to, text: m.text, purpose: m.purpose });
    const signature = webhookSignature(this.deps.secret, body);
    let last = "not attempted";
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      const outcome = await this.post(body, signature);
      if (outcome.ok) return d.sent(outcome.status === 202 ? "queued" : "sent");
      last = outcome.error;
      if (!outcome.retry) throw await d.failed(`gateway refused the message: ${outcome.error}`);
      if (attempt === this.attempts) break;
      const wait = this.retryDelayMs * 2 ** (attempt - 1);
      await d.retrying(outcome.error, this.deps.clock.now().getTime() + wait);
      await sleep(wait);
    }
    throw await d.failed(`${last}, after ${this.attempts} attempt${this.attempts === 1 ? "" : "s"}`);
  }

  private async post(body: string, signature: string): Promise<Outcome> {
    try {
      const res = await fetch(this.deps.url, {
        method: "POST",
        headers: { "content-type": "application/json", "x-ukey-signature": signature },
        body,
        redirect: "manual",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.body?.cancel();
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
      return { ok: false, retry: res.status >= 500 || res.status === 408 || res.status === 429, error: `HTTP ${res.status}` };
    } catch (e) {
      if ((e as Error).name === "TimeoutError") return { ok: false, retry: true, error: `no answer within ${this.timeoutMs} ms` };
      // fetch reports "fetch failed" and keeps the reason (ECONNREFUSED, ENOTFOUND ...) in its cause.
      const code = (e as { cause?: { code?: unknown } }).cause?.code;
      return { ok: false, retry: true, error: `network error${typeof code === "string" ? ` (${code})` : ""}` };
    }
  }
}
