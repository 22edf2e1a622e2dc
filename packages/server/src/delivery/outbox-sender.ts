import { open } from "node:fs/promises";
import { beginDelivery, type SenderDeps } from "./delivery-record.js";
import type { MessageSender, OutgoingMessage, SendResult } from "./outgoing-message.js";

/**
 * The demo default for both channels: each message is appended whole, as
 * one JSON line, to a file that stands in for the SMS gateway and the
 * mailbox on a demo machine ({ id, at, channel, to, subject, text, purpose,
 * holderId }), and recorded redacted in the outbox table for the console.
 * The file holds codes in clear, so it is created (and kept) mode 0600.
 *
 * `send` throws UkeyError CODE_DELIVERY_FAILED when the file cannot be
 * written (the outbox row then says failed), INTERNAL for a message whose
 * redacted text would leak a secret.
 */
export class OutboxSender implements MessageSender {
  constructor(private readonly deps: SenderDeps & { file: string }) {}

  async send(m: OutgoingMessage): Promise<SendResult> {
    const d = await beginDelivery(this.deps, m, "outbox");
    const line = JSON.stringify({
      id: d.id, at: this.deps.clock.now().toISOString(), channel: m.channel, to: m.to, subject: m.subject, text: m.text,
      purpose: m.purpose, holderId: m.holderId ?? null,
    });
    try {
      await appendPrivate(this.deps.file, `${line}\n`);
    } catch (e) {
      throw await d.failed(`cannot append to the outbox file (${(e as NodeJS.ErrnoException).code ?? "error"})`);
    }
    return d.sent();
  }
}

/** Appends to a file readable by its owner only, tightening a file created wider (by hand, or restored from a backup). */
async function appendPrivate(path: string, text: string): Promise<void> {
  const fh = await open(path, "a", 0o600);
  try {
    if (((await fh.stat()).mode & 0o077) !== 0) await fh.chmod(0o600);
    // One write of one line: O_APPEND keeps concurrent lines whole.
    await fh.appendFile(text, "utf8");
  } finally {
    await fh.close();
  }
}
