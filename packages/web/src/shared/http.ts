import { ProblemError, problemOf, readProblem } from "./problem.js";
import type { ErrorCode } from "./policy.js";

/**
 * fetch that answers JSON or throws ProblemError: the problem document of
 * an error answer, or `unreachable` (SERVER_UNREACHABLE by default) when
 * nothing answered at all.
 */
export async function fetchJson<T>(url: string, init: RequestInit & { json?: unknown; onHeaders?: (h: Headers) => void } = {}, unreachable: ErrorCode = "SERVER_UNREACHABLE"): Promise<T> {
  const { json, onHeaders, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (json !== undefined) headers.set("content-type", "application/json");
  let res: Response;
  try {
    res = await fetch(url, { ...rest, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
  } catch {
    throw new ProblemError(problemOf(unreachable));
  }
  onHeaders?.(res.headers);
  const text = await res.text();
  let body: unknown;
  try { body = text ? JSON.parse(text) : undefined; } catch { body = undefined; }
  if (!res.ok) throw new ProblemError(readProblem(body, res.status));
  return body as T;
}
