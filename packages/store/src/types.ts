import type { CertificateProfile } from "@ukey/policy";
import type { KmcEscrowRepository } from "./kmc-escrow-repository.js";
import type { CertificatePairRepository } from "./certificate-pair-repository.js";
import type { KmcRecoveryRepository } from "./kmc-recovery-repository.js";
import type { ReminderRepository } from "./reminder-repository.js";
import type { HolderPreferenceRepository } from "./holder-preference-repository.js";
import type { HolderSignInRepository } from "./holder-sign-in-repository.js";
import type { SignInBackoffRepository } from "./sign-in-backoff-repository.js";
import type { WriteHealth } from "./write-health.js";

/** Times are stored as epoch milliseconds (BIGINT) on both engines. */
export type Millis = number;

/** One SQL executor: the database itself or an open transaction. `?` placeholders on both engines. */
export interface Sql {
  /** Rows of a SELECT (or of a statement with RETURNING). */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a statement; returns the number of rows changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
  /** Present on a transaction that shares its commit with others (SQLite's group commit); see CommitState. */
  readonly commitState?: CommitState;
}

/**
 * Values the transactions of one commit hand on to each other, so that a
 * hot row (the audit head) is read once and written once per commit instead
 * of once per transaction. A value set by a transaction that rolls back is
 * undone with it. Before the commit, `flush` writes the last value of each
 * key that was set; a transaction that runs later in the same commit sees
 * the value, never the row. Read the row through `get` first.
 */
export interface CommitState {
  get<T>(key: string): T | undefined;
  set<T>(key: string, value: T, flush: (sql: Sql, value: T) => Promise<unknown>): void;
}

export interface Database extends Sql {
  readonly engine: "sqlite" | "postgres";
  /**
   * Runs `fn` in one transaction, committed durably (fsync) before the
   * promise resolves; rolled back if `fn` throws. Transactions are
   * serialisable on SQLite (one writer) and READ COMMITTED with row locks on
   * PostgreSQL; write SQL accordingly (`FOR UPDATE` is stripped on SQLite).
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /** Whether writes fail for lack of space (see WriteHealth); kept by the engine. */
  readonly health: WriteHealth;
  /**
   * Tries one small durable write (the storage_probe row of migration 8),
   * after giving the embedded engine's WAL back to its database file when
   * the volume lets it: how readiness tells that storage works again.
   * Throws UkeyError STORAGE_FULL, DATABASE_UNAVAILABLE or DATA_DIR_CORRUPT.
   */
  probeWrite(): Promise<void>;
  close(): Promise<void>;
}

export type HolderKind = "person" | "organisation";

export interface HolderRecord {
  /** Operator-visible ID, e.g. the customer number. */
  id: string;
  kind: HolderKind;
  name: string;
  /** e.g. "resident-id", "passport", "uscc" (unified social credit code). */
  idType: string;
  /** HMAC-SHA256 of the normalised ID number under the server's ID key (hex). */
  idHash: string;
  /** e.g. "1101**********1234". */
  idMasked: string;
  phone: string | null;
  email: string | null;
  /** The organisation a person certificate holder belongs to, if any. */
  organisationId: string | null;
  createdAt: Millis;
}

export interface ProfileRecord {
  id: string;
  profile: CertificateProfile;
  updatedAt: Millis;
}

/** `pending` is an issuance intent recorded before signing; `abandoned` an intent never completed. */
export type CertificateStatus = "pending" | "active" | "revoked" | "superseded" | "expired" | "abandoned";

export interface CertificateRecord {
  /** Minimal even-length lower-case hex of the positive serial number, no separators (e.g. "3af2..."). */
  serial: string;
  /** Hex key identifier of the issuing CA (the AKI of this certificate). */
  issuerKeyId: string;
  issuerDn: string;
  subjectDn: string;
  /** SANs as "email:a@b", "dns:x", "uri:...", "ip:...". */
  sans: string[];
  notBefore: Millis;
  notAfter: Millis;
  status: CertificateStatus;
  /** RFC 5280 reason name when revoked (or superseded with revocation). */
  revocationReason: string | null;
  revokedAt: Millis | null;
  /** SHA-256 of the DER SubjectPublicKeyInfo (hex). */
  spkiSha256: string;
  kind: "hardware" | "file";
  tokenSerial: string | null;
  holderId: string;
  profileId: string;
  /** The certificate; null only while pending/abandoned. */
  der: Buffer | null;
  /** True when imported from an institution's earlier CA. */
  imported: boolean;
  createdAt: Millis;
  updatedAt: Millis;
}

/** A CA certificate known to the system: our own, or a foreign issuer of imported certificates. */
export interface IssuerRecord {
  /** Hex subject key identifier. */
  keyId: string;
  subjectDn: string;
  der: Buffer;
  role: "root" | "issuing" | "foreign";
  createdAt: Millis;
}

export type OrderState =
  | "created" | "verified" | "key-submitted" | "issued" | "installed" | "completed"
  | "failed" | "cancelled" | "expired";

export interface RenewalOrderRecord {
  id: string;
  /** The certificate being renewed (null for an enrolment-driven download). */
  certificateSerial: string | null;
  holderId: string;
  profileId: string;
  state: OrderState;
  channel: string;
  /** The issued certificate's serial once issued. */
  newSerial: string | null;
  /** Free-form JSON for verification progress; schema owned by the RA. */
  data: Record<string, unknown>;
  createdAt: Millis;
  updatedAt: Millis;
}

export interface EnrolmentRecord {
  id: string;
  holderId: string;
  profileId: string;
  referenceNumber: string;
  /** scrypt/HMAC hash of the authorization code; never the code. */
  codeHash: string;
  expiresAt: Millis;
  attempts: number;
  maxAttempts: number;
  status: "open" | "used" | "revoked" | "expired" | "locked";
  createdAt: Millis;
  updatedAt: Millis;
  /**
   * A self-service re-download's: the certificate this enrolment replaces, superseded (revoked, reason
   * superseded) in the transaction that issues the new one. Absent or null: an operator's enrolment, which replaces nothing.
   */
  replacesSerial?: string | null;
}

export type { ReminderRecord, ReminderRepository, ReminderStatus, ReminderCandidate, ReminderOutcome, HolderCertificateRow } from "./reminder-repository.js";
export type { HolderPreferences, HolderPreferenceRepository } from "./holder-preference-repository.js";
export type { HolderSignInRecord, HolderSignInRepository, HolderSignInQuota } from "./holder-sign-in-repository.js";
export type { SignInBackoffRecord, SignInBackoffRepository } from "./sign-in-backoff-repository.js";

export interface AuditEntryInput {
  at: Millis;
  /** "operator:alice", "holder:H001", "system", "cli". */
  actor: string;
  /** e.g. "certificate.issued", "certificate.revoked", "ca.initialised". */
  action: string;
  subjectType: string;
  subjectId: string;
  data?: Record<string, unknown>;
}

export interface AuditEntry extends Required<AuditEntryInput> {
  seq: number;
  /** Hex SHA-256 of the previous entry (64 zeros for the first). */
  prevHash: string;
  /** Hex SHA-256 over seq, prevHash and the canonical JSON of the entry. */
  hash: string;
}

export type AuditVerification =
  | { ok: true; entries: number; head: string }
  | { ok: false; entries: number; firstBadSeq: number; reason: "changed" | "removed" | "reordered" | "inserted" };

export interface CertificateSearch {
  holderId?: string;
  status?: CertificateStatus;
  subjectContains?: string;
  notAfterBefore?: Millis;
  limit?: number;
  offset?: number;
}

export interface HolderRepository {
  insert(h: HolderRecord): Promise<void>;
  get(id: string): Promise<HolderRecord | undefined>;
  findByIdHash(idHash: string): Promise<HolderRecord | undefined>;
  list(opts?: { limit?: number; offset?: number }): Promise<HolderRecord[]>;
}

export interface ProfileRepository {
  /** Inserts or replaces. */
  put(p: CertificateProfile, at: Millis): Promise<void>;
  get(id: string): Promise<ProfileRecord | undefined>;
  list(): Promise<ProfileRecord[]>;
}

/** An issuance intent marked abandoned: what its audit entry names. */
/** Serials from `from` (inclusive) up to `to` (exclusive; no end when absent), compared as the hex text they are stored as. */
export interface SerialRange {
  from: string;
  to?: string;
}

/** A signed OCSP response kept beside its certificate. */
export interface StoredOcspResponse {
  der: Buffer;
  thisUpdate: Millis;
  nextUpdate: Millis;
  /** When the refresher should sign it again. */
  refreshAt: Millis;
}

/** The state of one certificate as OCSP answers it, and its stored response. */
export interface OcspState {
  serial: string;
  status: CertificateStatus;
  /** False for an intent never signed. */
  issued: boolean;
  revokedAt: Millis | null;
  revocationReason: string | null;
  notAfter: Millis;
  /** The stored response, if any (absent after a revocation until it is signed again). */
  response?: { der: Buffer; thisUpdate: Millis; nextUpdate: Millis };
}

export type AbandonedIntent = Pick<CertificateRecord, "serial" | "holderId" | "profileId" | "subjectDn" | "createdAt">;

export interface CertificateRepository {
  /** Records an issuance intent (status pending, der null) before signing. Throws on duplicate serial. */
  insertIntent(c: Omit<CertificateRecord, "status" | "der" | "revocationReason" | "revokedAt" | "imported">): Promise<void>;
  /**
   * Turns a pending intent into an active certificate with its DER, and stores its pre-signed `good`
   * OCSP response when one is given (else the refresher signs one). Throws if the row is not pending.
   */
  completeIntent(serial: string, der: Buffer, at: Millis, ocsp?: StoredOcspResponse): Promise<void>;
  /**
   * Marks up to `limit` (default 500) pending intents created before
   * `olderThan` as abandoned, oldest first, and returns those this call
   * changed, in serial order. Compare-and-set: an intent completed or
   * abandoned meanwhile (by another instance) is not returned, so its
   * caller alone records it. Call it inside the transaction that audits them.
   */
  abandonStaleIntents(olderThan: Millis, at: Millis, limit?: number): Promise<AbandonedIntent[]>;
  /** Inserts a complete certificate (import). */
  insertImported(c: Omit<CertificateRecord, "imported">): Promise<void>;
  get(serial: string, issuerKeyId?: string): Promise<CertificateRecord | undefined>;
  /**
   * Sets status revoked (or superseded with reason "superseded"), reason and time, and drops the stored
   * OCSP response in the same statement. Returns false if already revoked.
   */
  revoke(serial: string, reason: string, at: Millis, status?: "revoked" | "superseded"): Promise<boolean>;
  setStatus(serial: string, status: CertificateStatus, at: Millis): Promise<void>;
  /**
   * Lifts a hold: a certificate revoked with reason certificateHold becomes active again (no revocation
   * time or reason) and its stored OCSP response is dropped in the same statement, so a `revoked` answer
   * is never served after the commit. Returns false (nothing changed) when it is not on hold.
   */
  releaseHold(serial: string, at: Millis): Promise<boolean>;
  /** Every revoked or superseded-with-revocation certificate of one issuer, for the CRL. Streams in serial order. */
  /**
   * How many certificates of one issuer are revoked, and the latest revocation time: a cheap way to
   * tell whether a cached CRL is still complete (a revocation raises the count or the time, a hold lifted lowers the count).
   */
  revocationStamp(issuerKeyId: string, range?: SerialRange): Promise<{ count: number; latestAt: Millis | null }>;
  /**
   * How many certificates of one issuer changed revocation state (revoked, held, hold lifted) at or after
   * `since`, and the latest such change: whether a cached delta CRL is still complete.
   */
  revocationChangeStamp(issuerKeyId: string, since: Millis, range?: SerialRange): Promise<{ count: number; latestAt: Millis | null }>;
  /**
   * The certificates of one issuer whose revocation state changed at or after `since`, for a delta CRL,
   * streamed in keyset pages: revoked ones with their time and reason, and those whose hold was lifted
   * (revokedAt null: removeFromCRL). Rows changed before the column existed (schema 17) are not listed.
   */
  listRevocationChanges(issuerKeyId: string, since: Millis, range?: SerialRange): AsyncIterable<Pick<CertificateRecord, "serial" | "revokedAt" | "revocationReason"> & { changedAt: Millis }>;
  /** `range` limits both to the serials of one CRL shard. */
  listRevoked(issuerKeyId: string, range?: SerialRange): AsyncIterable<Pick<CertificateRecord, "serial" | "revokedAt" | "revocationReason">>;
  search(q: CertificateSearch): Promise<CertificateRecord[]>;
  /** What OCSP needs of one certificate of `issuerKeyId` (no certificate DER is read). */
  ocspState(serial: string, issuerKeyId: string): Promise<OcspState | undefined>;
  /**
   * Stores a response signed from `basis` (the revocation time it was signed from, null for not
   * revoked). Compare-and-set: returns false and stores nothing when the certificate's revocation
   * time is no longer `basis`, so a response signed before a revocation never lands after it.
   */
  storeOcsp(serial: string, response: StoredOcspResponse, basis: Millis | null): Promise<boolean>;
  /**
   * Claims up to `limit` certificates of `issuerKeyId` whose response is due (refresh time before
   * `now`), soonest first, by moving their refresh time to `leaseUntil`; on PostgreSQL rows another
   * instance is claiming are skipped. Returns what is needed to sign each.
   */
  claimOcspDue(issuerKeyId: string, now: Millis, leaseUntil: Millis, limit: number): Promise<OcspState[]>;
  /** Sets the refresh time of a claimed row, if it still holds `lease` (a concurrent store or revocation wins). */
  rescheduleOcsp(serial: string, lease: Millis, refreshAt: Millis): Promise<void>;
  countByStatus(): Promise<Record<string, number>>;
  /**
   * Live certificates (active, or expired and never renewed) by when they
   * expire: `counts[i]` expire in [from + i*bucketMs, from + (i+1)*bucketMs)
   * for i < buckets; `overdue` expired in [from - overdueSinceMs, from).
   * One aggregate query, for the operators' expiry chart.
   */
  expiryHistogram(q: { from: Millis; bucketMs: number; buckets: number; overdueSinceMs: number }): Promise<{ overdue: number; counts: number[] }>;
}

export interface IssuerRepository {
  put(i: IssuerRecord): Promise<void>;
  get(keyId: string): Promise<IssuerRecord | undefined>;
  findBySubject(subjectDn: string): Promise<IssuerRecord[]>;
  list(): Promise<IssuerRecord[]>;
}

export interface CrlRepository {
  /** Atomically takes the next CRL number (1, 2, ...) for an issuer. */
  nextNumber(issuerKeyId: string, at: Millis): Promise<number>;
}

export interface OrderRepository {
  insert(o: RenewalOrderRecord): Promise<void>;
  get(id: string): Promise<RenewalOrderRecord | undefined>;
  findOpenForCertificate(serial: string): Promise<RenewalOrderRecord | undefined>;
  /**
   * When the newest failed order of this certificate failed (its updatedAt), if one ever did after
   * the certificate's last renewal unlock.
   */
  lastFailedAt(serial: string): Promise<Millis | undefined>;
  /** Lifts the pause that failed orders put on the certificate's renewal: failures up to `at` stop counting. */
  unlockRenewal(serial: string, at: Millis): Promise<void>;
  /** Reads an order and locks its row until the transaction ends (use inside store.transaction). */
  getForUpdate(id: string): Promise<RenewalOrderRecord | undefined>;
  /** Compare-and-set on state; returns false when the order was not in `from`. */
  transition(id: string, from: OrderState, to: OrderState, at: Millis, patch?: { newSerial?: string; data?: Record<string, unknown> }): Promise<boolean>;
  countByState(): Promise<Record<string, number>>;
  /** Newest first (limit default 100, at most 1000), optionally in one state and of one holder. */
  list(q?: { state?: OrderState; holderId?: string; limit?: number; offset?: number }): Promise<RenewalOrderRecord[]>;
}

export interface EnrolmentRepository {
  insert(e: EnrolmentRecord): Promise<void>;
  getByReference(ref: string): Promise<EnrolmentRecord | undefined>;
  update(id: string, patch: Partial<Pick<EnrolmentRecord, "attempts" | "status">>, at: Millis): Promise<void>;
  get(id: string): Promise<EnrolmentRecord | undefined>;
  /**
   * The enrolment with this reference number, its row locked until the
   * transaction ends (PostgreSQL), so that two redemptions queue.
   */
  lockByReference(ref: string): Promise<EnrolmentRecord | undefined>;
  /**
   * Compare-and-set on status: moves the enrolment from `from` to `to` and
   * returns false when it was not in `from` (someone else got there first).
   */
  transition(id: string, from: EnrolmentRecord["status"], to: EnrolmentRecord["status"], at: Millis): Promise<boolean>;
  /** Newest first (limit default 100, at most 1000), optionally of one holder and one status. */
  list(q?: { holderId?: string; status?: EnrolmentRecord["status"]; limit?: number; offset?: number }): Promise<EnrolmentRecord[]>;
}

/** What an operator may do: auditors read, operators also act on holders, enrolments and certificates, admins also manage operators. */
export type OperatorRole = "admin" | "operator" | "auditor";

/** An operator account of the admin API. Holds no secret in a readable form. */
export interface OperatorRecord {
  id: string;
  role: OperatorRole;
  /** "scrypt$N$r$p$salt$hash" (base64url salt and hash). */
  passwordHash: string;
  /** The TOTP secret sealed with AES-256-GCM under the data directory's operator key ("v1$iv$tag$ciphertext"). */
  totpSealed: string;
  /** The last TOTP time step accepted (a step is never accepted twice). */
  totpLastStep: number | null;
  /** Failed sign-ins since the last good one. */
  failedAttempts: number;
  lockedUntil: Millis | null;
  /** SHA-256 (hex) of the SubjectPublicKeyInfo of the operator's client certificate, when one is pinned. */
  certSpkiSha256: string | null;
  disabled: boolean;
  createdAt: Millis;
  updatedAt: Millis;
}

export interface OperatorRepository {
  /** Throws RECORD_DUPLICATE for an existing id or pinned key. */
  insert(o: OperatorRecord): Promise<void>;
  get(id: string): Promise<OperatorRecord | undefined>;
  findByCertSpki(spkiSha256: string): Promise<OperatorRecord | undefined>;
  /** In id order. */
  list(): Promise<OperatorRecord[]>;
  /**
   * Counts one failed sign-in, atomically: the count restarts at 1 when an
   * earlier lock has run out, and reaching `lockAfter` locks until `lockUntil`.
   * Returns the record after the change (undefined for an unknown id).
   */
  recordFailure(id: string, at: Millis, lockAfter: number, lockUntil: Millis): Promise<OperatorRecord | undefined>;
  /**
   * Accepts TOTP step `step` and clears the failure count, only when the step
   * is later than the last accepted one (compare-and-set, so two instances
   * cannot both accept one code). Returns false when the step was used.
   */
  acceptSignIn(id: string, step: number, at: Millis): Promise<boolean>;
  /** Changes role, pin, disabled flag, or secrets. Throws RECORD_NOT_FOUND, RECORD_DUPLICATE (pinned key). */
  update(id: string, patch: Partial<Pick<OperatorRecord, "role" | "certSpkiSha256" | "disabled" | "passwordHash" | "totpSealed" | "totpLastStep">>, at: Millis): Promise<void>;
}

/**
 * Where an outgoing message stands: `pending` before its first attempt and
 * between retries, `queued` when a gateway accepted it for later delivery,
 * `sent` when delivered (or written to the demo outbox file), `failed` once
 * every attempt failed.
 */
export type OutboxStatus = "pending" | "queued" | "sent" | "failed";

/** One message sent to a holder (a one-time code, a reminder), as operators see it: never the secret it carried. */
export interface OutboxRecord {
  id: string;
  channel: "sms" | "email";
  /** How it went out: "outbox" (the demo file), "webhook" (the SMS gateway), "smtp". */
  transport: string;
  /** Masked recipient: "15*****5" for a phone, "z***@example.com" for an address; never the full one. */
  recipient: string;
  /** "otp", "enrolment", "reminder", "notice". */
  purpose: string;
  holderId: string | null;
  /** The text with every secret replaced by "******": the only form ever stored. */
  redactedText: string;
  status: OutboxStatus;
  attempts: number;
  /** What went wrong on the last failed attempt, in the sender's own words (never a gateway's reply body). */
  lastError: string | null;
  /** When the next attempt is due while pending after a failure. */
  nextAttemptAt: Millis | null;
  createdAt: Millis;
  sentAt: Millis | null;
}

export interface OutboxRepository {
  /** Records a message before its first delivery attempt. Throws RECORD_DUPLICATE for an existing id. */
  insert(r: OutboxRecord): Promise<void>;
  get(id: string): Promise<OutboxRecord | undefined>;
  /** Newest first (limit default 50, at most 1000; offset default 0), optionally only one status. */
  list(opts?: { status?: OutboxStatus; limit?: number; offset?: number }): Promise<OutboxRecord[]>;
  /** Counts one more attempt and marks the message sent (or queued by a gateway) at `at`. Throws RECORD_NOT_FOUND. */
  markSent(id: string, at: Millis, status?: "sent" | "queued"): Promise<void>;
  /**
   * Counts one more failed attempt with its error: pending again until
   * `nextAttemptAt`, or failed for good when that is null. Throws RECORD_NOT_FOUND.
   */
  markFailed(id: string, error: string, nextAttemptAt: Millis | null): Promise<void>;
}

export interface AuditLog {
  /** Appends one entry chained to the head. Call inside the transaction of the change it records. */
  append(e: AuditEntryInput): Promise<AuditEntry>;
  /** Appends several entries in order under one lock of the head (one head update). Same chain as appending them one by one. */
  appendMany(e: readonly AuditEntryInput[]): Promise<AuditEntry[]>;
  /** Streams entries in order from `fromSeq`. */
  list(fromSeq?: number, limit?: number): Promise<AuditEntry[]>;
  /** Walks the whole chain; reports the first entry changed, removed, inserted or reordered. */
  verify(): Promise<AuditVerification>;
}

/** All repositories over one executor. */
export interface Repositories {
  holders: HolderRepository;
  profiles: ProfileRepository;
  certificates: CertificateRepository;
  issuers: IssuerRepository;
  crls: CrlRepository;
  orders: OrderRepository;
  enrolments: EnrolmentRepository;
  operators: OperatorRepository;
  reminders: ReminderRepository;
  holderPreferences: HolderPreferenceRepository;
  holderSignIns: HolderSignInRepository;
  /** Operator sign-in back-off per account and client address. */
  signInBackoffs: SignInBackoffRepository;
  outbox: OutboxRepository;
  /** The key management centre's escrowed encryption keys (wrapped). */
  kmcEscrows: KmcEscrowRepository;
  /** Signing + encryption certificate pairs. */
  certificatePairs: CertificatePairRepository;
  /** Key recovery requests under dual control. */
  kmcRecoveries: KmcRecoveryRepository;
  audit: AuditLog;
}

/** The store: repositories on the database, and transactions that give repositories on the transaction. */
export interface Store extends Repositories {
  readonly db: Database;
  transaction<T>(fn: (repos: Repositories) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** PostgreSQL URL; when absent the embedded engine is used in `dataDir`. */
  databaseUrl?: string;
  /** Data directory for the embedded engine (file `db/ukey.sqlite`), locked against a second process. */
  dataDir?: string;
}
