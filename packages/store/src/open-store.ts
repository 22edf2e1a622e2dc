import { systemClock, type Clock } from "@ukey/policy";
import { auditLog } from "./audit-log.js";
import { adoptDatabase, assertCaBinding, caMismatch, inspectCaBinding, sqliteFileState, type CaBinding } from "./ca-binding.js";
import { certificateRepository } from "./certificate-repository.js";
import { crlRepository } from "./crl-repository.js";
import { enrolmentRepository } from "./enrolment-repository.js";
import type { Executor } from "./executor.js";
import { holderRepository } from "./holder-repository.js";
import { issuerRepository } from "./issuer-repository.js";
import { migrate } from "./migrations.js";
import { orderRepository } from "./order-repository.js";
import { outboxRepository } from "./outbox-repository.js";
import { operatorRepository } from "./operator-repository.js";
import { openPostgresDatabase } from "./postgres-database.js";
import { profileRepository } from "./profile-repository.js";
import { reminderRepository } from "./reminder-repository.js";
import { holderPreferenceRepository } from "./holder-preference-repository.js";
import { holderSignInRepository } from "./holder-sign-in-repository.js";
import { signInBackoffRepository } from "./sign-in-backoff-repository.js";
import { kmcEscrowRepository } from "./kmc-escrow-repository.js";
import { certificatePairRepository } from "./certificate-pair-repository.js";
import { kmcRecoveryRepository } from "./kmc-recovery-repository.js";
import { openSqliteDatabase, sqliteFile } from "./sqlite-database.js";
import type { Database, OpenStoreOptions, Repositories, Sql, Store } from "./types.js";

/** The data directory used when none is given: `.data` under the working directory. */
export const DEFAULT_DATA_DIR = ".data";

/**
 * Opens the engine the options name, without touching the schema:
 * PostgreSQL when `databaseUrl` is set, else the embedded SQLite database
 * in `dataDir` (default `.data`), whose directory lock it takes; with
 * `create: false` a missing database file is refused instead of created.
 *
 * Throws UkeyError DATA_DIR_LOCKED, DATA_DIR_CORRUPT (SQLite) or
 * DATABASE_UNAVAILABLE (either), DATABASE_URL_INVALID or DATABASE_READ_ONLY (PostgreSQL).
 */
export async function openDatabase(options: OpenStoreOptions & { create?: boolean } = {}): Promise<Database> {
  if (options.databaseUrl) return openPostgresDatabase(options.databaseUrl);
  return openSqliteDatabase(options.dataDir ?? DEFAULT_DATA_DIR, { create: options.create ?? true });
}

/**
 * All repositories over one executor. `atomic` makes a multi-statement
 * operation (an audit append) atomic: pass the transaction itself when
 * already inside one.
 */
export function createRepositories(sql: Sql, atomic: Executor["atomic"]): Repositories {
  const x: Executor = { sql, atomic };
  return {
    holders: holderRepository(x),
    profiles: profileRepository(x),
    certificates: certificateRepository(x),
    issuers: issuerRepository(x),
    crls: crlRepository(x),
    orders: orderRepository(x),
    enrolments: enrolmentRepository(x),
    operators: operatorRepository(x),
    reminders: reminderRepository(x),
    holderPreferences: holderPreferenceRepository(x),
    holderSignIns: holderSignInRepository(x),
    signInBackoffs: signInBackoffRepository(x),
    outbox: outboxRepository(x),
    kmcEscrows: kmcEscrowRepository(x),
    certificatePairs: certificatePairRepository(x),
    kmcRecoveries: kmcRecoveryRepository(x),
    audit: auditLog(x),
  };
}

/**
 * Repositories bound to one open transaction, each made on first use: a
 * transaction touches two or three of the thirteen, and making all of them
 * (a hundred closures) for every transaction was a measurable share of a
 * renewal's garbage.
 */
export function transactionRepositories(tx: Sql): Repositories {
  return new LazyRepositories({ sql: tx, atomic: (fn) => fn(tx) });
}

class LazyRepositories implements Repositories {
  private readonly made: Partial<Repositories> = {};

  constructor(private readonly x: Executor) {}

  get holders() { return (this.made.holders ??= holderRepository(this.x)); }
  get profiles() { return (this.made.profiles ??= profileRepository(this.x)); }
  get certificates() { return (this.made.certificates ??= certificateRepository(this.x)); }
  get issuers() { return (this.made.issuers ??= issuerRepository(this.x)); }
  get crls() { return (this.made.crls ??= crlRepository(this.x)); }
  get orders() { return (this.made.orders ??= orderRepository(this.x)); }
  get enrolments() { return (this.made.enrolments ??= enrolmentRepository(this.x)); }
  get operators() { return (this.made.operators ??= operatorRepository(this.x)); }
  get reminders() { return (this.made.reminders ??= reminderRepository(this.x)); }
  get holderPreferences() { return (this.made.holderPreferences ??= holderPreferenceRepository(this.x)); }
  get holderSignIns() { return (this.made.holderSignIns ??= holderSignInRepository(this.x)); }
  get signInBackoffs() { return (this.made.signInBackoffs ??= signInBackoffRepository(this.x)); }
  get outbox() { return (this.made.outbox ??= outboxRepository(this.x)); }
  get kmcEscrows() { return (this.made.kmcEscrows ??= kmcEscrowRepository(this.x)); }
  get certificatePairs() { return (this.made.certificatePairs ??= certificatePairRepository(this.x)); }
  get kmcRecoveries() { return (this.made.kmcRecoveries ??= kmcRecoveryRepository(this.x)); }
  get audit() { return (this.made.audit ??= auditLog(this.x)); }
}

/**
 * Opens the store: the database (see `openDatabase`; SQLite in
 * `<dataDir>/db/ukey.sqlite` by default, created on first use), with every
 * pending migration applied in one transaction. `clock` (default the system
 * clock) stamps the migrations applied and an adoption.
 *
 * With `ca` (every open of an initialised CA) the database must serve that
 * CA, and is checked before anything is written: an embedded database file
 * that is missing or empty is refused (never created), as is a database
 * with no schema, one bound to another CA, or an unbound one (a release
 * before schema 8) that holds nothing of this CA; an unbound one that
 * holds this CA's data is migrated and adopted, with an audit entry.
 *
 * Throws UkeyError DATABASE_CA_MISMATCH (nothing changed), DATA_DIR_LOCKED
 * when another process or another open store holds the data directory,
 * DATA_DIR_CORRUPT when the database file is not an intact database,
 * DATABASE_UNAVAILABLE when PostgreSQL cannot be reached,
 * DATABASE_SCHEMA_NEWER when a newer program wrote the schema. The
 * database is closed again when opening fails.
 */
export async function openStore(options: OpenStoreOptions & { clock?: Clock; ca?: CaBinding } = {}): Promise<Store> {
  const ca = options.ca;
  if (ca && !options.databaseUrl) {
    const state = sqliteFileState(sqliteFile(options.dataDir ?? DEFAULT_DATA_DIR));
    if (state === "missing") throw caMismatch(ca, "the database file db/ukey.sqlite is missing");
    if (state === "empty") throw caMismatch(ca, "the database file db/ukey.sqlite is empty (0 bytes)");
  }
  const db = await openDatabase({ ...options, create: ca === undefined });
  try {
    const at = (options.clock ?? systemClock).now().getTime();
    const found = ca ? await inspectCaBinding(db, ca) : undefined;
    await migrate(db, at);
    if (ca) {
      if (found?.state === "adopt") await adoptDatabase(db, ca, found.evidence, at);
      await assertCaBinding(db, ca);
    }
  } catch (e) {
    await db.close();
    throw e;
  }
  return storeOn(db);
}

/** A Store over an already migrated database. */
export function storeOn(db: Database): Store {
  const repos = createRepositories(db, (fn) => db.transaction(fn));
  return {
    ...repos,
    db,
    transaction: (fn) => db.transaction((tx) => fn(transactionRepositories(tx))),
    close: () => db.close(),
  };
}
