import { catalogue, describeError, type ErrorCode } from "./policy.js";

/** An error as the pages show it: code, message and remedy in both languages. */
export interface Problem {
  code: string;
  message: { "zh-CN": string; en: string };
  remedy: { "zh-CN": string; en: string };
  params?: Record<string, string | number>;
  detail?: string;
  status?: number;
}

/** Thrown by the API clients: the server's or the agent's problem document, or one the page made. */
export class ProblemError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.code}: ${problem.message.en}`);
    this.name = "ProblemError";
  }
}

/** True for a code of the catalogue. */
export function isCatalogueCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(catalogue, code);
}

/** The catalogue's texts for a code (INTERNAL for a code the catalogue does not know). */
export function problemOf(code: string, params: Record<string, string | number> = {}): Problem {
  const p = describeError(isCatalogueCode(code) ? code : "INTERNAL", params);
  return { code: p.code, message: p.message, remedy: p.remedy, params };
}

type TwoLang = { zh?: string; "zh-CN"?: string; en?: string };
const both = (x: TwoLang | undefined) => (x && (x.en || x.zh || x["zh-CN"]) ? { "zh-CN": x["zh-CN"] ?? x.zh ?? x.en ?? "", en: x.en ?? x["zh-CN"] ?? x.zh ?? "" } : undefined);

/**
 * Reads a problem document of the server ({code, message: {"zh-CN", en}})
 * or of the agent ({code, message: {zh, en}}); anything else becomes the
 * catalogue's INTERNAL, so a page always has a code, a message and a remedy.
 */
export function readProblem(body: unknown, status?: number): Problem {
  const b = (body ?? {}) as { code?: unknown; message?: TwoLang; remedy?: TwoLang; params?: Record<string, string | number>; detail?: string };
  const code = typeof b.code === "string" ? b.code : "INTERNAL";
  const fallback = problemOf(code, b.params ?? {});
  return {
    code, message: both(b.message) ?? fallback.message, remedy: both(b.remedy) ?? fallback.remedy,
    ...(b.params ? { params: b.params } : {}), ...(b.detail ? { detail: b.detail } : {}), ...(status ? { status } : {}),
  };
}

/** Any thrown value as a Problem (a page never shows a bare exception). */
export function asProblem(e: unknown, unreachable: ErrorCode = "SERVER_UNREACHABLE"): Problem {
  if (e instanceof ProblemError) return e.problem;
  if (e instanceof TypeError) return problemOf(unreachable);
  return problemOf("INTERNAL");
}
