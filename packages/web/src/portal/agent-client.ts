import type {
  HelloResponse, OperationAnswer, OperationRequest, OperationView, PairingConfirmed, PairingStarted,
} from "../../../agent/src/local-api/protocol.js";
import type { TokenStatus } from "../../../agent/src/flows/flow-types.js";
import { fetchJson } from "../shared/http.js";
import { ProblemError, problemOf } from "../shared/problem.js";

export type { HelloResponse, OperationAnswer, OperationRequest, OperationView, TokenStatus };

/** The agent's default address (protocol.ts: defaultAgentPort). */
export const DEFAULT_AGENT_URL = "http://127.0.0.1:24817";
/** The oldest agent this portal works with, and the protocol it speaks. */
export const MIN_AGENT_VERSION = "0.1.0";
export const AGENT_PROTOCOL = 1;

/**
 * Only a loopback address may be the agent: a link that pointed the portal
 * elsewhere could otherwise show a fake pairing or PIN page.
 */
export function isLoopbackAgentUrl(u: string): boolean {
  try {
    const url = new URL(u);
    return url.protocol === "http:" && (url.hostname === "127.0.0.1" || url.hostname === "localhost" || url.hostname === "[::1]")
      && url.pathname === "/" && !url.search && !url.hash && !url.username && !url.password;
  } catch {
    return false;
  }
}

/** The agent address: `?agent=` of the page (remembered), else the remembered one, else the default. */
export function agentUrl(): string {
  const fromPage = new URLSearchParams(location.search).get("agent");
  if (fromPage && isLoopbackAgentUrl(fromPage)) {
    const u = new URL(fromPage).origin;
    try { localStorage.setItem("ukey.agentUrl", u); } catch { /* not remembered in private mode */ }
    return u;
  }
  let saved: string | null = null;
  try { saved = localStorage.getItem("ukey.agentUrl"); } catch { /* none */ }
  return saved && isLoopbackAgentUrl(saved) ? new URL(saved).origin : DEFAULT_AGENT_URL;
}

/** Remembers another loopback agent address; false (and nothing changed) for anything else. */
export function setAgentUrl(u: string): boolean {
  if (!isLoopbackAgentUrl(u)) return false;
  try { localStorage.setItem("ukey.agentUrl", new URL(u).origin); } catch { return false; }
  return true;
}

/** a < b for dotted versions. */
export function versionBelow(a: string, b: string): boolean {
  const pa = a.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  return false;
}

/** Errors that mean: this page's pairing is gone, pair again (an operation in the agent carries on). */
export function needsPairing(e: unknown): boolean {
  return e instanceof ProblemError && (e.problem.status === 401 || ["ORIGIN_NOT_PAIRED", "SESSION_INVALID", "SESSION_EXPIRED"].includes(e.problem.code));
}

/**
 * The portal's side of the agent's local API (packages/agent/src/local-api/
 * protocol.ts). The bearer token of this origin is kept per agent address
 * in this browser. Every method throws ProblemError; nothing answering at
 * all is AGENT_NOT_RUNNING.
 */
export class AgentClient {
  constructor(readonly base: string = agentUrl()) {}

  private get tokenKey() { return `ukey.agentToken:${this.base}`; }
  get token(): string | null {
    try { return localStorage.getItem(this.tokenKey); } catch { return null; }
  }
  set token(v: string | null) {
    try { if (v) localStorage.setItem(this.tokenKey, v); else localStorage.removeItem(this.tokenKey); } catch { /* kept for this page only */ }
  }

  private call<T>(method: string, path: string, json?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return fetchJson<T>(`${this.base}${path}`, { method, headers, ...(json !== undefined ? { json } : {}) }, "AGENT_NOT_RUNNING");
  }

  /**
   * Who is there. An agent that runs but does not know this site answers
   * without CORS headers, which the page sees as a network error like no
   * agent at all; a no-cors probe tells the two apart (ORIGIN_NOT_PAIRED).
   */
  async hello(): Promise<HelloResponse> {
    try {
      return await this.call<HelloResponse>("GET", "/v1/hello");
    } catch (e) {
      if (e instanceof ProblemError && e.problem.code === "AGENT_NOT_RUNNING") {
        const answered = await fetch(`${this.base}/v1/hello`, { mode: "no-cors" }).then(() => true, () => false);
        if (answered) throw new ProblemError(problemOf("ORIGIN_NOT_PAIRED", { origin: location.origin }));
      }
      throw e;
    }
  }
  startPairing(): Promise<PairingStarted> { return this.call("POST", "/v1/pairings", {}); }
  async confirmPairing(id: string, code: string): Promise<PairingConfirmed> {
    const r = await this.call<PairingConfirmed>("POST", `/v1/pairings/${encodeURIComponent(id)}/confirm`, { code });
    this.token = r.token;
    return r;
  }
  tokens(): Promise<TokenStatus[]> { return this.call("GET", "/v1/tokens"); }
  start(req: OperationRequest): Promise<OperationView> { return this.call("POST", "/v1/operations", req); }
  /** The operation now, or (wait > 0) when it has changed since `after` progress events and `revision`. */
  operation(id: string, after = 0, wait = 0, revision?: number): Promise<OperationView> {
    return this.call("GET", `/v1/operations/${encodeURIComponent(id)}?after=${after}&wait=${wait}${revision !== undefined ? `&revision=${revision}` : ""}`);
  }
  answer(id: string, a: OperationAnswer): Promise<OperationView> { return this.call("POST", `/v1/operations/${encodeURIComponent(id)}/input`, a); }
}
