import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { open as openFile, type FileHandle } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import BetterSqlite3 from "better-sqlite3";
import { UkeyError } from "@ukey/policy";
import { AsyncMutex } from "./async-mutex.js";
import { storageFull } from "./sql-errors.js";
import type { CommitState, Database, Sql } from "./types.js";
import { WriteHealth } from "./write-health.js";

/**
 * better-sqlite3's handle on its native connection. Its public `backup()`
 * runs SQLite's online backup in steps on its own schedule, and a step
 * taken while this connection has a write transaction open fails with
 * SQLITE_LOCKED; `backupTo` takes each step itself, under the database's
 * mutex, through the same native Backup object (better-sqlite3 12.x,
 * pinned in package.json; the backup tests fail if it moves).
 */
const cppdb = (createRequire(import.meta.url)("better-sqlite3/lib/util.js") as { cppdb: symbol }).cppdb;

interface NativeBackup {
  transfer(pages: number): { totalPages: number; remainingPages: number };
  close(): void;
}

/** Pages one backup step copies (4 KiB each): a step holds the database for about a millisecond. */
const BACKUP_PAGES_PER_STEP = 256;

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
 * Checkpoint thresholds, in WAL pages. Checkpoints run inside a COMMIT on
 * the main thread and sync the database file: on a large volume fewer,
 * larger ones (every ~80 MB of WAL) leave more time to the requests. On a
 * small volume the WAL is kept to an eighth of the free space (at least
 * ~256 KB): a checkpoint needs room in the database file for what it
 * copies, and a WAL that has taken the whole volume can never be
 * checkpointed again (nothing could be written, even after space is freed).
 */
const CHECKPOINT_PAGES_MAX = 20_000;
const CHECKPOINT_PAGES_MIN = 64;
/** How often the free space of the database's volume is read again, at most (ms): a statfs costs a few microseconds. */
const SPACE_CHECK_MS = 100;

/** Where the WAL is checkpointed, for `free` bytes left on the volume (see CHECKPOINT_PAGES_MAX). */
export function checkpointPagesFor(free: number, pageSize: number): number {
  return Math.max(CHECKPOINT_PAGES_MIN, Math.min(CHECKPOINT_PAGES_MAX, Math.floor(free / 8 / pageSize)));
}

/** The one row readiness writes to tell whether storage accepts writes (migration 8). */
const PROBE = "UPDATE storage_probe SET probes = probes + 1 WHERE id = 1";

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
 * with its directory when missing, unless `create` is false) and takes the
 * data directory's lock for the life of the connection: SQLite's exclusive
 * locking mode keeps the OS file lock once the first write transaction has
 * run, and the OS drops it when the process dies, even by SIGKILL. WAL
 * with an fdatasync of the WAL file (see syncWal) makes a commit durable
 * before `transaction` resolves.
 *
 * The directory is made (or put back to) mode 0700 and the database file
 * 0600, whatever the umask: SQLite gives its WAL the database file's mode,
 * and the side file naming the lock's owner is written 0600 too.
 *
 * Throws UkeyError DATA_DIR_LOCKED when another connection (this process or
 * another) holds the directory, DATA_DIR_CORRUPT when the file is not an
 * intact SQLite database (nothing is written to it then), and
 * DATABASE_UNAVAILABLE when the file cannot be opened at all (or is
 * missing, with `create` false).
 */
export function openSqliteDatabase(dataDir: string, options: { create?: boolean } = {}): SqliteDatabase {
  const create = options.create ?? true;
  const dir = resolve(dataDir);
  const file = sqliteFile(dir);
  const dbDir = join(dir, "db");
  try {
    if (create) {
      mkdirSync(dbDir, { recursive: true, mode: 0o700 });
      createPrivateFile(file);
    }
    for (const [path, mode] of [[dbDir, 0o700], [file, 0o600], [`${file}-wal`, 0o600], [`${file}-shm`, 0o600]] as const) restrictMode(path, mode);
  } catch (e) {
    throw new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: `cannot create ${file} or make it private` }, detail: String(e), cause: e });
  }
  let handle: BetterSqlite3.Database | undefined;
  try {
    // timeout 0: a held lock must fail at once, not after a busy wait.
    handle = new BetterSqlite3(file, { timeout: 0, fileMustExist: !create });
    // Order matters: exclusive mode must be set before WAL is first used, so
    // that no shared-memory index exists and the lock is never shared.
    handle.pragma("locking_mode = EXCLUSIVE");
    const mode = handle.pragma("journal_mode = WAL", { simple: true });
    if (mode !== "wal") throw new UkeyError("DATA_DIR_CORRUPT", { params: { dir, reason: `journal mode stays ${String(mode)}` } });
    // NORMAL: a COMMIT writes the WAL without fsync; the commit is made durable by our own
    // fdatasync of the WAL file off the main thread before anyone hears of it (see syncWal).
    handle.pragma("synchronous = NORMAL");
    // When checkpoints run depends on the volume's free space (see checkpointPagesFor, tuneCheckpoints).
    handle.pragma(`wal_autocheckpoint = ${CHECKPOINT_PAGES_MAX}`);
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
  const db = new SqliteDatabase(handle, dir, file);
  db.tuneCheckpoints();
  return db;
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
  readonly health = new WriteHealth();
  /** When the volume's free space was last read (Date.now()); 0 makes the next batch read it. */
  private spaceCheckedAt = 0;
  /** The wal_autocheckpoint in force, in pages. */
  checkpointPages = CHECKPOINT_PAGES_MAX;
  private readonly pageSize: number;

  constructor(private readonly handle: BetterSqlite3.Database, readonly dataDir: string, readonly file: string) {
    this.pageSize = Number(handle.pragma("page_size", { simple: true })) || 4096;
  }

  /**
   * Sets the checkpoint threshold from the volume's free space (see
   * checkpointPagesFor), at most once per SPACE_CHECK_MS and at once after a
   * write failed for lack of space. On a small volume the WAL file is also
   * truncated to that size after each checkpoint, so that what it held goes
   * back to the volume; on a large one nothing changes (ten statfs a second at most).
   */
  tuneCheckpoints(): void {
    const now = Date.now();
    if (now - this.spaceCheckedAt < SPACE_CHECK_MS) return;
    this.spaceCheckedAt = now;
    let free: number;
    try {
      const s = statfsSync(dirname(this.file));
      free = s.bavail * s.bsize;
    } catch {
      return;
    }
    const pages = checkpointPagesFor(free, this.pageSize);
    if (pages === this.checkpointPages) return;
    this.handle.pragma(`wal_autocheckpoint = ${pages}`);
    this.handle.pragma(`journal_size_limit = ${pages < CHECKPOINT_PAGES_MAX ? pages * this.pageSize : -1}`);
    this.checkpointPages = pages;
  }

  /**
   * Gives the WAL back to the database file and truncates it (when the
   * volume has room for that now), then commits one small write durably.
   * Throws UkeyError STORAGE_FULL while the volume is still full.
   */
  async probeWrite(): Promise<void> {
    await this.locked(() => {
      this.assertOpen();
      try {
        this.handle.pragma("wal_checkpoint(TRUNCATE)");
      } catch (e) {
        throw this.translate(e);
      }
    });
    await this.transaction((tx) => tx.run(PROBE));
  }

  /**
   * Copies the database into `file` (which must not exist) with SQLite's
   * online backup API while the database serves: each step copies
   * `pagesPerStep` pages under the mutex, between transactions, and lets
   * waiting requests run between steps. Writes this connection commits
   * meanwhile are carried into the copy by SQLite as they happen, so the
   * copy is the database as it stands when the last step ends: every
   * transaction committed before then, none half. The copy is synced to
   * disk before the promise resolves. Returns the pages copied.
   * @throws UkeyError STORAGE_FULL when the copy's volume is full; DATABASE_UNAVAILABLE when the file cannot be written.
   */
  async backupTo(file: string, pagesPerStep = BACKUP_PAGES_PER_STEP): Promise<{ pages: number; pageSize: number }> {
    const native = (this.handle as unknown as Record<symbol, { backup(db: unknown, attached: string, file: string, isNew: boolean): NativeBackup }>)[cppdb]!;
    createPrivateFile(file);
    const backup = await this.locked(() => {
      this.assertOpen();
      return native.backup(this.handle, "main", file, true);
    });
    let pages = 0;
    try {
      // The first step with 0 pages only starts the backup (as better-sqlite3's own backup does).
      let rate = 0;
      for (;;) {
        const p = await this.locked(() => {
          this.assertOpen();
          return backup.transfer(rate);
        });
        pages = p.totalPages;
        if (!p.remainingPages && rate > 0) break;
        rate = pagesPerStep;
        await new Promise((r) => setImmediate(r));
      }
    } catch (e) {
      throw storageFull(e) ? new UkeyError("STORAGE_FULL", { params: { reason: `backup copy ${file}` }, cause: e })
        : new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: `cannot write the backup copy ${file}` }, detail: String(e), cause: e });
    } finally {
      backup.close();
    }
    const fd = openSync(file, "r+");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return { pages, pageSize: this.pageSize };
  }

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
      this.tuneCheckpoints();
      c = this.controlStatements();
      c.begin.run();
    } catch (e) {
      const err = this.translate(e);
      for (const w of batch) w.reject(err);
      return;
    }
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    const shared = new BatchState();
    // Set when the batch's transaction ended inside a body (SQLite rolls a transaction back by itself
    // on some errors, SQLITE_FULL among them): nothing of the batch is kept, so every body fails with it,
    // and no later body runs (a SAVEPOINT outside a transaction would start a new one).
    let ended: unknown;
    for (const w of batch) {
      if (ended !== undefined) break;
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
        if (!this.handle.inTransaction) throw new UkeyError("INTERNAL", { detail: "the transaction ended inside a body" });
        c.release.run();
        outcomes.push({ ok: true, value });
      } catch (e) {
        const err = this.translate(e);
        if (this.handle.inTransaction) {
          c.rollbackTo.run();
          c.release.run();
        } else {
          ended = err;
        }
        shared.undo();
        outcomes.push({ ok: false, error: err });
      } finally {
        state.active = false;
        this.body = undefined;
      }
    }
    try {
      if (ended !== undefined) throw ended;
      if (!this.handle.inTransaction) throw new UkeyError("INTERNAL", { detail: "the transaction ended inside a body" });
      await shared.flush({
        query: async <R>(sql: string, params: readonly unknown[] = []) => this.queryNow<R>(sql, params),
        run: async (sql: string, params: readonly unknown[] = []) => this.runNow(sql, params),
      });
      c.commit.run();
    } catch (e) {
      if (this.handle.inTransaction) c.rollback.run();
      const err = this.translate(e);
      for (const w of batch) w.reject(err);
      return;
    }
    // The mutex is released now; the next batch runs while this one's WAL frames reach the disk.
    const settle = this.syncWal().then(
      () => {
        this.health.succeeded();
        batch.forEach((w, i) => {
          const o = outcomes[i]!;
          if (o.ok) w.resolve(o.value);
          else w.reject(o.error);
        });
      },
      (e: unknown) => {
        const full = this.translate(e);
        const err = full instanceof UkeyError && full.code === "STORAGE_FULL"
          ? full
          : new UkeyError("DATABASE_UNAVAILABLE", { params: { reason: `cannot sync ${this.file}-wal` }, cause: e });
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
      const stmt = this.handle.prepare(sql.replace(/\s+FOR\s+UPDATE(\s+SKIP\s+LOCKED)?\b/gi, ""));
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
    if (e instanceof UkeyError) return e;
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === "string" && (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB")) {
      return new UkeyError("DATA_DIR_CORRUPT", { params: { dir: this.dataDir, reason: String((e as Error).message) }, cause: e });
    }
    const full = storageFull(e);
    if (full !== undefined) {
      const err = new UkeyError("STORAGE_FULL", { params: { reason: full }, detail: this.file, cause: e });
      this.health.failed(err);
      // The free space is read again before the next batch: checkpoints come sooner on a fuller volume.
      this.spaceCheckedAt = 0;
      return err;
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
    writeFileSync(`${file}.owner`, `${process.pid}\n`, { mode: 0o600 });
    restrictMode(`${file}.owner`, 0o600);
  } catch {
    // Only a message depends on it.
  }
}

/** Creates an empty file readable by its owner only (the umask cannot widen 0600); an existing one is left as it is. */
function createPrivateFile(path: string): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
}

/** Puts `path` to `mode` if it exists (files of an earlier release followed the umask). */
function restrictMode(path: string, mode: number): void {
  try {
    chmodSync(path, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

function readOwner(file: string): string | undefined {
  try {
    return readFileSync(`${file}.owner`, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
