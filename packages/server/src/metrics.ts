import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { Store } from "@ukey/store";
import { UkeyError, type Clock } from "@ukey/policy";
import type { ReminderScheduler } from "./reminders/reminder-scheduler.js";
import type { PasswordHashQueue } from "./admin/password-hash-queue.js";

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
 * - `ukey_sign_in_hashes{state}`: operator password hashes running and waiting now, this instance;
 * - `ukey_sign_in_hashes_total{outcome}`: operator password hashes started, and refused at once because
 *   the wait list was full (SIGN_IN_BUSY), this instance; a rising `refused` is a sign-in flood held back;
 * - Node's process metrics (`process_*`, `nodejs_*`).
 * Database figures come from two aggregate queries when scraped, cached 10 s,
 * so that several scrapers cost one read.
 */
export function createMetrics(deps: {
  store: Pick<Store, "reminders" | "certificates">; clock: Clock; reminders: Pick<ReminderScheduler, "observe">;
  /** The offline root's installed CRL, when the root is offline: its nextUpdate becomes ukey_root_crl_next_update_seconds. */
  rootCrl?: () => { nextUpdate: Date } | undefined;
  /** The operator sign-ins' password hash queue (ServerContext.signInHashes). */
  signInHashes: Pick<PasswordHashQueue, "stats">;
}): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const rootCrl = deps.rootCrl;
  if (rootCrl?.()) {
    // Alert on `ukey_root_crl_next_update_seconds - time() < 30 * 86400`: the next ceremony must sign the root CRL before then.
    new Gauge({
      name: "ukey_root_crl_next_update_seconds", help: "nextUpdate of the root CRL signed at the offline root's ceremony (Unix time); relying parties reject it after", registers: [registry],
      collect() { this.set(Math.floor((rootCrl()?.nextUpdate.getTime() ?? 0) / 1000)); },
    });
  }
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
  const hashes = deps.signInHashes;
  new Gauge({
    name: "ukey_sign_in_hashes", help: "Operator password hashes running and waiting now, this instance", labelNames: ["state"], registers: [registry],
    collect() {
      const s = hashes.stats();
      this.set({ state: "running" }, s.running);
      this.set({ state: "waiting" }, s.waiting);
    },
  });
  new Counter({
    name: "ukey_sign_in_hashes_total", help: "Operator password hashes started (hashed) and refused at once with SIGN_IN_BUSY (refused), this instance",
    labelNames: ["outcome"], registers: [registry],
    collect() {
      const s = hashes.stats();
      this.reset();
      this.inc({ outcome: "hashed" }, s.hashed);
      this.inc({ outcome: "refused" }, s.refused);
    },
  });
  return registry;
}

/** The shortest bearer token accepted: 128 bits in hex, or more in base64. */
const MIN_TOKEN_LENGTH = 32;

/**
 * The metrics bearer token from `file` (relative paths resolve against
 * `dataDir`), one trailing newline dropped; null when `file` is null.
 * @throws UkeyError FILE_UNREADABLE, CONFIG_INVALID for a token shorter than 32 characters or holding spaces.
 */
export function readMetricsToken(file: string | null, dataDir: string): string | null {
  if (file === null) return null;
  const path = isAbsolute(file) ? file : resolve(dataDir, file);
  let token: string;
  try {
    token = readFileSync(path, "utf8").replace(/\r?\n$/, "");
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path }, cause });
  }
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new UkeyError("CONFIG_INVALID", { params: { reason: `metrics.bearerTokenFile: the token in ${path} must be at least ${MIN_TOKEN_LENGTH} characters with no spaces (e.g. openssl rand -hex 32)` } });
  }
  return token;
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest();

/**
 * GET /metrics: the Prometheus text format of `registry`. Counts only, no
 * names or numbers of holders. A listener that does not serve metrics
 * (`registry` null) answers METRICS_NOT_SERVED_HERE (403); given a
 * `bearerToken`, a request without it answers METRICS_TOKEN_REQUIRED (401
 * with a Bearer challenge). Tokens are compared as SHA-256 digests, in
 * constant time.
 */
export function registerMetricsRoute(app: FastifyInstance, registry: Registry | null, bearerToken: string | null = null): void {
  const expected = bearerToken === null ? null : sha256(bearerToken);
  const schema = { tags: ["metrics"], summary: "Prometheus metrics: reminders, certificates by status and time to expiry, process", hide: registry === null };
  app.get(METRICS_PATH, { schema }, async (req, reply) => {
    if (registry === null) throw new UkeyError("METRICS_NOT_SERVED_HERE");
    if (expected) {
      const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? "");
      if (!m || !timingSafeEqual(sha256(m[1]!), expected)) {
        reply.header("www-authenticate", 'Bearer realm="ukey-renew metrics"');
        throw new UkeyError("METRICS_TOKEN_REQUIRED");
      }
    }
    return reply.type(registry.contentType).header("cache-control", "no-cache").send(await registry.metrics());
  });
}
