import type { Clock } from "@ukey/policy";
import type { Store } from "@ukey/store";
import type { Senders } from "../delivery/index.js";
import type { ProfileCache } from "../profile-cache.js";
import { scanReminders, type ScanResult } from "./reminder-scan.js";
import { ReminderSender, type ReminderDeliveryEvent, type SendResult } from "./reminder-sender.js";

/** The `reminders` section of the configuration. */
export interface ReminderSettings {
  enabled: boolean;
  intervalSeconds: number;
  maxAttempts: number;
  retryBaseSeconds: number;
  batchSize: number;
}

export interface ReminderSchedulerDeps {
  store: Store;
  senders: Senders;
  clock: Clock;
  profiles: ProfileCache;
  institution: { name: string };
  publicUrl: string;
  settings: ReminderSettings;
  log?: { info(obj: Record<string, unknown>, msg: string): void; warn(obj: Record<string, unknown>, msg: string): void; error(obj: Record<string, unknown>, msg: string): void };
  /** Random in [0, 1); tests fix it. */
  random?: () => number;
}

/**
 * Expiry reminders: every `intervalSeconds` (plus up to a tenth at random,
 * so that instances started together spread out) a scan enqueues the
 * reminders of certificates that reached a threshold, then a sender sends
 * what is due. Every step works from the database, so any number of
 * instances may run it: the scan's inserts are idempotent, claims are
 * leased rows. `runOnce` does one round now (tests, and the first round
 * after start is one interval away so that a restart storm sends nothing
 * twice in a hurry). Observers (metrics) hear of every message's outcome.
 */
export class ReminderScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;
  private readonly observers: Array<(e: ReminderDeliveryEvent) => void> = [];
  readonly sender: ReminderSender;

  constructor(private readonly deps: ReminderSchedulerDeps) {
    const s = deps.settings;
    this.sender = new ReminderSender({
      store: deps.store, senders: deps.senders, clock: deps.clock, profiles: deps.profiles, institution: deps.institution, publicUrl: deps.publicUrl,
      maxAttempts: s.maxAttempts, retryBaseMs: s.retryBaseSeconds * 1000, batchSize: s.batchSize,
      observe: (e) => { for (const o of this.observers) o(e); },
      ...(deps.log ? { log: deps.log } : {}),
    });
  }

  /** The profile reads the scheduler shares with the holder's pages. */
  get profiles(): ProfileCache {
    return this.deps.profiles;
  }

  /** Adds an observer of message outcomes. */
  observe(fn: (e: ReminderDeliveryEvent) => void): void {
    this.observers.push(fn);
  }

  /** Starts the periodic rounds, unless the configuration turned reminders off. Starting twice starts once. */
  start(): void {
    if (!this.deps.settings.enabled || this.timer || this.stopped) return;
    this.schedule();
  }

  /** Stops the rounds and waits for one under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** One round: scan, then send. A round already under way is joined rather than doubled. */
  async runOnce(): Promise<{ scan: ScanResult; send: SendResult }> {
    if (this.running) await this.running.catch(() => undefined);
    const round = (async () => {
      const scan = await scanReminders({ store: this.deps.store }, this.deps.clock.now().getTime());
      const send = await this.sender.sendDue();
      return { scan, send };
    })();
    this.running = round;
    try {
      return await round;
    } finally {
      if (this.running === round) this.running = undefined;
    }
  }

  private schedule(): void {
    const base = this.deps.settings.intervalSeconds * 1000;
    const delay = base + Math.floor((this.deps.random ?? Math.random)() * base * 0.1);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runOnce().then(
        (r) => { if (r.scan.enqueued || r.send.claimed) this.deps.log?.info({ ...r.scan, ...r.send }, "reminders"); },
        (e: unknown) => this.deps.log?.error({ err: e }, "reminder round failed; tried again next round"),
      ).finally(() => { if (!this.stopped) this.schedule(); });
    }, delay);
    // A pending round must not keep a CLI process alive.
    this.timer.unref();
  }
}
