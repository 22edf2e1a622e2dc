// How one-time codes, authorization codes and reminders reach holders.
export {
  REDACTED, maskRecipient, secretsOf, scrub, deliveryFailed, silentDeliveryLog,
  type DeliveryChannel, type OutgoingMessage, type SendResult, type MessageSender, type DeliveryLog,
} from "./outgoing-message.js";
export { beginDelivery, type SenderDeps, type DeliveryRecord } from "./delivery-record.js";
export { OutboxSender } from "./outbox-sender.js";
export { WebhookSender, webhookSignature, type WebhookOptions } from "./webhook-sender.js";
export { SmtpSender, type SmtpOptions } from "./smtp-sender.js";
export { deliveryConfigSchema, createSenders, type DeliveryConfig, type Senders } from "./delivery-config.js";
