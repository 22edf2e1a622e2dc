import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { UkeyError } from "@ukey/policy";
import type { SenderDeps } from "./delivery-record.js";
import type { MessageSender } from "./outgoing-message.js";
import { OutboxSender } from "./outbox-sender.js";
import { SmtpSender } from "./smtp-sender.js";
import { WebhookSender } from "./webhook-sender.js";

const LOOPBACK_HOSTS = new Set(["localhost", "[::1]"]);

/** Plain http is allowed only to a gateway on this machine: anything else would carry codes in clear. */
function httpsOrLoopback(url: string): boolean {
  // Zod runs refinements after a failed format check too; that failure is reported already.
  if (!URL.canParse(url)) return true;
  const u = new URL(url);
  return u.protocol === "https:" || LOOPBACK_HOSTS.has(u.hostname) || /^127\.\d+\.\d+\.\d+$/.test(u.hostname);
}

const outboxChannel = z.strictObject({
  type: z.literal("outbox"),
  /** The JSON-lines file standing in for the gateway; relative to the data directory. */
  file: z.string().min(1).default("outbox.jsonl"),
});

const webhookChannel = z.strictObject({
  type: z.literal("webhook"),
  /** The SMS gateway's URL: https, or http on this machine only. */
  url: z.url({ protocol: /^https?$/ }).refine(httpsOrLoopback, "must be https (plain http only for a gateway on this machine)"),
  /** File holding the HMAC key shared with the gateway; relative to the data directory. */
  secretFile: z.string().min(1),
  timeoutMs: z.number().int().min(100).max(60_000).default(5000),
  attempts: z.number().int().min(1).max(10).default(3),
  retryDelayMs: z.number().int().min(0).max(60_000).default(500),
});

const smtpChannel = z.strictObject({
  type: z.literal("smtp"),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(587),
  /** TLS from the first byte (port 465); otherwise STARTTLS. */
  secure: z.boolean().default(false),
  /** Without `secure`, refuse to send unless the server offers STARTTLS. Turn off only for a relay on this machine. */
  requireTls: z.boolean().default(true),
  from: z.email(),
  user: z.string().min(1).optional(),
  /** File holding the SMTP password; relative to the data directory. */
  passwordFile: z.string().min(1).optional(),
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
}).refine((c) => (c.user === undefined) === (c.passwordFile === undefined), {
  message: "user and passwordFile are given together or not at all", path: ["passwordFile"],
});

/**
 * How one-time codes and reminders reach holders (the `delivery` section of
 * config.json; docs/delivery.md). Unknown keys are rejected. Default: both
 * channels to the outbox file `<data-dir>/outbox.jsonl`, which a demo
 * machine reads in place of a phone or a mailbox. Secrets are never here:
 * `secretFile` and `passwordFile` name files, relative paths resolving
 * against the data directory.
 */
export const deliveryConfigSchema = z.strictObject({
  sms: z.discriminatedUnion("type", [outboxChannel, webhookChannel]).prefault({ type: "outbox" }),
  email: z.discriminatedUnion("type", [outboxChannel, smtpChannel]).prefault({ type: "outbox" }),
});

/** The parsed delivery configuration. */
export type DeliveryConfig = z.output<typeof deliveryConfigSchema>;

/** The two channels to holders. */
export interface Senders {
  sms: MessageSender;
  email: MessageSender;
}

/**
 * Builds the senders the configuration names, reading the webhook and SMTP
 * secrets from their files now, so that a missing secret stops the server
 * at start rather than at a holder's first code. Relative paths resolve
 * against `deps.dataDir`.
 * Throws UkeyError FILE_UNREADABLE for a secret file that cannot be read,
 * CONFIG_INVALID for an empty one.
 */
export function createSenders(config: DeliveryConfig, deps: SenderDeps & { dataDir: string }): Senders {
  const path = (p: string) => (isAbsolute(p) ? p : resolve(deps.dataDir, p));
  const { dataDir: _dataDir, ...base } = deps;
  const sms = config.sms.type === "outbox"
    ? new OutboxSender({ ...base, file: path(config.sms.file) })
    : new WebhookSender({
      ...base, url: config.sms.url, secret: readSecret(path(config.sms.secretFile), "delivery.sms.secretFile"),
      timeoutMs: config.sms.timeoutMs, attempts: config.sms.attempts, retryDelayMs: config.sms.retryDelayMs,
    });
  const e = config.email;
  const email = e.type === "outbox"
    ? new OutboxSender({ ...base, file: path(e.file) })
    : new SmtpSender({
      ...base, host: e.host, port: e.port, secure: e.secure, requireTls: e.requireTls, from: e.from, timeoutMs: e.timeoutMs,
      ...(e.user !== undefined && e.passwordFile !== undefined
        ? { user: e.user, password: readSecret(path(e.passwordFile), "delivery.email.passwordFile") } : {}),
    });
  return { sms, email };
}

/** A secret file's content without one trailing newline (editors add one). */
function readSecret(file: string, field: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path: file }, cause });
  }
  const secret = text.replace(/\r?\n$/, "");
  if (secret.length === 0) throw new UkeyError("CONFIG_INVALID", { params: { reason: `${field}: ${file} is empty` } });
  return secret;
}
