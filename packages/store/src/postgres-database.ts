import pg from "pg";
import { UkeyError } from "@ukey/policy";
import { storageFull } from "./sql-errors.js";
import type { Database, Sql } from "./types.js";
import { WriteHealth } from "./write-health.js";

/** Options for `openPostgresDatabase`. */
export interface PostgresOptions {
  /** Most connections the pool opens. Default 10. */
  maxConnections?: number;
  /** How long to wait for a connection before DATABASE_UNAVAILABLE, ms. Default 10000. */
  connectTimeoutMs?: number;
}

const INT8_OID = 20;

/**
 * Opens a pool on `url` and checks that the server answers.
 * Throws UkeyError DATABASE_UNAVAILABLE when it cannot connect (refused,
 * unknown host, authentication, no such database).
 */
export async function openPostgresDatabase(url: string, options: PostgresOptions = {}): Promise<PostgresDatabase> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    // Times are BIGINT epoch milliseconds, always below 2^53: read them as numbers.
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === INT8_OID && format !== "binary" ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? "text")) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on("error", () => undefined);
  const db = new PostgresDatabase(pool, url);
  try {
    await db.query("SELECT 1");
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw e;
  }
  return db;
}

/**
 * The PostgreSQL engine: a pg Pool. Outside a transaction each statement
 * takes any pooled connection; `transaction` pins one connection for
 * BEGIN ... COMMIT. READ COMMITTED: code that increments must lock rows
 * (SELECT ... FOR UPDATE) or use one UPDATE ... RETURNING.
 */
export class PostgresDatabase implements Database {
  readonly engine = "postgres" as const;
  readonly health = new WriteHealth();

  constructor(private readonly pool: pg.Pool, private readonly url: string) {}

  /** Rows of a SELECT or of a statement with RETURNING. Throws DATABASE_UNAVAILABLE when the server is unreachable. */
  async query<T = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    try {
      const r = await this.pool.query(toNumbered(sql), bindAll(params));
      return r.rows as T[];
    } catch (e) {
      throw this.translate(e);
    }
  }

  /** Runs a statement; returns the rows changed. Throws DATABASE_UNAVAILABLE when the server is unreachable. */
  async run(sql: string, params: readonly unknown[] = []): Promise<number> {
    try {
      const r = await this.pool.query(toNumbered(sql), bindAll(params));
      return r.rowCount ?? 0;
    } catch (e) {
      throw this.translate(e);
    }
  }

  /**
   * BEGIN, `fn`, COMMIT on one pooled connection; ROLLBACK and rethrow when
   * `fn` or COMMIT throws. A connection whose rollback fails is discarded.
   */
  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw this.translate(e);
    }
    let active = true;
    const tx: Sql = {
      query: async <R>(sql: string, params: readonly unknown[] = []) => {
        assertActive(active);
        try {
          return (await client.query(toNumbered(sql), bindAll(params))).rows as R[];
        } catch (e) {
          throw this.translate(e);
        }
      },
      run: async (sql: string, params: readonly unknown[] = []) => {
        assertActive(active);
        try {
          return (await client.query(toNumbered(sql), bindAll(params))).rowCount ?? 0;
        } catch (e) {
          throw this.translate(e);
        }
      },
    };
    try {
      await client.query("BEGIN");
      const result = await fn(tx);
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
      throw this.translate(e);
    }
  }

  /** Commits one small write (see Database.probeWrite). Throws STORAGE_FULL or DATABASE_UNAVAILABLE. */
  async probeWrite(): Promise<void> {
    await this.transaction((tx) => tx.run("UPDATE storage_probe SET probes = probes + 1 WHERE id = 1"));
  }

  /** Closes every pooled connection. Idempotent. */
  async close(): Promise<void> {
    if (this.pool.ended) return;
    await this.pool.end();
  }

  private translate(e: unknown): unknown {
    if (e instanceof UkeyError) return e;
    const full = storageFull(e);
    if (full !== undefined) {
      const err = new UkeyError("STORAGE_FULL", { params: { reason: full }, detail: redact(this.url), cause: e });
      this.health.failed(err);
      return err;
    }
    const code = String((e as { code?: unknown } | null)?.code ?? "");
    // Class 08 is connection exceptions, 57P0x the server shutting down,
    // 28xxx authentication, 3D000 a missing database; the rest are the caller's SQL.
    const unreachable = /^(08|57P0|28|3D000)/.test(code)
      || ["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "ETIMEDOUT", "EHOSTUNREACH", "EPIPE"].includes(code)
      || /Connection terminated|timeout exceeded when trying to connect/i.test(String((e as Error | null)?.message));
    if (!unreachable) return e;
    return new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: String((e as Error).message) }, detail: redact(this.url), cause: e });
  }
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
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return `database ${u.toString()}`;
  } catch {
    return "database URL unparsable";
  }
}
