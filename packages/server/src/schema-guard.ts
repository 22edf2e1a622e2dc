import { UkeyError } from "@ukey/policy";
import { LATEST_SCHEMA_VERSION, type Store } from "@ukey/store";
import type { ServerContext } from "./server-context.js";

/**
 * An instance of an older release, still running while a newer one
 * migrated the shared PostgreSQL database, refuses cleanly rather than
 * writing rows its code no longer understands: every request (but
 * /healthz) and /readyz answer DATABASE_SCHEMA_NEWER (503) once the
 * database's schema version is above the one this code knows, and the
 * background jobs (reminders, intent sweeps, OCSP pre-signing) stop. The
 * version is read at most every `ttlMs` (default 2000 ms), so a request
 * costs one cached comparison; once seen newer the refusal stays until the
 * process is replaced by the new release (docs/upgrading.md).
 */
export class SchemaGuard {
  private checkedAt = -Infinity;
  private checking: Promise<void> | undefined;
  private newer: number | undefined;

  constructor(private readonly deps: {
    store: Pick<Store, "db">;
    /** Called once, when the newer schema is first seen: stops the background jobs. */
    onNewer: (found: number) => Promise<void> | void;
    ttlMs?: number;
    known?: number;
    now?: () => number;
  }) {}

  /** Whether the version was read within `ttlMs` and is not newer: then check() has nothing to do (no await on the hot path). */
  current(): boolean {
    return this.newer === undefined && (this.deps.now ?? Date.now)() - this.checkedAt < (this.deps.ttlMs ?? 2000);
  }

  /** @throws UkeyError DATABASE_SCHEMA_NEWER once the database's schema is newer than this code; the database's own errors. */
  async check(): Promise<void> {
    const known = this.deps.known ?? LATEST_SCHEMA_VERSION;
    if (this.newer === undefined) {
      const now = (this.deps.now ?? Date.now)();
      if (now - this.checkedAt >= (this.deps.ttlMs ?? 2000)) {
        this.checking ??= this.read(known).finally(() => { this.checking = undefined; });
        await this.checking;
      }
    }
    if (this.newer !== undefined) throw new UkeyError("DATABASE_SCHEMA_NEWER", { params: { found: this.newer, supported: known } });
  }

  private async read(known: number): Promise<void> {
    const rows = await this.deps.store.db.query<{ v: number | string | null }>("SELECT MAX(version) AS v FROM schema_version");
    this.checkedAt = (this.deps.now ?? Date.now)();
    const found = Number(rows[0]?.v ?? 0);
    if (found > known && this.newer === undefined) {
      this.newer = found;
      await this.deps.onNewer(found);
    }
  }
}

const guards = new WeakMap<object, SchemaGuard>();

/**
 * The one guard of a server context, shared by its listeners and its
 * control socket; on first sight of a newer schema it logs with `log` and
 * stops the context's background jobs.
 */
export function schemaGuardFor(ctx: Pick<ServerContext, "store" | "reminders" | "intentSweeper" | "ocsp">, log: (found: number) => void = () => undefined): SchemaGuard {
  let g = guards.get(ctx);
  if (!g) {
    g = new SchemaGuard({
      store: ctx.store,
      onNewer: async (found) => {
        log(found);
        await Promise.all([ctx.reminders.stop(), ctx.intentSweeper.stop(), ctx.ocsp.stop()]);
      },
    });
    guards.set(ctx, g);
  }
  return g;
}
