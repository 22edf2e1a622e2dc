/**
 * Engine-neutral reading of driver errors. Repositories turn these into
 * catalogue errors; nothing else should look at driver error codes.
 */

interface DriverError {
  code?: unknown;
  message?: unknown;
  constraint?: unknown;
  detail?: unknown;
}

/**
 * When `e` is a unique-constraint violation on either engine, returns a text
 * naming what was violated (SQLite's "UNIQUE constraint failed: table.column"
 * message, or PostgreSQL's constraint name and detail); otherwise undefined.
 */
export function uniqueViolation(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const d = e as DriverError;
  if (d.code === "SQLITE_CONSTRAINT_UNIQUE" || d.code === "SQLITE_CONSTRAINT_PRIMARYKEY") return String(d.message);
  if (d.code === "23505") return `${String(d.constraint ?? "")} ${String(d.detail ?? "")}`;
  return undefined;
}

/** True when `e` is a foreign-key violation on either engine (a referenced row is missing). */
export function foreignKeyViolation(e: unknown): boolean {
  if (typeof e !== "object" || e === null) return false;
  const code = (e as DriverError).code;
  return code === "SQLITE_CONSTRAINT_FOREIGNKEY" || code === "23503";
}

/** Error numbers of a file write that found no space (disk full, or the user's quota spent). */
const NO_SPACE_ERRNO = new Set(["ENOSPC", "EDQUOT"]);

/**
 * When `e` says the storage is full on either engine, returns a short
 * reason for operators; otherwise undefined. Recognised: SQLite's
 * SQLITE_FULL (any extended code), ENOSPC or EDQUOT from a file operation
 * (the WAL's sync, a file the store writes), and PostgreSQL's class 53
 * "insufficient resources" (53100 disk_full, 53200 out_of_memory, 53300
 * too_many_connections, 53400 configuration_limit_exceeded).
 */
export function storageFull(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const d = e as DriverError;
  const code = typeof d.code === "string" ? d.code : "";
  if (code.startsWith("SQLITE_FULL")) return "the database's volume is full (SQLITE_FULL)";
  if (NO_SPACE_ERRNO.has(code)) return `no space left for a file write (${code})`;
  if (/^53[0-9A-Z]{3}$/.test(code)) {
    return code === "53100" ? "PostgreSQL's disk is full (53100 disk_full)" : `PostgreSQL lacks resources (${code}: ${String(d.message ?? "")})`;
  }
  return undefined;
}
