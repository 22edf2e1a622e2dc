import { UkeyError, evaluate, type Clock } from "@ukey/policy";
import type { AuditEntryInput, CertificateRecord, HolderRecord, ReminderOutcome, ReminderRecord, Store } from "@ukey/store";
import type { DeliveryChannel, Senders } from "../delivery/index.js";
import type { ProfileCache } from "../profile-cache.js";
import { composeReminder, type ReminderItem } from "./reminder-message.js";

/** Longest wait between two sending rounds of one reminder. */
const MAX_BACKOFF_MS = 24 * 3_600_000;

/** What happened to one message to one channel; metrics count these. */
export interface ReminderDeliveryEvent {
  channel: DeliveryChannel | "bell";
  outcome: "sent" | "retry" | "failed" | "cancelled";
  /** Reminders the message carried. */
  reminders: number;
}

/** What one sending pass did, in reminders. */
export interface SendResult {
  claimed: number;
  sent: number;
  retrying: number;
  failed: number;
  cancelled: number;
}

export interface ReminderSenderDeps {
  store: Pick<Store, "reminders" | "holders" | "holderPreferences" | "certificates" | "transaction">;
  senders: Senders;
  clock: Clock;
  profiles: Pick<ProfileCache, "get">;
  institution: { name: string };
  publicUrl: string;
  /** Sending rounds before a reminder is failed. */
  maxAttempts: number;
  /** Wait before the second round; doubled before each further one, at most a day. */
  retryBaseMs: number;
  /** Reminders claimed at once. */
  batchSize: number;
  /** How long a claim keeps other senders off (default 10 minutes): longer than any send with its retries. */
  leaseMs?: number;
  /** Told of every message's outcome (metrics). */
  observe?: (e: ReminderDeliveryEvent) => void;
  log?: { warn(obj: Record<string, unknown>, msg: string): void };
}

/**
 * The sending stage: claims due reminders (a lease in the database, so
 * that two instances never take the same one), drops those whose
 * certificate was renewed, revoked or superseded since the scan, groups
 * the rest by recipient and sends each recipient one message per channel
 * (an organisation gets one digest of all its certificates in the batch),
 * then records every outcome with its audit entries in one transaction.
 *
 * Channels: the recipient's phone by SMS and e-mail address by e-mail,
 * each unless the recipient opted out of it; with neither, the reminder is
 * shown only in the bell. A channel that fails is tried again in a later
 * round (the channels that succeeded are not sent again) after
 * retryBaseMs × 2^(round-1); after maxAttempts rounds the reminder is
 * failed, audited and counted. Nothing is dropped: every reminder ends
 * sent, failed or cancelled, and every message is in the outbox table.
 */
export class ReminderSender {
  constructor(private readonly deps: ReminderSenderDeps) {}

  /** Sends what is due now, batch after batch, until nothing due is left or `maxBatches` ran. */
  async sendDue(maxBatches = 50): Promise<SendResult> {
    const total: SendResult = { claimed: 0, sent: 0, retrying: 0, failed: 0, cancelled: 0 };
    for (let i = 0; i < maxBatches; i++) {
      const r = await this.sendBatch();
      for (const k of Object.keys(total) as (keyof SendResult)[]) total[k] += r[k];
      if (r.claimed < this.deps.batchSize) break;
    }
    return total;
  }

  /** Claims one batch and settles it. */
  async sendBatch(): Promise<SendResult> {
    const { store, clock } = this.deps;
    const now = clock.now().getTime();
    const claimed = await store.reminders.claimDue(now, now + (this.deps.leaseMs ?? 10 * 60_000), this.deps.batchSize);
    const result: SendResult = { claimed: claimed.length, sent: 0, retrying: 0, failed: 0, cancelled: 0 };
    if (claimed.length === 0) return result;

    const outcomes: ReminderOutcome[] = [];
    const audit: AuditEntryInput[] = [];
    const settled = new Set(await store.reminders.settledAmong([...new Set(claimed.map((r) => r.certificateSerial))]));
    const certificates = new Map<string, CertificateRecord>();
    for (const r of claimed) {
      const c = settled.has(r.certificateSerial) ? undefined : await store.certificates.get(r.certificateSerial);
      if (!c) {
        outcomes.push({ id: r.id, status: "cancelled", delivered: r.delivered, attempts: r.attempts, nextAttemptAt: null, lastError: r.lastError, sentAt: null });
        audit.push(this.entry(now, "reminder.cancelled", r, { reason: "renewed, revoked or superseded before it was sent" }));
        result.cancelled++;
        this.deps.observe?.({ channel: "bell", outcome: "cancelled", reminders: 1 });
        continue;
      }
      certificates.set(r.certificateSerial, c);
    }
    const live = claimed.filter((r) => certificates.has(r.certificateSerial));
    const holders = new Map<string, HolderRecord | undefined>();
    const holderOf = async (id: string) => {
      if (!holders.has(id)) holders.set(id, await store.holders.get(id));
      return holders.get(id);
    };
    // An organisation that no longer exists: each member is told itself, never about another's certificates.
    const byRecipient = new Map<string, ReminderRecord[]>();
    for (const r of live) {
      const key = (await holderOf(r.recipientId)) ? r.recipientId : r.holderId;
      byRecipient.set(key, [...(byRecipient.get(key) ?? []), r]);
    }
    const prefs = await store.holderPreferences.getMany([...byRecipient.keys()]);

    for (const [recipientId, group] of byRecipient) {
      const recipient = await holderOf(recipientId);
      const pref = prefs.get(recipientId);
      const channels: DeliveryChannel[] = [];
      if (recipient?.phone && pref?.smsReminders !== false) channels.push("sms");
      if (recipient?.email && pref?.emailReminders !== false) channels.push("email");
      const delivered = new Map(group.map((r) => [r.id, new Set(r.delivered)]));
      const errors = new Map<string, string[]>();
      if (recipient && channels.length > 0) {
        const items = new Map<string, ReminderItem>();
        for (const r of group) items.set(r.id, await this.item(certificates.get(r.certificateSerial)!, now));
        for (const channel of channels) {
          const need = group.filter((r) => !delivered.get(r.id)!.has(channel));
          if (need.length === 0) continue;
          const to = channel === "sms" ? recipient.phone! : recipient.email!;
          const digest = recipient.id !== need[0]!.holderId || need.length > 1;
          const message = composeReminder({
            institution: this.deps.institution.name, publicUrl: this.deps.publicUrl, channel, to, recipientId: recipient.id,
            recipientName: recipient.name, digest, items: need.map((r) => items.get(r.id)!), now,
          });
          try {
            await this.deps.senders[channel].send(message);
            for (const r of need) delivered.get(r.id)!.add(channel);
            this.deps.observe?.({ channel, outcome: "sent", reminders: need.length });
          } catch (e) {
            const why = `${channel}: ${e instanceof UkeyError ? e.detail ?? e.code : "error"}`;
            for (const r of need) errors.set(r.id, [...(errors.get(r.id) ?? []), why]);
            this.deps.log?.warn({ recipient: recipient.id, channel, reminders: need.length, error: why }, "reminder not sent");
          }
        }
      }
      for (const r of group) {
        const got = [...delivered.get(r.id)!];
        const attempts = r.attempts + 1;
        const failedHere = errors.get(r.id);
        if (!failedHere) {
          const ways = got.length > 0 ? got : ["bell"];
          if (got.length === 0) this.deps.observe?.({ channel: "bell", outcome: "sent", reminders: 1 });
          outcomes.push({ id: r.id, status: "sent", delivered: ways, attempts, nextAttemptAt: null, lastError: r.lastError, sentAt: now });
          audit.push(this.entry(now, "reminder.sent", r, { channels: ways, recipient: recipient?.id ?? r.recipientId, attempts }));
          result.sent++;
        } else if (attempts >= this.deps.maxAttempts) {
          outcomes.push({ id: r.id, status: "failed", delivered: got, attempts, nextAttemptAt: null, lastError: failedHere.join("; "), sentAt: null });
          audit.push(this.entry(now, "reminder.failed", r, { errors: failedHere, delivered: got, attempts }));
          for (const ch of failedHere.map((f) => f.split(":")[0] as DeliveryChannel)) this.deps.observe?.({ channel: ch, outcome: "failed", reminders: 1 });
          result.failed++;
        } else {
          const wait = Math.min(MAX_BACKOFF_MS, this.deps.retryBaseMs * 2 ** (attempts - 1));
          outcomes.push({ id: r.id, status: "pending", delivered: got, attempts, nextAttemptAt: now + wait, lastError: failedHere.join("; "), sentAt: null });
          for (const ch of failedHere.map((f) => f.split(":")[0] as DeliveryChannel)) this.deps.observe?.({ channel: ch, outcome: "retry", reminders: 1 });
          result.retrying++;
        }
      }
    }
    await store.transaction(async (tx) => {
      await tx.reminders.settle(outcomes, now);
      if (audit.length) await tx.audit.appendMany(audit);
    });
    return result;
  }

  private async item(c: CertificateRecord, now: number): Promise<ReminderItem> {
    const profile = await this.deps.profiles.get(c.profileId);
    const name = profile?.name ?? { "zh-CN": "证书", en: "certificate" };
    const evaluation = evaluate(c, profile ?? { renewal: noRenewal }, "web", new Date(now));
    return { serial: c.serial, subjectDn: c.subjectDn, notAfter: c.notAfter, profileName: name, evaluation };
  }

  private entry(at: number, action: string, r: ReminderRecord, data: Record<string, unknown>): AuditEntryInput {
    return {
      at, actor: "system", action, subjectType: "certificate", subjectId: r.certificateSerial,
      data: { reminder: r.id, threshold: r.threshold, holder: r.holderId, ...data },
    };
  }
}

/** Rules of a profile that is gone from the database: no online window, so the holder is sent to the counter. */
const noRenewal = {
  windows: { web: null, mobile: null, cli: null, est: null },
  noticeDaysBefore: 0, stepUp: null, loginWhenExpired: false, onCompletion: "leave-to-expire",
} as const;
