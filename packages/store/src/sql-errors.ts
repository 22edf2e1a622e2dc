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
