import type { Sql } from "./types.js";

/**
 * What a repository runs on: an executor, and a way to make several
 * statements atomic. Inside a store transaction `atomic` simply runs on that
 * transaction; on the bare database it opens a new one.
 */
export interface Executor {
  readonly sql: Sql;
  atomic<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
}

/** Limits a caller-supplied page size to 1..max (default when absent or not a number). */
export function pageSize(limit: number | undefined, fallback: number, max: number): number {
  if (limit === undefined || !Number.isFinite(limit)) return fallback;
  return Math.max(1, Math.min(max, Math.floor(limit)));
}

/** A non-negative integer offset (0 when absent). */
export function pageOffset(offset: number | undefined): number {
  if (offset === undefined || !Number.isFinite(offset)) return 0;
  return Math.max(0, Math.floor(offset));
}

/** Reads a count or sum column that either engine may return as number or string. */
export function toNumber(v: unknown): number {
  return typeof v === "number" ? v : Number(v);
}

/** Reads a nullable BIGINT column. */
export function toMillisOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}
