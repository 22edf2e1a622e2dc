import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open as openFile, type FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { UkeyError } from "@ukey/policy";
import { AsyncMutex } from "./async-mutex.js";
import type { CommitState, Database, Sql } from "./types.js";

/** Where the embedded database lives inside a data directory. */
export function sqliteFile(dataDir: string): string {
  return join(resolve(dataDir), "db", "ukey.sqlite");
}

/** How many distinct SQL texts keep a prepared statement; dynamic searches make a few variants. */
const STATEMENT_CACHE_SIZE = 500;

type Statement = BetterSqlite3.Statement<unknown[], unknown>;

/**
 * A cached statement. Rows of a reading statement come back from SQLite as
 * arrays (raw mode) and become objects here (see rowMaker): better-sqlite3
 * builds row objects through V8's API one property at a time, which cost
 * more than the query itself for a certificate row.
 */
interface Prepared {
  stmt: Statement;
  /** Makes a row object from a raw row, for a reading statement; undefined for one that returns no rows. */
  row: ((raw: unknown[]) => Record<string, unknown>) | undefined;
}

/** Statements of the group commit, prepared once. */
interface Control {
  begin: Statement;
  commit: Statement;
  rollback: Statement;
  savepoint: Statement;
  release: Statement;
  rollbackTo: Statement;
}

interface TxState {
  active: boolean;
}

/** Most transactions that share one commit. */
const GROUP_COMMIT_MAX = 256;

interface Waiting {
  fn: (tx: Sql) => Promise<unknown>;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/**
 * How long a call on the bare database may wait behind one and the same
 * running transaction body before it is refused as a self-deadlock (the
 * body using the bare database instead of its transaction's executor). An
 * AsyncLocalStorage could tell at once, but on Node 20 it puts a hook on
 * every promise of the process, which costs every request about a tenth.
 */
const DEADLOCK_WAIT_MS = 10_000;

/**
 * Opens the embedded database of `dataDir` (file `db/ukey.sqlite`, created
 * with its directory when missing) and takes the data directory's lock for
 * the life of the connection: SQLite's exclusive locking mode keeps the OS
 * file lock once the first write transaction has run, and the OS drops it
 * when the process dies, even by SIGKILL. WAL with an fdatasync of the WAL file (see syncWal) makes a
 * commit durable before `transaction` resolves.
 *
 * Throws UkeyError DATA_DIR_LOCKED when another connection (this process or
 * another) holds the directory, DATA_DIR_CORRUPT when the file is not an
 * intact SQLite database (nothing is written to it then), and
 * DATABASE_UNAVAILABLE when the file cannot be opened at all.
 */
export function openSqliteDatabase(dataDir: string): SqliteDatabase {
  const dir = resolve(dataDir);
  const file = sqliteFile(dir);
  try {
    mkdirSync(join(dir, "db"), { recursive: true });
  } catch (e) {
    throw new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: `cannot create ${join(dir, "db")}` }, detail: String(e), cause: e });
  }
  let handle: BetterSqlite3.Database | undefined;
  try {
    // timeout 0: a held lock must fail at once, not after a busy wait.
    handle = new BetterSqlite3(file, { timeout: 0 });
    // Order matters: exclusive mode must be set before WAL is first used, so
    // that no shared-memory index exists and the lock is never shared.
    handle.pragma("locking_mode = EXCLUSIVE");
    const mode = handle.pragma("journal_mode = WAL", { simple: true });
    if (mode !== "wal") throw new UkeyError("DATA_DIR_CORRUPT", { params: { dir, reason: `journal mode stays ${String(mode)}` } });
    // NORMAL: a COMMIT writes the WAL without fsync; the commit is made durable by our own
    // fdatasync of the WAL file off the main thread before anyone hears of it (see syncWal).
    handle.pragma("synchronous = NORMAL");
    // Checkpoints run inside a COMMIT on the main thread and sync the database file: fewer, larger
    // ones (every ~80 MB of WAL instead of ~4 MB) leave more time to the requests.
    handle.pragma("wal_autocheckpoint = 20000");
    handle.pragma("foreign_keys = ON");
    // Each transaction of a group commit runs in a SAVEPOINT, whose undo journal SQLite otherwise
    // keeps in a temporary file: a pwrite per page a transaction first touches (five in six of the
    // writes a renewal made). In memory they cost a copy; the durable WAL is unchanged.
    handle.pragma("temp_store = MEMORY");
    // The first write transaction takes the exclusive lock; it is kept until close.
    handle.exec("BEGIN IMMEDIATE");
    handle.exec("COMMIT");
    handle.prepare("SELECT count(*) FROM sqlite_master").get();
  } catch (e) {
    handle?.close();
    throw translateOpenError(e, dir, file);
  }
  writeOwner(file);
  return new SqliteDatabase(handle, dir, file);
}

/**
 * The embedded engine: one better-sqlite3 connection. Statements run
 * synchronously, so every statement and every transaction goes through one
 * FIFO mutex; an async transaction body therefore never interleaves with
 * other work. Use `openSqliteDatabase` to construct.
 */
export class SqliteDatabase implements Database {
  readonly engine = "sqlite" as const;
  private readonly statements = new Map<string, Prepared>();
  private control: Control | undefined;
  private readonly mutex = new AsyncMutex();
  /** Callers holding or waiting for the mutex. */
  private inMutex = 0;
  private readonly waiting: Waiting[] = [];
  private draining = false;
  private closed = false;
  /** The transaction body running now, if any (see DEADLOCK_WAIT_MS). */
  private body: object | undefined;
  private readonly waiters = new Set<(e: unknown) => void>();
  /** Commits whose WAL sync is under way. */
  private readonly syncing = new Set<Promise<void>>();
  private wal: Promise<FileHandle> | undefined;
  /** Default DEADLOCK_WAIT_MS; tests make it short. */
  deadlockWaitMs = DEADLOCK_WAIT_MS;

  constructor(private readonly handle: BetterSqlite3.Database, readonly dataDir: string, readonly file: string) {}

  /** Runs a SELECT (or a statement with RETURNING) after any running transaction. */
  query<T = Record<string, unknown>>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.locked(() => this.queryNow<T>(sql, params));
  }

  /** Runs a statement after any running transaction; returns the rows changed. */
  run(sql: string, params: readonly unknown[] = []): Promise<number> {
    return this.locked(() => this.runNow(sql, params));
  }

  /**
   * Runs `fn` under the mutex. When nothing holds or waits for it, `fn` runs
   * at once: nothing is ahead of it, so the order is the mutex's, without a
   * chain of promises for every statement a request makes on the bare database.
   */
  private locked<T>(fn: () => T): Promise<T> {
    if (this.inMutex === 0) {
      try {
        return Promise.resolve(fn());
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.guarded(this.exclusive(fn));
  }

  /** The mutex, counting who holds it or waits for it (see locked). */
  private exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    this.inMutex += 1;
    return this.mutex.run(async () => {
      try {
        return await fn();
      } finally {
        this.inMutex -= 1;
      }
    });
  }

  /**
   * Calls on the bare database made while a transaction body runs are
   * registered here; if that body is still running after deadlockWaitMs they
   * are refused with UkeyError INTERNAL: the body is waiting for them, so
   * it would wait for itself forever. The refusal makes that body fail and
   * roll back, and everything else goes on. One timer per body, none per call.
   */
  private guarded<T>(work: Promise<T>): Promise<T> {
    if (!this.body) return work;
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const refuse = (e: unknown) => { if (!done) { done = true; reject(e); } };
      this.waiters.add(refuse);
      work.then((v) => { this.waiters.delete(refuse); if (!done) { done = true; resolve(v); } },
        (e: unknown) => { this.waiters.delete(refuse); refuse(e); });
    });
  }

  /**
   * Runs `fn` in a transaction that is committed durably (its WAL frames
   * fdatasync'ed) before the promise resolves. Group commit: calls that
   * arrive while another batch is committing run together inside one BEGIN
   * IMMEDIATE .. COMMIT, one after another, each inside its own SAVEPOINT,
   * so they share one fsync; a body that throws rolls back to its savepoint
   * and only its caller sees the error. A COMMIT that fails fails the whole
   * batch. A body must use its `tx`: calling the bare database from inside
   * a body is refused with UkeyError INTERNAL after deadlockWaitMs (it would
   * wait for itself forever).
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    return this.guarded(new Promise<T>((resolve, reject) => {
      this.waiting.push({ fn: fn as (tx: Sql) => Promise<unknown>, resolve: resolve as (v: unknown) => void, reject });
      if (!this.draining) {
        // Start after the current I/O phase, so that every request already read joins this commit.
        this.draining = true;
        setImmediate(() => void this.drain());
      }
    }));
  }

  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.waiting.length) {
        const batch = this.waiting.splice(0, GROUP_COMMIT_MAX);
        await this.exclusive(() => this.runBatch(batch));
      }
    } finally {
      this.draining = false;
    }
  }

  /** BEGIN, COMMIT and the savepoint statements, prepared on first use (exec would compile them every time). */
  private controlStatements(): Control {
    this.control ??= {
      begin: this.handle.prepare("BEGIN IMMEDIATE"),
      commit: this.handle.prepare("COMMIT"),
      rollback: this.handle.prepare("ROLLBACK"),
      savepoint: this.handle.prepare("SAVEPOINT ukey_tx"),
      release: this.handle.prepare("RELEASE ukey_tx"),
      rollbackTo: this.handle.prepare("ROLLBACK TO ukey_tx"),
    };
    return this.control;
  }

  private async runBatch(batch: Waiting[]): Promise<void> {
    let c: Control;
    try {
      this.assertOpen();
      c = this.controlStatements();
      c.begin.run();
    } catch (e) {
      for (const w of batch) w.reject(this.translate(e));
      return;
    }
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    const shared = new BatchState();
    for (const w of batch) {
      const state: TxState = { active: true };
      const tx: Sql = {
        query: async <R>(sql: string, params: readonly unknown[] = []) => {
          assertActive(state);
          return this.queryNow<R>(sql, params);
        },
        run: async (sql: string, params: readonly unknown[] = []) => {
          assertActive(state);
          return this.runNow(sql, params);
        },
        commitState: shared,
      };
      shared.begin();
      c.savepoint.run();
      try {
        this.body = state;
        const watchdog = setTimeout(() => {
          if (this.body !== state) return;
          const e = new UkeyError("INTERNAL", { detail: "database used directly inside its own transaction: use the transaction's executor" });
          for (const refuse of [...this.waiters]) refuse(e);
          this.waiters.clear();
        }, this.deadlockWaitMs);
        let value: unknown;
        try {
          value = await w.fn(tx);
        } finally {
          clearTimeout(watchdog);
        }
        c.release.run();
        outcomes.push({ ok: true, value });
      } catch (e) {
        if (this.handle.inTransaction) {
          c.rollbackTo.run();
          c.release.run();
        }
        shared.undo();
        outcomes.push({ ok: false, error: this.translate(e) });
      } finally {
        state.active = false;
        this.body = undefined;
      }
    }
    try {
      if (!this.handle.inTransaction) throw new UkeyError("INTERNAL", { detail: "the transaction ended inside a body" });
      await shared.flush({
        query: async <R>(sql: string, params: readonly unknown[] = []) => this.queryNow<R>(sql, params),
        run: async (sql: string, params: readonly unknown[] = []) => this.runNow(sql, params),
      });
      c.commit.run();
    } catch (e) {
      if (this.handle.inTransaction) c.rollback.run();
      for (const w of batch) w.reject(this.translate(e));
      return;
    }
    // The mutex is released now; the next batch runs while this one's WAL frames reach the disk.
    const settle = this.syncWal().then(
      () => batch.forEach((w, i) => {
        const o = outcomes[i]!;
        if (o.ok) w.resolve(o.value);
        else w.reject(o.error);
      }),
      (e: unknown) => {
        const err = new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: `cannot sync ${this.file}-wal` }, cause: e });
        for (const w of batch) w.reject(err);
      },
    );
    this.syncing.add(settle);
    void settle.finally(() => this.syncing.delete(settle));
  }

  /**
   * fdatasync of the WAL file in the thread pool: durable commits without
   * blocking the event loop for the length of an fsync (several
   * milliseconds here, most of a commit's cost). Everything committed before
   * the call is on disk when it resolves.
   */
  private async syncWal(): Promise<void> {
    this.wal ??= openFile(`${this.file}-wal`, "r");
    await (await this.wal).datasync();
  }

  /** Waits for running work, then closes the connection and releases the lock. Idempotent. */
  async close(): Promise<void> {
    await this.exclusive(async () => {
      if (this.closed) return;
      await Promise.allSettled([...this.syncing]);
      this.closed = true;
      this.statements.clear();
      this.control = undefined;
      await (await this.wal?.catch(() => undefined))?.close();
      this.handle.close();
      rmSync(`${this.file}.owner`, { force: true });
    });
  }

  private queryNow<T>(sql: string, params: readonly unknown[]): T[] {
    const p = this.prepare(sql);
    try {
      if (p.row) return (p.stmt.all(bindAll(params)) as unknown[][]).map(p.row) as T[];
      p.stmt.run(bindAll(params));
      return [];
    } catch (e) {
      throw this.translate(e);
    }
  }

  private runNow(sql: string, params: readonly unknown[]): number {
    const p = this.prepare(sql);
    try {
      if (p.row) return p.stmt.all(bindAll(params)).length;
      return p.stmt.run(bindAll(params)).changes;
    } catch (e) {
      throw this.translate(e);
    }
  }

  private prepare(sql: string): Prepared {
    this.assertOpen();
    let p = this.statements.get(sql);
    if (p) return p;
    try {
      // Row locks are implicit on SQLite: the one writer holds the database.
      const stmt = this.handle.prepare(sql.replace(/\s+FOR\s+UPDATE\b/gi, ""));
      p = stmt.reader ? { stmt: stmt.raw(true), row: rowMaker(stmt.columns().map((c) => c.name)) } : { stmt, row: undefined };
    } catch (e) {
      throw this.translate(e);
    }
    if (this.statements.size >= STATEMENT_CACHE_SIZE) {
      const oldest = this.statements.keys().next().value;
      if (oldest !== undefined) this.statements.delete(oldest);
    }
    this.statements.set(sql, p);
    return p;
  }

  private translate(e: unknown): unknown {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === "string" && (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB")) {
      return new UkeyError("DATA_DIR_CORRUPT", { params: { dir: this.dataDir, reason: String((e as Error).message) }, cause: e });
    }
    return e;
  }

  private assertOpen(): void {
    if (this.closed) throw new UkeyError("INTERNAL", { detail: "the database is closed" });
  }


}

/** The CommitState of one group commit (see runBatch). */
class BatchState implements CommitState {
  private readonly values = new Map<string, { value: unknown; flush: (sql: Sql, value: never) => Promise<unknown> }>();
  private saved = new Map<string, { value: unknown; flush: (sql: Sql, value: never) => Promise<unknown> }>();

  get<T>(key: string): T | undefined {
    return this.values.get(key)?.value as T | undefined;
  }

  set<T>(key: string, value: T, flush: (sql: Sql, value: T) => Promise<unknown>): void {
    this.values.set(key, { value, flush });
  }

  /** A transaction starts: what it sets is undone if it rolls back. */
  begin(): void {
    this.saved = new Map(this.values);
  }

  undo(): void {
    this.values.clear();
    for (const [k, v] of this.saved) this.values.set(k, v);
  }

  /** Writes the last value of every key, before the commit. */
  async flush(sql: Sql): Promise<void> {
    for (const { value, flush } of this.values.values()) await flush(sql, value as never);
  }
}

function assertActive(state: TxState): void {
  if (!state.active) throw new UkeyError("INTERNAL", { detail: "transaction executor used after its transaction ended" });
}

/**
 * The parameters as better-sqlite3 binds them (an array binds its elements
 * in order): it refuses booleans and undefined, and both engines store
 * flags as 0/1 and absent values as NULL. The array is copied only when
 * something must change.
 */
function bindAll(params: readonly unknown[]): unknown[] {
  for (let i = 0; i < params.length; i++) {
    const v = params[i];
    if (v === undefined || typeof v === "boolean") return params.map(bind);
  }
  return params as unknown[];
}

function bind(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === "boolean") return v ? 1 : 0;
  return v;
}

/**
 * A function that makes a statement's row object from its raw row: an
 * object literal of the statement's column names (a later duplicate name
 * wins, as in better-sqlite3's own objects). One function per statement
 * keeps every row of it one shape; filling objects in a shared loop made
 * those stores megamorphic across statements. The names come from our own
 * SQL and are quoted as JSON strings.
 */
function rowMaker(columns: string[]): (raw: unknown[]) => Record<string, unknown> {
  // A quoted "__proto__" key would set the prototype; a computed one makes a plain property.
  const fields = columns.map((c, i) => `${c === "__proto__" ? `[${JSON.stringify(c)}]` : JSON.stringify(c)}: r[${i}]`).join(", ");
  return new Function("r", `return { ${fields} };`) as (raw: unknown[]) => Record<string, unknown>;
}

function translateOpenError(e: unknown, dir: string, file: string): unknown {
  if (e instanceof UkeyError) return e;
  const code = String((e as { code?: unknown } | null)?.code ?? "");
  const message = String((e as Error | null)?.message ?? e);
  if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED") {
    const owner = readOwner(file);
    return new UkeyError("DATA_DIR_LOCKED", { params: { dir }, detail: owner ? `held by process ${owner}` : undefined, cause: e });
  }
  if (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT")) {
    return new UkeyError("DATA_DIR_CORRUPT", { params: { dir, reason: message }, cause: e });
  }
  return new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: `${file}: ${message}` }, cause: e });
}

/** The pid goes in a side file only so that DATA_DIR_LOCKED can say who holds the lock. */
function writeOwner(file: string): void {
  try {
    writeFileSync(`${file}.owner`, `${process.pid}\n`);
  } catch {
    // Only a message depends on it.
  }
}

function readOwner(file: string): string | undefined {
  try {
    return readFileSync(`${file}.owner`, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
