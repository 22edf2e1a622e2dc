import type { FastifyInstance } from "fastify";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Store } from "@ukey/store";
import type { Clock } from "@ukey/policy";
import type { ReminderScheduler } from "./reminders/reminder-scheduler.js";

/** Where Prometheus scrapes. */
export const METRICS_PATH = "/metrics";

/** Expiry buckets of `ukey_certificates_expiring`, by upper bound in days from now. */
const EXPIRY_BUCKETS: ReadonlyArray<[label: string, days: number]> = [["expired", 0], ["1d", 1], ["7d", 7], ["30d", 30], ["90d", 90]];

/** How long one aggregate read of the database serves scrapes. */
const CACHE_MS = 10_000;

/**
 * The server's Prometheus metrics, in their own registry:
 * - `ukey_reminders{status}`: reminders in the database by status (every instance's);
 * - `ukey_reminder_messages_total{channel,outcome}`: reminder messages this instance sent, retried, failed
 *   or cancelled, by channel (sms, email, bell);
 * - `ukey_certificates{status}`: certificates by status;
 * - `ukey_certificates_expiring{within}`: active or expired certificates by time to expiry
 *   (expired, 1d, 7d, 30d, 90d, later: each bucket from the previous bound);
 * - Node's process metrics (`process_*`, `nodejs_*`).
 * Database figures come from two aggregate queries when scraped, cached 10 s,
 * so that several scrapers cost one read.
 */
export function createMetrics(deps: { store: Pick<Store, "reminders" | "certificates">; clock: Clock; reminders: Pick<ReminderScheduler, "observe"> }): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let cached: { at: number; value: Promise<{ reminders: Record<string, number>; census: Array<{ status: string; bucket: number; count: number }> }> } | undefined;
  const read = () => {
    const now = deps.clock.now().getTime();
    if (!cached || now - cached.at >= CACHE_MS || now < cached.at) {
      const bounds = EXPIRY_BUCKETS.map(([, d]) => now + d * 86_400_000);
      const value = Promise.all([deps.store.reminders.countByStatus(), deps.store.reminders.census(bounds)])
        .then(([reminders, census]) => ({ reminders, census }));
      // A failed read is not kept: the next scrape tries again.
      value.catch(() => { if (cached?.value === value) cached = undefined; });
      cached = { at: now, value };
    }
    return cached.value;
  };

  new Gauge({
    name: "ukey_reminders", help: "Expiry reminders by status (pending, sent, failed, cancelled), all instances", labelNames: ["status"], registers: [registry],
    async collect() {
      const { reminders } = await read();
      for (const [status, n] of Object.entries(reminders)) this.set({ status }, n);
    },
  });
  const messages = new Counter({
    name: "ukey_reminder_messages_total", help: "Reminder messages by channel and outcome (sent, retry, failed, cancelled), this instance",
    labelNames: ["channel", "outcome"], registers: [registry],
  });
  deps.reminders.observe((e) => messages.inc({ channel: e.channel, outcome: e.outcome }, e.reminders));
  new Gauge({
    name: "ukey_certificates", help: "Certificates by status", labelNames: ["status"], registers: [registry],
    async collect() {
      const { census } = await read();
      const by: Record<string, number> = {};
      for (const r of census) by[r.status] = (by[r.status] ?? 0) + r.count;
      this.reset();
      for (const [status, n] of Object.entries(by)) this.set({ status }, n);
    },
  });
  new Gauge({
    name: "ukey_certificates_expiring", help: "Active or expired certificates by time to expiry (expired, then up to 1, 7, 30, 90 days, later)",
    labelNames: ["within"], registers: [registry],
    async collect() {
      const { census } = await read();
      const labels = [...EXPIRY_BUCKETS.map(([l]) => l), "later"];
      const counts = labels.map(() => 0);
      for (const r of census) if (r.status === "active" || r.status === "expired") counts[r.bucket] = (counts[r.bucket] ?? 0) + r.count;
      labels.forEach((within, i) => this.set({ within }, counts[i] ?? 0));
    },
  });
  return registry;
}

/** GET /metrics: the Prometheus text format. Counts only, no names or numbers of holders. */
export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get(METRICS_PATH, { schema: { tags: ["metrics"], summary: "Prometheus metrics: reminders, certificates by status and time to expiry, process" } },
    async (_req, reply) => reply.type(registry.contentType).header("cache-control", "no-cache").send(await registry.metrics()));
}
