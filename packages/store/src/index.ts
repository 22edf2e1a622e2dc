export * from "./types.js";
export { openStore, openDatabase, storeOn, createRepositories, transactionRepositories, DEFAULT_DATA_DIR } from "./open-store.js";
export { openSqliteDatabase, sqliteFile, SqliteDatabase, checkpointPagesFor } from "./sqlite-database.js";
export { openPostgresDatabase, PostgresDatabase, toNumbered, type PostgresOptions } from "./postgres-database.js";
export { parsePostgresConnectionString, type PostgresConnectionSpec, type PostgresTarget, type TargetSessionAttrs } from "./postgres-url.js";
export { migrate, migrations, LATEST_SCHEMA_VERSION, OPEN_ORDER_STATES, type Migration } from "./migrations.js";
export { auditEntryHash, GENESIS_HASH } from "./audit-log.js";
export { canonicalJson } from "./canonical-json.js";
export { uniqueViolation, foreignKeyViolation, storageFull } from "./sql-errors.js";
export { WriteHealth } from "./write-health.js";
export {
  readCaBinding, writeCaBinding, type CaBinding, type StoredCaBinding, type AdoptionEvidence,
} from "./ca-binding.js";
export { reminderId } from "./reminder-repository.js";
export { certificatePairRepository, type CertificatePair, type CertificatePairRepository } from "./certificate-pair-repository.js";
export { kmcEscrowRepository, type KmcEscrow, type KmcEscrowRepository } from "./kmc-escrow-repository.js";
export {
  kmcRecoveryRepository, type KmcRecoveryPatch, type KmcRecoveryRecord, type KmcRecoveryRepository, type KmcRecoveryStatus,
} from "./kmc-recovery-repository.js";
export { summariseDatabase, sealSqliteCopy, type DatabaseSummary } from "./database-summary.js";
