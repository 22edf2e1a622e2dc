/**
 * The agent's local API, as the portal sees it. HTTP on 127.0.0.1 only
 * (default port 24817, `ukey agent --port`), JSON bodies, errors as the
 * server's problem documents ({type, title, status, code, message: {zh, en},
 * remedy: {zh, en}, params}; message and remedy also carry "zh-CN", the key
 * the server's own problem documents use, so one reader serves both).
 *
 * Who may call:
 * - An origin not in the agent's configured list gets 403 ORIGIN_NOT_PAIRED
 *   with no CORS headers (the page cannot even read the answer).
 * - A configured origin may call GET /v1/hello and the pairing routes.
 *   Pairing: POST /v1/pairings → the agent shows a 6-digit code in its own
 *   window/terminal (never in the answer); the portal asks the holder to
 *   type it and POSTs it to /v1/pairings/{id}/confirm → a bearer token for
 *   that origin (5 wrong codes end the pairing; a pairing lasts 2 minutes).
 * - Everything else needs `Authorization: Bearer <token>` issued to the
 *   request's Origin.
 * - Preflights (OPTIONS) of configured origins are answered with CORS and
 *   Private/Local Network Access headers
 *   (Access-Control-Allow-Private-Network: true,
 *   Access-Control-Allow-Local-Network: true).
 *
 * The PIN never passes through the portal: an operation that needs it
 * reports `input: {kind: "pin", promptUrl}`; the portal opens promptUrl in
 * a pop-up, a page served by the agent from its own origin
 * (http://127.0.0.1:PORT), which cannot be framed (CSP frame-ancestors
 * 'none') and posts the PIN only to the agent.
 */

import type { CertificatePreview } from "../prompter.js";

export const localApiProtocolVersion = 1;
export const defaultAgentPort = 24817;

/** GET /v1/hello (configured origins, paired or not). */
export interface HelloResponse {
  agent: "ukey-agent";
  /** semver of the agent, e.g. "0.1.0"; the portal shows AGENT_OUTDATED below its minimum. */
  version: string;
  protocol: number;
  /** This origin holds a valid bearer token (the portal sends it if it has one). */
  paired: boolean;
}

/** POST /v1/pairings → 201. */
export interface PairingStarted { id: string; expiresAt: string }
/** POST /v1/pairings/{id}/confirm {code} → 200. Wrong code: 400 PAIRING_CODE_INVALID with params.triesLeft; 5th: 409 PAIRING_ENDED. */
export interface PairingConfirmed { token: string; origin: string }

/**
 * GET /v1/tokens → the TokenStatus[] of flows/flow-types.ts (no PIN: public
 * objects), with the server's advice for the web channel. A PKCS#12 file
 * the agent has not opened yet comes with `certificatesHidden: true` and no
 * certificates; after a "read-certificates" operation its certificates are
 * listed for as long as the agent runs.
 */

/** POST /v1/operations → 202 OperationView. */
export type OperationRequest =
  | { kind: "renew"; tokenSerial: string; certSerialHex?: string }
  | { kind: "download"; tokenSerial: string; referenceNumber: string; authorizationCode: string }
  | { kind: "initialise"; tokenSerial: string; label?: string }
  | { kind: "change-pin"; tokenSerial: string }
  | { kind: "clean-up"; tokenSerial: string }
  /** knownSerial: the holder's key as the server recorded it at the last issuance, for the advice when no key is seen. */
  | { kind: "doctor"; knownSerial?: string }
  /** Asks the PIN in the agent's window and opens the token once: a PKCS#12 file's certificates are listed (GET /v1/tokens) only after that. */
  | { kind: "read-certificates"; tokenSerial: string };

/** What the operation waits for. */
export type OperationInput =
  /** keyPad: the key has its own PIN pad; the agent's page asks for no PIN, only that the holder is ready to type it on the key. */
  | { kind: "pin"; promptUrl: string; so?: boolean; newPin?: boolean; keyPad?: boolean; retry?: { code: string; triesLeft?: number } }
  | { kind: "id-number"; idType: string; retry?: { code: string; triesLeft?: number } }
  | { kind: "one-time-code"; channel: "sms" | "email"; maskedTo: string; expiresAt: string; resendAfter: string; retry?: { code: string } }
  | { kind: "step-up"; approvalUrl: string; expiresAt?: string }
  /** With `preview`: the certificate a renewal or download will write, to be checked before the PIN (the portal's "确认更新"). */
  | { kind: "confirm"; question: string; consequences: string[]; preview?: CertificatePreview };

/**
 * GET /v1/operations/{id}; long-poll with ?after=<progress length>&wait=25 (seconds).
 * The answer comes at once when the operation has more progress than
 * `after` or has ended; add &revision=<the last view's revision> to wait
 * also through a pending input (the answer comes when anything changes).
 * Without `revision`, an operation waiting for input answers at once.
 */
export interface OperationView {
  id: string;
  kind: OperationRequest["kind"];
  state: "running" | "needs-input" | "done" | "failed";
  /** Grows by one at every change (progress, input asked or answered, end); for ?revision=. The agent always sends it (optional only so that views written before it still type-check). */
  revision?: number;
  /** ProgressEvents so far (see prompter.ts), oldest first. */
  /** timeoutSeconds: on "press-button", how long the key waits for its OK button before it cancels, when known. */
  progress: { step: string; zh: string; en: string; at: string; timeoutSeconds?: number }[];
  input?: OperationInput;
  /** On done: RenewResult, {certificate}, {token}, {removed}, DoctorCheck[] ... per kind. */
  result?: unknown;
  /** On failed: the problem document. */
  error?: { code: string; message: { zh: string; en: string }; remedy: { zh: string; en: string }; params?: Record<string, string | number> };
}

/**
 * POST /v1/operations/{id}/input, answering the current `input`:
 * {idNumber} | {code} | {resend: true} | {stepUpDone: true} | {confirm: boolean}.
 * Never {pin}: a PIN sent here is refused (REQUEST_INVALID) and never logged.
 */
export type OperationAnswer =
  | { idNumber: string }
  | { code: string }
  | { resend: true }
  | { stepUpDone: true }
  | { confirm: boolean };
