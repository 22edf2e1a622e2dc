export * from "./types.js";
export { openStore, openDatabase, storeOn, createRepositories, transactionRepositories, DEFAULT_DATA_DIR } from "./open-store.js";
export { openSqliteDatabase, sqliteFile, SqliteDatabase } from "./sqlite-database.js";
export { openPostgresDatabase, PostgresDatabase, toNumbered, type PostgresOptions } from "./postgres-database.js";
export { migrate, migrations, LATEST_SCHEMA_VERSION, OPEN_ORDER_STATES, type Migration } from "./migrations.js";
export { auditEntryHash, GENESIS_HASH } from "./audit-log.js";
export { canonicalJson } from "./canonical-json.js";
export { uniqueViolation, foreignKeyViolation } from "./sql-errors.js";
export { reminderId } from "./reminder-repository.js";
