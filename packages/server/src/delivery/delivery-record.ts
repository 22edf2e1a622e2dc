import { randomUUID } from "node:crypto";
import type { Clock, UkeyError } from "@ukey/policy";
import type { OutboxRepository } from "@ukey/store";
import {
  deliveryFailed, maskRecipient, scrub, secretsOf, silentDeliveryLog,
  type DeliveryLog, type OutgoingMessage, type SendResult,
} from "./outgoing-message.js";

/** What every sender works with. A sender takes only the outbox methods it uses. */
export interface SenderDeps {
  outbox: Pick<OutboxRepository, "insert" | "markSent" | "markFailed">;
  clock: Clock;
  /** Default: silent. Gets ids, channels, masked recipients and outcomes, never a text. */
  log?: DeliveryLog;
  /** Makes outbox ids; default random UUIDs. */
  newId?: () => string;
}

/** One message on its way: recorded as pending, then marked with each outcome. */
export interface DeliveryRecord {
  readonly id: string;
  /** The message's secrets, for scrubbing anything that might quote them. */
  readonly secrets: readonly string[];
  /** Marks it sent (or queued by a gateway), logs it and returns the result. */
  sent(status?: "sent" | "queued"): Promise<SendResult>;
  /** Records one failed attempt that will be tried again at `nextAttemptAt`. */
  retrying(error: string, nextAttemptAt: number): Promise<void>;
  /** Records the last failed attempt and returns the error for the caller to throw. */
  failed(error: string): Promise<UkeyError>;
}

/**
 * Checks the message's redaction, then records it in the outbox (status
 * pending) before the first attempt, so that a crash mid-delivery still
 * leaves a row for operators to see.
 * Throws UkeyError INTERNAL for a message whose redacted text would leak a
 * secret (see `secretsOf`), and whatever the outbox insert throws.
 */
export async function beginDelivery(deps: SenderDeps, m: OutgoingMessage, transport: string): Promise<DeliveryRecord> {
  const secrets = secretsOf(m);
  const log = deps.log ?? silentDeliveryLog;
  const id = (deps.newId ?? randomUUID)();
  const recipient = maskRecipient(m.channel, m.to);
  const now = () => deps.clock.now().getTime();
  await deps.outbox.insert({
    id, channel: m.channel, transport, recipient, purpose: m.purpose, holderId: m.holderId ?? null, redactedText: m.redactedText,
    status: "pending", attempts: 0, lastError: null, nextAttemptAt: null, createdAt: now(), sentAt: null,
  });
  const fields = { outboxId: id, channel: m.channel, transport, to: recipient, purpose: m.purpose };
  return {
    id,
    secrets,
    async sent(status = "sent") {
      await deps.outbox.markSent(id, now(), status);
      log.info({ ...fields, status }, "message delivered");
      return { id, status };
    },
    async retrying(error, nextAttemptAt) {
      const clean = scrub(error, secrets);
      await deps.outbox.markFailed(id, clean, nextAttemptAt);
      log.warn({ ...fields, error: clean, nextAttemptAt }, "message delivery failed; retrying");
    },
    async failed(error) {
      const clean = scrub(error, secrets);
      await deps.outbox.markFailed(id, clean, null);
      log.warn({ ...fields, error: clean }, "message delivery failed");
      return deliveryFailed(m.channel, `${transport}: ${clean} (outbox ${id})`);
    },
  };
}
