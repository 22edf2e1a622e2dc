import pg from "pg";
import { UkeyError } from "@ukey/policy";
import { storageFull } from "./sql-errors.js";
import { parsePostgresConnectionString, type PostgresConnectionSpec } from "./postgres-url.js";
import type { Database, Sql } from "./types.js";
import { WriteHealth } from "./write-health.js";

/** Options for `openPostgresDatabase`. */
export interface PostgresOptions {
  /** Most connections the pool opens. Default 10. */
  maxConnections?: number;
  /** How long to wait for each server's connection before trying the next (then DATABASE_UNAVAILABLE), ms. Default 10000. */
  connectTimeoutMs?: number;
}

const INT8_OID = 20;
/** A failed choice of server is reused for this long, so that a burst of requests while no primary exists costs one round of connections. */
const RESELECT_AFTER_MS = 200;

// Times are BIGINT epoch milliseconds, always below 2^53: read them as numbers.
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID && format !== "binary" ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? "text")) as typeof pg.types.getTypeParser,
};

/**
 * Opens a pool on the connection string `url` (one host, or several as
 * libpq lists them: see `parsePostgresConnectionString`) and checks that a
 * server answers and accepts writes.
 * Throws UkeyError DATABASE_URL_INVALID for a malformed string (before any
 * connection), DATABASE_READ_ONLY when the servers that answer are all
 * standbys or read-only, DATABASE_UNAVAILABLE when none can be reached
 * (refused, unknown host, authentication, no such database).
 */
export async function openPostgresDatabase(url: string, options: PostgresOptions = {}): Promise<PostgresDatabase> {
  const spec = parsePostgresConnectionString(url);
  const db = new PostgresDatabase(new ServerChoice(spec, options), url);
  try {
    await db.query("SELECT 1");
  } catch (e) {
    await db.close().catch(() => undefined);
    throw e;
  }
  return db;
}

/**
 * Which server the pool talks to. libpq's rule for several hosts with
 * target_session_attrs=read-write, on top of node-postgres (which connects
 * to one host only): try the hosts in order and keep the first whose
 * session can write (not in recovery, transaction_read_only off). A pool
 * serves that server until a connection to it fails or it refuses a write
 * as read-only; then the choice is made again, so that after a standby is
 * promoted new statements go to it without a restart.
 */
class ServerChoice {
  private current: { pool: pg.Pool; label: string } | undefined;
  private choosing: Promise<pg.Pool> | undefined;
  private lastFailure: { at: number; error: UkeyError } | undefined;
  private closed = false;

  constructor(readonly spec: PostgresConnectionSpec, private readonly options: PostgresOptions) {}

  /** The pool of the chosen server, choosing one first when there is none. Throws DATABASE_READ_ONLY or DATABASE_UNAVAILABLE. */
  pool(): Promise<pg.Pool> {
    if (this.closed) return Promise.reject(new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: "the database connection is closed" } }));
    if (this.current) return Promise.resolve(this.current.pool);
    if (this.lastFailure && Date.now() - this.lastFailure.at < RESELECT_AFTER_MS) return Promise.reject(this.lastFailure.error);
    this.choosing ??= this.choose().finally(() => { this.choosing = undefined; });
    return this.choosing;
  }

  /** `pool`'s server failed: forget it, and end its pool (its connections are dead or read-only). */
  forget(pool: pg.Pool): void {
    if (this.current?.pool !== pool) return;
    this.current = undefined;
    void pool.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    const pool = this.current?.pool;
    this.current = undefined;
    if (pool && !pool.ended) await pool.end();
  }

  private async choose(): Promise<pg.Pool> {
    const failures: string[] = [];
    const readOnly: string[] = [];
    for (const target of this.spec.targets) {
      const client = new pg.Client({ connectionString: target.connectionString, connectionTimeoutMillis: this.options.connectTimeoutMs ?? 10_000 });
      client.on("error", () => undefined);
      try {
        await client.connect();
        const row = (await client.query<{ recovery: boolean; ro: string }>(
          "SELECT pg_catalog.pg_is_in_recovery() AS recovery, pg_catalog.current_setting('transaction_read_only') AS ro")).rows[0]!;
        if (row.recovery || row.ro !== "off") {
          readOnly.push(target.label);
          continue;
        }
      } catch (e) {
        failures.push(`${target.label}: ${(e as Error).message}`);
        continue;
      } finally {
        await client.end().catch(() => undefined);
      }
      if (this.closed) break;
      const pool = new pg.Pool({
        connectionString: target.connectionString,
        max: this.options.maxConnections ?? 10,
        connectionTimeoutMillis: this.options.connectTimeoutMs ?? 10_000,
        types,
      });
      // An idle client losing its server must not crash the process; the next query reports it.
      pool.on("error", () => undefined);
      this.current = { pool, label: target.label };
      this.lastFailure = undefined;
      return pool;
    }
    const error = readOnly.length > 0
      ? new UkeyError("DATABASE_READ_ONLY", { params: { hosts: this.spec.hostsLabel }, detail: [...readOnly.map((h) => `${h}: read-only`), ...failures].join("; ") })
      : new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: failures.join("; ") || "the connection is closed" } });
    this.lastFailure = { at: Date.now(), error };
    throw error;
  }
}

/**
 * The PostgreSQL engine: a pg Pool on the chosen server (see ServerChoice).
 * Outside a transaction each statement takes any pooled connection;
 * `transaction` pins one connection for BEGIN ... COMMIT. READ COMMITTED:
 * code that increments must lock rows (SELECT ... FOR UPDATE) or use one
 * UPDATE ... RETURNING.
 *
 * Nothing is retried once it has been sent: a statement or COMMIT whose
 * connection died may have committed, so it is reported
 * (DATABASE_UNAVAILABLE) and the caller looks again. Only getting a
 * connection is retried, once, on a freshly chosen server.
 */
export class PostgresDatabase implements Database {
  readonly engine = "postgres" as const;
  readonly health = new WriteHealth();

  constructor(private readonly servers: ServerChoice, private readonly url: string) {}

  /** Rows of a SELECT or of a statement with RETURNING. Throws DATABASE_UNAVAILABLE or DATABASE_READ_ONLY when no primary answers. */
  async query<T = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.once(async (c) => (await c.query(toNumbered(sql), bindAll(params))).rows as T[]);
  }

  /** Runs a statement; returns the rows changed. Throws DATABASE_UNAVAILABLE or DATABASE_READ_ONLY when no primary answers. */
  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.once(async (c) => (await c.query(toNumbered(sql), bindAll(params))).rowCount ?? 0);
  }

  /**
   * BEGIN, `fn`, COMMIT on one pooled connection; ROLLBACK and rethrow when
   * `fn` or COMMIT throws. A connection whose rollback fails is discarded.
   */
  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    const { client, pool } = await this.connect();
    let active = true;
    const tx: Sql = {
      query: async <R>(sql: string, params: readonly unknown[] = []) => {
        assertActive(active);
        try {
          return (await client.query(toNumbered(sql), bindAll(params))).rows as R[];
        } catch (e) {
          throw this.translate(e, pool);
        }
      },
      run: async (sql: string, params: readonly unknown[] = []) => {
        assertActive(active);
        try {
          return (await client.query(toNumbered(sql), bindAll(params))).rowCount ?? 0;
        } catch (e) {
          throw this.translate(e, pool);
        }
      },
    };
    let committing = false;
    try {
      await client.query("BEGIN");
      const result = await fn(tx);
      committing = true;
      await client.query("COMMIT");
      active = false;
      client.release();
      this.health.succeeded();
      return result;
    } catch (e) {
      active = false;
      try {
        await client.query("ROLLBACK");
        client.release();
      } catch (rollbackError) {
        client.release(rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError)));
      }
      throw this.translate(e, pool, committing);
    }
  }

  /** Commits one small write (see Database.probeWrite). Throws STORAGE_FULL, DATABASE_READ_ONLY or DATABASE_UNAVAILABLE. */
  async probeWrite(): Promise<void> {
    await this.transaction((tx) => tx.run("UPDATE storage_probe SET probes = probes + 1 WHERE id = 1"));
  }

  /** Closes every pooled connection. Idempotent. */
  async close(): Promise<void> {
    await this.servers.close();
  }

  /** One statement on a pooled connection; a connection that failed is discarded, not returned to the pool. */
  private async once<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const { client, pool } = await this.connect();
    try {
      const r = await fn(client);
      client.release();
      return r;
    } catch (e) {
      const err = this.translate(e, pool);
      client.release(isConnectionLoss(err) ? (e instanceof Error ? e : new Error(String(e))) : undefined);
      throw err;
    }
  }

  /** A connection of the chosen server; when it cannot be had (nothing was sent yet), once more on a server chosen afresh. */
  private async connect(): Promise<{ client: pg.PoolClient; pool: pg.Pool }> {
    for (let attempt = 0; ; attempt++) {
      const pool = await this.servers.pool();
      try {
        const client = await pool.connect();
        // pg-pool listens for errors only while a client is idle: a server that dies while the client is checked
        // out between statements would emit an unhandled 'error' and end the process. The next statement reports it.
        if (!guarded.has(client)) {
          client.on("error", () => undefined);
          guarded.add(client);
        }
        return { client, pool };
      } catch (e) {
        const err = this.translate(e, pool);
        if (attempt > 0 || !isConnectionLoss(err)) throw err;
      }
    }
  }

  private translate(e: unknown, pool: pg.Pool, committing = false): unknown {
    if (e instanceof UkeyError) return e;
    const full = storageFull(e);
    if (full !== undefined) {
      const err = new UkeyError("STORAGE_FULL", { params: { reason: full }, detail: redact(this.url), cause: e });
      this.health.failed(err);
      return err;
    }
    const code = String((e as { code?: unknown } | null)?.code ?? "");
    if (code === "25006") {
      // read_only_sql_transaction: the server we chose is now a standby (or was set read-only). Choose again.
      this.servers.forget(pool);
      return new UkeyError("DATABASE_READ_ONLY", { params: { hosts: this.servers.spec.hostsLabel }, detail: redact(this.url), cause: e });
    }
    // Class 08 is connection exceptions, 57P0x the server shutting down,
    // 28xxx authentication, 3D000 a missing database; the rest are the caller's SQL.
    const unreachable = /^(08|57P0|28|3D000)/.test(code)
      || ["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "ETIMEDOUT", "EHOSTUNREACH", "EPIPE"].includes(code)
      || /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(String((e as Error | null)?.message));
    if (!unreachable) return e;
    this.servers.forget(pool);
    const reason = committing
      ? `the connection was lost during COMMIT, so whether it committed is not known (${(e as Error).message}); look at the result again before repeating it`
      : String((e as Error).message);
    return new UkeyError("DATABASE_UNAVAILABLE", { params: { reason }, detail: redact(this.url), cause: e });
  }
}

const guarded = new WeakSet<pg.PoolClient>();

function isConnectionLoss(e: unknown): boolean {
  return e instanceof UkeyError && (e.code === "DATABASE_UNAVAILABLE" || e.code === "DATABASE_READ_ONLY");
}

function assertActive(active: boolean): void {
  if (!active) throw new UkeyError("INTERNAL", { detail: "transaction executor used after its transaction ended" });
}

function bindAll(params: readonly unknown[]): unknown[] {
  return params.map((v) => (v === undefined ? null : v));
}

const numbered = new Map<string, string>();

/**
 * Rewrites `?` placeholders to `$1, $2, ...`, leaving quoted strings and
 * identifiers alone. Cached per SQL text: the same texts recur constantly.
 */
export function toNumbered(sql: string): string {
  const cached = numbered.get(sql);
  if (cached !== undefined) return cached;
  let out = "";
  let n = 0;
  let quote: string | null = null;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = null;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === "?") {
      out += `$${++n}`;
    } else {
      out += ch;
    }
  }
  if (numbered.size > 2000) numbered.clear();
  numbered.set(sql, out);
  return out;
}

function redact(url: string): string {
  // Several hosts do not make a WHATWG URL: hide the password by pattern, in both forms.
  return `database ${url.replace(/(:\/\/[^:@/]*:)[^@/]*@/, "$1***@").replace(/(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)/i, "$1***")}`;
}
