import type { KeyVendorTable } from "@ukey/policy";
import type { KeyStoreBackend, TokenCertificate, TokenInfo } from "../keys/key-store.js";
import type { Prompter } from "../prompter.js";

/**
 * The holder's operations, shared by the `ukey` CLI and the local API the
 * portal talks to. Each takes what it needs and a Prompter for what only
 * the holder can give; each throws UkeyError with a catalogue code and
 * leaves the token and the server's order consistent (the next run
 * finishes or rolls back what an interrupted one left).
 */
export interface FlowContext {
  backend: KeyStoreBackend;
  /** The renewal server, e.g. https://ra.example.com (its API under /api/v1). */
  server: ServerConnection;
  prompter: Prompter;
  /** "cli" for the terminal, "web" for the portal's local API. */
  channel: "web" | "cli";
  /** For tests: where to simulate a crash (the process kills itself with SIGKILL there). Read from UKEY_AGENT_FAULT. */
  fault?: FaultPoint;
}

export interface ServerConnection {
  url: string;
  /** Extra CA certificates (PEM) to trust for HTTPS, e.g. the institution's root. */
  caPem?: string;
}

export type FaultPoint =
  | "after-keygen"          // key pair generated on the token, CSR not sent
  | "after-csr"             // CSR sent, answer not read
  | "after-issue"           // certificate received, not installed
  | "after-install"         // installed and read back, order not confirmed
  | "after-enc-key"         // a pair's encryption key imported from its envelope, its certificate not installed
  | "after-enc-cert"        // a pair's encryption certificate installed, order not confirmed
  | "after-recovered-key"   // one recovered encryption key and its certificate installed, the others not yet
  | "during-cleanup";       // order completed, old objects half removed

export interface CertificateStatus {
  certificate: Omit<TokenCertificate, "der">;
  /**
   * In words: "valid", "expiring" (inside the notice period), "expired", "not-yet-valid", "revoked",
   * "on-hold" (冻结: suspended by the institution, usable again once it lifts the hold), "superseded", "unknown" (server does not know it).
   */
  state: "valid" | "expiring" | "expired" | "not-yet-valid" | "revoked" | "on-hold" | "superseded" | "unknown";
  /** Whole CST days to notAfter (negative after expiry). */
  daysLeft: number;
  /** "encryption": a pair's encryption certificate (a signing certificate shares its key's id); it is renewed with its signing one. */
  pairHalf?: "encryption";
  /** The server's renewal advice (GET /api/v1/renewal-info/{certId}), when reachable. */
  advice?: {
    window: "not-yet-open" | "open" | "open-step-up" | "closed"; opensAt?: string; closesAt?: string; explanation?: { zh: string; en: string };
    /** Online renewal is paused until then after an order failed on wrong answers (RENEWAL_LOCKED). */
    lockedUntil?: string;
    /** Logins with this certificate are refused from then (seed 004's login rule), when the server says so. */
    loginRefusedFrom?: string;
  };
}

export interface TokenStatus {
  token: TokenInfo;
  vendor?: { name: { zh: string; en: string }; generation?: string };
  certificates: CertificateStatus[];
  /** Objects the clean-up would remove: expired or superseded certificates and orphan keys. */
  invalidObjects: number;
  /**
   * The certificates cannot be read without the PIN (a PKCS#12 file the
   * agent has not opened yet): `certificates` is empty for that reason, not
   * because the token holds none. The portal then offers the
   * "read-certificates" operation, which asks the PIN in the agent's window.
   */
  certificatesHidden?: true;
}

export interface RenewRequest {
  tokenSerial: string;
  /** Which certificate; default: the only renewable one on the token. */
  certSerialHex?: string;
}

export interface IssuedCertificate {
  serialHex: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  /** The certificate and its chain, PEM. */
  pem: string;
}

export interface RenewResult {
  orderId: string;
  /** True when this run finished an order an earlier run had left open. */
  resumed: boolean;
  certificate: IssuedCertificate;
  /** A pair profile's encryption certificate, installed beside its key in the signing key's container. */
  encryptionCertificate?: IssuedCertificate;
  /** How many invalid objects were removed afterwards. */
  removed: number;
}

export interface DownloadRequest {
  tokenSerial: string;
  referenceNumber: string;
  authorizationCode: string;
}

export interface DoctorCheck {
  /** "advice": no finding, what the vendor table advises for the holder's key when none is seen (always ok). */
  id: "module" | "token" | "advice" | "pin" | "storage" | "mechanisms" | "certificate" | "server" | "trust" | "clock" | "pairings";
  ok: boolean;
  /** What was found, zh-CN and en. */
  zh: string;
  en: string;
  /** On failure: the catalogue code whose remedy applies. */
  code?: string;
  /** The code's params (a module path ...), so that its message reads whole. */
  params?: Record<string, string | number>;
}

/** The operations, as implemented in renew-flow.ts, download-flow.ts, init-flow.ts, status.ts, doctor.ts. */
export interface Flows {
  /** `channel` (default "cli"): whose renewal window the server's advice gives; `vendors` (default the backend's keyVendors): the table keys are named by. */
  status(ctx: Omit<FlowContext, "prompter" | "channel"> & { pin?: string; channel?: FlowContext["channel"]; vendors?: KeyVendorTable }): Promise<TokenStatus[]>;
  renew(ctx: FlowContext, request: RenewRequest): Promise<RenewResult>;
  download(ctx: FlowContext, request: DownloadRequest): Promise<{ certificate: IssuedCertificate }>;
  /** Asks to confirm (what will be lost), then the SO PIN and the new PIN; wipes and re-initialises. */
  initialise(ctx: FlowContext, request: { tokenSerial: string; label?: string }): Promise<{ token: TokenInfo }>;
  changePin(ctx: FlowContext, request: { tokenSerial: string }): Promise<void>;
  /** Removes expired and superseded certificates and orphan keys; never the current ones. */
  cleanUp(ctx: FlowContext, request: { tokenSerial: string }): Promise<{ removed: number }>;
  doctor(ctx: Omit<FlowContext, "prompter" | "channel"> & { pairingsFile?: string; vendors?: KeyVendorTable; knownSerial?: string }): Promise<DoctorCheck[]>;
  /** Asks the PIN and opens the token once, so that a file token's certificates are listed afterwards without it; then its status. */
  readCertificates(ctx: FlowContext, request: { tokenSerial: string }): Promise<{ tokens: TokenStatus[] }>;
}
