import type { Clock } from "@ukey/policy";
import type { AbandonedIntent, AuditEntryInput, Store } from "@ukey/store";

/** How many intents one transaction closes; a sweep runs transactions until none is left. */
const SWEEP_BATCH = 500;

/** The `issuance` settings the sweep reads. */
export interface IntentSweepSettings {
  /** An intent still pending this many seconds after it was recorded is abandoned. */
  abandonAfterSeconds: number;
  /** Seconds between sweeps of a listening server. */
  sweepIntervalSeconds: number;
}

/** Where a listening server's sweeps report. */
export type Log = { info(obj: Record<string, unknown>, msg: string): void; error(obj: Record<string, unknown>, msg: string): void };

/**
 * Closes issuance intents orphaned by a crash between the intent's commit
 * and the signature's (Boulder's Prepare/Issue leaves exactly these): an
 * intent still pending `abandonAfterSeconds` after it was recorded is
 * marked abandoned, with a `certificate.abandoned` audit entry in the same
 * transaction. A signature takes milliseconds; an intent that old has no
 * process left to complete it.
 *
 * It runs when a server or a CLI command opens the data directory
 * (`runOnce`), and every `sweepIntervalSeconds` in a listening server
 * (`start`), so a crashed instance's intents are closed by the others
 * without a restart. Safe with any number of instances on one PostgreSQL:
 * each intent is taken by a compare-and-set that one sweep alone wins, and
 * only the winner writes its audit entry.
 */
export class IntentSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<AbandonedIntent[]> | undefined;
  private stopped = false;
  private log: Log | undefined;

  constructor(private readonly deps: { store: Pick<Store, "transaction">; clock: Clock; settings: IntentSweepSettings }) {}

  /**
   * One sweep now; returns the intents it abandoned (none that another
   * sweep took). A sweep already under way is joined rather than doubled.
   * Throws storage errors (nothing of a failed transaction is kept).
   */
  runOnce(): Promise<AbandonedIntent[]> {
    this.running ??= this.sweep().finally(() => { this.running = undefined; });
    return this.running;
  }

  /** Sweeps every `sweepIntervalSeconds` until `stop`, logging what it abandons and its failures to `log`. Starting twice starts once. */
  start(log?: Log): void {
    if (this.timer || this.stopped) return;
    if (log) this.log = log;
    this.schedule();
  }

  /** Stops the sweeps and waits for one under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async sweep(): Promise<AbandonedIntent[]> {
    const all: AbandonedIntent[] = [];
    for (;;) {
      const at = this.deps.clock.now().getTime();
      const olderThan = at - this.deps.settings.abandonAfterSeconds * 1000;
      const abandoned = await this.deps.store.transaction(async (r) => {
        const found = await r.certificates.abandonStaleIntents(olderThan, at, SWEEP_BATCH);
        await r.audit.appendMany(found.map((c) => abandonedEntry(c, at, this.deps.settings.abandonAfterSeconds)));
        return found;
      });
      all.push(...abandoned);
      if (abandoned.length < SWEEP_BATCH) return all;
    }
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runOnce().then(
        (found) => { if (found.length) this.log?.info({ abandoned: found.map((c) => c.serial) }, "issuance intents abandoned"); },
        (e: unknown) => this.log?.error({ err: e }, "intent sweep failed; tried again next round"),
      ).finally(() => { if (!this.stopped) this.schedule(); });
    }, this.deps.settings.sweepIntervalSeconds * 1000);
    // A pending sweep must not keep a CLI process alive.
    this.timer.unref();
  }
}

function abandonedEntry(c: AbandonedIntent, at: number, afterSeconds: number): AuditEntryInput {
  return {
    at, actor: "system", action: "certificate.abandoned", subjectType: "certificate", subjectId: c.serial,
    data: {
      holderId: c.holderId, profileId: c.profileId, subject: c.subjectDn, intentAt: c.createdAt,
      reason: `no signature recorded within ${afterSeconds} s of the intent (the issuing process stopped)`,
    },
  };
}
