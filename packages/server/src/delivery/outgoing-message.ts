import { UkeyError } from "@ukey/policy";

/** What stands in for a secret in every stored or logged form of a message. */
export const REDACTED = "******";

/** A delivery channel to a holder. */
export type DeliveryChannel = "sms" | "email";

/**
 * One message to one holder. `text` is what the holder receives (zh-CN
 * first, then en) and may carry a one-time or authorization code;
 * `redactedText` is the same text with every secret replaced by "******"
 * and is the only form ever stored or logged.
 */
export interface OutgoingMessage {
  channel: DeliveryChannel;
  /** A phone number (sms) or an e-mail address (email). */
  to: string;
  /** The e-mail subject in both languages; SMS ignores it. */
  subject: { "zh-CN": string; en: string };
  text: string;
  redactedText: string;
  purpose: "otp" | "enrolment" | "reminder" | "notice";
  holderId?: string;
}

/** What a sender reports: the outbox id, and whether the message went out or a gateway queued it. */
export interface SendResult {
  id: string;
  status: "sent" | "queued";
}

/**
 * A way of reaching holders. `send` resolves once the message is delivered
 * (or accepted by a gateway) and recorded in the outbox.
 * Throws UkeyError CODE_DELIVERY_FAILED {channel} when it could not be sent.
 */
export interface MessageSender {
  send(m: OutgoingMessage): Promise<SendResult>;
}

/** The logger senders write to: pino's (and so Fastify's) shape. Never given a message's text. */
export interface DeliveryLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** A logger that drops everything, for callers that pass none. */
export const silentDeliveryLog: DeliveryLog = { info: () => {}, warn: () => {} };

/** Purposes whose text always carries a secret, so an unredacted one is a defect, not a choice. */
const SECRET_PURPOSES: ReadonlySet<OutgoingMessage["purpose"]> = new Set(["otp", "enrolment"]);

/**
 * The secrets of a message: the parts of `text` that `redactedText` replaces
 * with "******", in order. Checked before anything is sent, so that a
 * message whose redacted form would leak its code is never sent at all.
 *
 * Throws UkeyError INTERNAL when `redactedText` is not `text` with some
 * parts replaced, when a secret still appears in `redactedText`, or when an
 * "otp" or "enrolment" message has no secret replaced.
 */
export function secretsOf(m: Pick<OutgoingMessage, "text" | "redactedText" | "purpose">): string[] {
  const defect = (detail: string) => new UkeyError("INTERNAL", { detail: `outgoing message: ${detail}` });
  const parts = m.redactedText.split(REDACTED);
  const secrets: string[] = [];
  if (parts.length === 1) {
    if (m.text !== m.redactedText) throw defect("redactedText differs from text but replaces nothing");
  } else {
    const first = parts[0]!;
    const last = parts[parts.length - 1]!;
    if (!m.text.startsWith(first)) throw defect("redactedText is not a redaction of text");
    let pos = first.length;
    for (let i = 1; i < parts.length - 1; i++) {
      // A secret is never empty, so the next literal starts at least one character on.
      const at = m.text.indexOf(parts[i]!, pos + 1);
      if (at < 0) throw defect("redactedText is not a redaction of text");
      secrets.push(m.text.slice(pos, at));
      pos = at + parts[i]!.length;
    }
    const end = m.text.length - last.length;
    if (end <= pos || !m.text.endsWith(last)) throw defect("redactedText is not a redaction of text");
    secrets.push(m.text.slice(pos, end));
  }
  // Short fragments (a digit, a space) occur in any text; a code is longer.
  if (secrets.some((s) => s.length >= 4 && m.redactedText.includes(s))) throw defect("a secret also appears unredacted");
  if (SECRET_PURPOSES.has(m.purpose) && secrets.length === 0) throw defect(`a ${m.purpose} message must redact its code`);
  return secrets;
}

/** Replaces every secret in `s` with "******": for error texts that might quote what was sent. */
export function scrub(s: string, secrets: readonly string[]): string {
  let out = s;
  for (const secret of secrets) if (secret.length > 0) out = out.split(secret).join(REDACTED);
  return out;
}

/**
 * The recipient as operators see it in the outbox, after seed 000's
 * "15*****5": a phone keeps its first two and last digit (country code
 * dropped, so every number masks alike), an address its first character
 * and domain ("z***@example.com"). A fixed number of stars hides the length.
 */
export function maskRecipient(channel: DeliveryChannel, to: string): string {
  if (channel === "email") {
    const at = to.lastIndexOf("@");
    if (at <= 0) return "***";
    return `${to.slice(0, 1)}***${to.slice(at)}`;
  }
  const digits = to.replace(/[^0-9]/g, "").replace(/^(?:0086|86)(?=1\d{10}$)/, "");
  if (digits.length < 4) return "*****";
  return `${digits.slice(0, 2)}*****${digits.slice(-1)}`;
}

/**
 * The error a sender throws when a message could not be sent. It carries no
 * cause on purpose: a driver's error may quote what was sent, and the error
 * handler logs causes. `detail` must already be scrubbed.
 */
export function deliveryFailed(channel: DeliveryChannel, detail: string): UkeyError {
  return new UkeyError("CODE_DELIVERY_FAILED", { params: { channel }, detail });
}
