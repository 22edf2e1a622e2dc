import nodemailer, { type Transporter } from "nodemailer";
import { beginDelivery, type SenderDeps } from "./delivery-record.js";
import type { MessageSender, OutgoingMessage, SendResult } from "./outgoing-message.js";

/** How to reach the institution's mail server. */
export interface SmtpOptions {
  host: string;
  port: number;
  /** TLS from the first byte (usually port 465). */
  secure: boolean;
  /** When not `secure`: refuse to send unless the server upgrades with STARTTLS. */
  requireTls: boolean;
  /** The From address. */
  from: string;
  /** Both or neither: AUTH is used only when given. */
  user?: string;
  password?: string;
  /** Connection, greeting and socket inactivity limit. Default 10000. */
  timeoutMs?: number;
}

/**
 * Sends e-mail over SMTP (nodemailer): one plain-text message whose subject
 * is the zh-CN subject then the en one, and whose body is the message's
 * text (zh-CN first, then en, as composed by the caller). The certificate
 * of a TLS server is always verified. One attempt per message: a mail
 * server queues and retries by itself once it has accepted the message.
 * The outbox row records the outcome, redacted.
 *
 * `send` throws UkeyError CODE_DELIVERY_FAILED when the server cannot be
 * reached, refuses the sign-in, the TLS upgrade or the recipient;
 * INTERNAL for a message whose redacted text would leak a secret.
 */
export class SmtpSender implements MessageSender {
  private readonly transport: Transporter;

  constructor(private readonly deps: SenderDeps & SmtpOptions) {
    const timeout = deps.timeoutMs ?? 10_000;
    this.transport = nodemailer.createTransport({
      host: deps.host,
      port: deps.port,
      secure: deps.secure,
      requireTLS: !deps.secure && deps.requireTls,
      ...(deps.user !== undefined ? { auth: { user: deps.user, pass: deps.password ?? "" } } : {}),
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
      // Its own logger would print the message, code included.
      logger: false,
      debug: false,
      // No attachments are ever sent, so no path or URL may be read.
      disableFileAccess: true,
      disableUrlAccess: true,
    });
  }

  async send(m: OutgoingMessage): Promise<SendResult> {
    const d = await beginDelivery(this.deps, m, "smtp");
    let rejected: number;
    try {
      const info = await this.transport.sendMail({
        from: this.deps.from,
        to: m.to,
        subject: `${m.subject["zh-CN"]} / ${m.subject.en}`,
        text: m.text,
        headers: { "Content-Language": "zh-CN, en" },
        messageId: `<${d.id}@ukey-renew>`,
      });
      rejected = info.rejected?.length ?? 0;
    } catch (e) {
      // The code and SMTP reply code only: the server's reply text may quote the message.
      const err = e as { code?: unknown; responseCode?: unknown };
      const what = [typeof err.code === "string" ? err.code : "error", typeof err.responseCode === "number" ? `reply ${err.responseCode}` : ""];
      throw await d.failed(`mail server: ${what.filter(Boolean).join(", ")}`);
    }
    if (rejected > 0) throw await d.failed("mail server refused the recipient");
    return d.sent();
  }
}
