import type { Clock } from "@ukey/policy";
import { canonicalJson, type AuditEntryInput, type AuditLog } from "@ukey/store";

/** One refusal: who was refused what, and why (never a secret). */
export interface Refusal {
  action: string;
  actor: string;
  subjectType: string;
  subjectId: string;
  data?: Record<string, unknown>;
}

interface Tally {
  refusal: Refusal;
  count: number;
  firstAt: number;
  lastAt: number;
}

/** The action of the entry that counts the refusals beyond a window's cap. */
export const REFUSAL_OVERFLOW_ACTION = "audit.refusals-overflow";

/**
 * Refusals counted per window instead of one audit entry each, so that a
 * flood of bad tokens or guesses costs the database a handful of rows.
 * Each window appends one entry per distinct refusal (same action, actor,
 * subject and data) whose data adds `count`, `firstAt` and `lastAt`
 * (epoch ms). At most `maxDistinct` distinct refusals are kept per window
 * (default 1000); the rest are counted, by action, in one
 * `audit.refusals-overflow` entry. Entries are appended every `windowMs`
 * (default 60 s) by a timer, on `flush()` and on `close()`; the chain is the
 * store's, so they are hashed like every other entry.
 *
 * In memory per instance: what is not yet flushed when a process dies is
 * lost, which a refusal (unlike a change) may be.
 */
export class RefusalLog {
  private tallies = new Map<string, Tally>();
  private overflow: { count: number; firstAt: number; lastAt: number; actions: Record<string, number> } | null = null;
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private readonly windowMs: number;
  private readonly maxDistinct: number;

  constructor(private readonly deps: {
    audit: Pick<AuditLog, "appendMany">;
    clock: Clock;
    windowMs?: number;
    maxDistinct?: number;
    /** Told when appending failed; the counts are kept for the next window. Default: nothing. */
    onError?: (e: unknown) => void;
  }) {
    this.windowMs = deps.windowMs ?? 60_000;
    this.maxDistinct = deps.maxDistinct ?? 1000;
    this.timer = setInterval(() => void this.flush(), this.windowMs);
    // Never keeps a process alive on its own.
    this.timer.unref();
  }

  /** Counts one refusal in the current window. Never throws, never waits. */
  record(r: Refusal): void {
    const at = this.deps.clock.now().getTime();
    const key = canonicalJson([r.action, r.actor, r.subjectType, r.subjectId, r.data ?? {}]);
    const t = this.tallies.get(key);
    if (t) {
      t.count++;
      t.lastAt = at;
      return;
    }
    if (this.tallies.size < this.maxDistinct) {
      this.tallies.set(key, { refusal: { ...r, data: { ...r.data } }, count: 1, firstAt: at, lastAt: at });
      return;
    }
    const o = (this.overflow ??= { count: 0, firstAt: at, lastAt: at, actions: {} });
    o.count++;
    o.lastAt = at;
    // Actions are names from the code, a handful: this map cannot grow with the flood.
    o.actions[r.action] = (o.actions[r.action] ?? 0) + 1;
  }

  /** Appends what the current window counted, in one transaction; resolves when it is in the log. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushOnce());
    return this.flushing;
  }

  /** Stops the timer and appends what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async flushOnce(): Promise<void> {
    const tallies = this.tallies;
    const overflow = this.overflow;
    if (tallies.size === 0 && !overflow) return;
    this.tallies = new Map();
    this.overflow = null;
    const entries: AuditEntryInput[] = [...tallies.values()].map((t) => ({
      at: t.lastAt, actor: t.refusal.actor, action: t.refusal.action, subjectType: t.refusal.subjectType, subjectId: t.refusal.subjectId,
      data: { ...t.refusal.data, count: t.count, firstAt: t.firstAt, lastAt: t.lastAt },
    }));
    if (overflow) {
      entries.push({
        at: overflow.lastAt, actor: "system", action: REFUSAL_OVERFLOW_ACTION, subjectType: "server", subjectId: "refusal-log",
        data: { count: overflow.count, firstAt: overflow.firstAt, lastAt: overflow.lastAt, actions: overflow.actions, distinctKept: this.maxDistinct },
      });
    }
    try {
      await this.deps.audit.appendMany(entries);
    } catch (e) {
      this.deps.onError?.(e);
      // Kept for the next window, still within its cap.
      for (const [key, t] of tallies) {
        const now = this.tallies.get(key);
        if (now) {
          now.count += t.count;
          now.firstAt = t.firstAt;
        } else if (this.tallies.size < this.maxDistinct) {
          this.tallies.set(key, t);
        } else {
          this.mergeOverflow({ count: t.count, firstAt: t.firstAt, lastAt: t.lastAt, actions: { [t.refusal.action]: t.count } });
        }
      }
      if (overflow) this.mergeOverflow(overflow);
    }
  }

  private mergeOverflow(o: { count: number; firstAt: number; lastAt: number; actions: Record<string, number> }): void {
    const into = (this.overflow ??= { count: 0, firstAt: o.firstAt, lastAt: o.lastAt, actions: {} });
    into.count += o.count;
    into.firstAt = Math.min(into.firstAt, o.firstAt);
    into.lastAt = Math.max(into.lastAt, o.lastAt);
    for (const [a, n] of Object.entries(o.actions)) into.actions[a] = (into.actions[a] ?? 0) + n;
  }
}
