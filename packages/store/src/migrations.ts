import { UkeyError } from "@ukey/policy";
import type { Database, Millis } from "./types.js";

/** Column types that differ between the engines; everything else is written once. */
interface TypeNames {
  blob: string;
  engine: Database["engine"];
}

const typeNames: Record<Database["engine"], TypeNames> = {
  sqlite: { blob: "BLOB", engine: "sqlite" },
  postgres: { blob: "BYTEA", engine: "postgres" },
};

/** One schema step. Never edit a published migration: add the next one. */
export interface Migration {
  version: number;
  name: string;
  statements: (t: TypeNames) => string[];
}

/** States in which a renewal order is still open; at most one per certificate. */
export const OPEN_ORDER_STATES = ["created", "verified", "key-submitted", "issued", "installed"] as const;

const openStates = OPEN_ORDER_STATES.map((s) => `'${s}'`).join(", ");

/**
 * "The order is open" as comparisons joined by OR. SQLite evaluates a
 * constant IN list of more than two values through a temporary b-tree,
 * built again on every run of a statement: as the predicate of the one-open
 * index that was three of them for every order written.
 */
export const OPEN_ORDER_CONDITION = `(${OPEN_ORDER_STATES.map((s) => `state = '${s}'`).join(" OR ")})`;

/** The schema, in order. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "initial schema",
    statements: (t) => [
      `CREATE TABLE holders (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('person', 'organisation')),
        name TEXT NOT NULL,
        id_type TEXT NOT NULL,
        id_hash TEXT NOT NULL,
        id_masked TEXT NOT NULL,
        phone TEXT,
        email TEXT,
        organisation_id TEXT,
        created_at BIGINT NOT NULL
      )`,
      "CREATE INDEX holders_id_hash ON holders (id_hash)",
      "CREATE INDEX holders_organisation ON holders (organisation_id)",

      `CREATE TABLE certificate_profiles (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,

      `CREATE TABLE issuers (
        key_id TEXT PRIMARY KEY,
        subject_dn TEXT NOT NULL,
        der ${t.blob} NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('root', 'issuing', 'foreign')),
        created_at BIGINT NOT NULL
      )`,
      "CREATE INDEX issuers_subject ON issuers (subject_dn)",

      `CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        issuer_key_id TEXT NOT NULL,
        issuer_dn TEXT NOT NULL,
        subject_dn TEXT NOT NULL,
        sans TEXT NOT NULL,
        not_before BIGINT NOT NULL,
        not_after BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'revoked', 'superseded', 'expired', 'abandoned')),
        revocation_reason TEXT,
        revoked_at BIGINT,
        spki_sha256 TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('hardware', 'file')),
        token_serial TEXT,
        holder_id TEXT NOT NULL REFERENCES holders (id),
        profile_id TEXT NOT NULL,
        der ${t.blob},
        imported INTEGER NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE INDEX certificates_status ON certificates (status)",
      "CREATE INDEX certificates_not_after ON certificates (not_after)",
      "CREATE INDEX certificates_holder ON certificates (holder_id)",
      // Serves lookups by issuer and the CRL's walk in serial order.
      "CREATE INDEX certificates_issuer_serial ON certificates (issuer_key_id, serial)",
      "CREATE INDEX certificates_spki ON certificates (spki_sha256)",
      "CREATE INDEX certificates_pending ON certificates (status, created_at)",

      `CREATE TABLE crl_numbers (
        issuer_key_id TEXT PRIMARY KEY,
        last_number BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,

      `CREATE TABLE renewal_orders (
        id TEXT PRIMARY KEY,
        certificate_serial TEXT,
        holder_id TEXT NOT NULL REFERENCES holders (id),
        profile_id TEXT NOT NULL,
        state TEXT NOT NULL,
        channel TEXT NOT NULL,
        new_serial TEXT,
        data TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      // The database, not the RA, guarantees one open order per certificate,
      // so two servers racing to open an order cannot both win.
      `CREATE UNIQUE INDEX renewal_orders_one_open ON renewal_orders (certificate_serial) WHERE state IN (${openStates})`,
      "CREATE INDEX renewal_orders_holder ON renewal_orders (holder_id)",
      "CREATE INDEX renewal_orders_state ON renewal_orders (state)",

      `CREATE TABLE enrolments (
        id TEXT PRIMARY KEY,
        holder_id TEXT NOT NULL REFERENCES holders (id),
        profile_id TEXT NOT NULL,
        reference_number TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'used', 'revoked', 'expired', 'locked')),
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE UNIQUE INDEX enrolments_reference ON enrolments (reference_number)",

      `CREATE TABLE reminders (
        id TEXT PRIMARY KEY,
        certificate_serial TEXT NOT NULL REFERENCES certificates (serial),
        threshold INTEGER NOT NULL,
        channel TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
        attempts INTEGER NOT NULL,
        next_attempt_at BIGINT,
        sent_at BIGINT,
        created_at BIGINT NOT NULL
      )`,
      "CREATE UNIQUE INDEX reminders_once ON reminders (certificate_serial, threshold, channel)",
      "CREATE INDEX reminders_due ON reminders (status, next_attempt_at)",

      `CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject_type TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      )`,
      // verify() looks an entry up by hash to tell a reordering from an insertion.
      "CREATE INDEX audit_log_hash ON audit_log (hash)",
      "CREATE INDEX audit_log_subject ON audit_log (subject_type, subject_id)",
      `CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
      )`,
      `INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '${"0".repeat(64)}')`,
    ],
  },
  {
    version: 2,
    name: "operators",
    statements: () => [
      // Secrets are stored only in forms that cannot be read back: the
      // password as scrypt output with its parameters, the TOTP secret sealed
      // with AES-256-GCM under a key that lives in the data directory, not here.
      `CREATE TABLE operators (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
        password_hash TEXT NOT NULL,
        totp_sealed TEXT NOT NULL,
        totp_last_step BIGINT,
        failed_attempts INTEGER NOT NULL,
        locked_until BIGINT,
        cert_spki_sha256 TEXT,
        disabled INTEGER NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE UNIQUE INDEX operators_cert_spki ON operators (cert_spki_sha256)",
      "CREATE INDEX enrolments_holder ON enrolments (holder_id, created_at)",
    ],
  },
  {
    version: 3,
    name: "outbox",
    statements: () => [
      // Only the redacted text and the masked recipient are kept: the outbox
      // is what operators browse, and a one-time code must not outlive its
      // delivery anywhere but on the holder's phone or in their mailbox.
      `CREATE TABLE outbox (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
        transport TEXT NOT NULL,
        recipient TEXT NOT NULL,
        purpose TEXT NOT NULL,
        holder_id TEXT,
        redacted_text TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'queued', 'sent', 'failed')),
        attempts INTEGER NOT NULL,
        last_error TEXT,
        next_attempt_at BIGINT,
        created_at BIGINT NOT NULL,
        sent_at BIGINT
      )`,
      // The console lists newest first, all or by status.
      "CREATE INDEX outbox_created ON outbox (created_at, id)",
      "CREATE INDEX outbox_status_created ON outbox (status, created_at, id)",
      "CREATE INDEX outbox_holder ON outbox (holder_id)",
    ],
  },
  {
    version: 4,
    name: "reminders, holder preferences and holder sign-in",
    statements: () => [
      // The reminders table of version 1 was never written by a released
      // program (nothing scheduled reminders before this version): it is
      // replaced by one row per (certificate, threshold), whatever the
      // channels, so that a holder hears once per threshold.
      "DROP TABLE reminders",
      `CREATE TABLE reminders (
        id TEXT PRIMARY KEY,
        certificate_serial TEXT NOT NULL REFERENCES certificates (serial),
        threshold INTEGER NOT NULL,
        holder_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        not_after BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
        delivered TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at BIGINT,
        last_error TEXT,
        read_at BIGINT,
        sent_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE UNIQUE INDEX reminders_once ON reminders (certificate_serial, threshold)",
      "CREATE INDEX reminders_due ON reminders (status, next_attempt_at)",
      "CREATE INDEX reminders_recipient ON reminders (recipient_id, created_at)",
      "CREATE INDEX reminders_holder ON reminders (holder_id, created_at)",
      // The scan reads one profile's certificates by expiry range: O(due), not O(table).
      "CREATE INDEX certificates_profile_not_after ON certificates (profile_id, not_after)",
      // "Already renewed" looks for a completed order of the certificate.
      "CREATE INDEX renewal_orders_certificate ON renewal_orders (certificate_serial, state)",
      `CREATE TABLE reminder_scan (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        through_day BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE TABLE holder_preferences (
        holder_id TEXT PRIMARY KEY REFERENCES holders (id),
        sms_reminders INTEGER NOT NULL,
        email_reminders INTEGER NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      // One-time codes of holder sign-in: only their keyed hash is kept.
      `CREATE TABLE holder_sign_ins (
        id TEXT PRIMARY KEY,
        holder_id TEXT NOT NULL REFERENCES holders (id),
        channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
        sent_to TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'used', 'locked')),
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE INDEX holder_sign_ins_holder ON holder_sign_ins (holder_id, created_at)",
    ],
  },
  {
    version: 5,
    name: "newer certificate of a holder and profile",
    statements: () => [
      // "Already renewed" asks, for each certificate due, whether its holder has a newer one of the
      // same profile: without this index SQLite walks the profile's later expiries instead.
      "CREATE INDEX certificates_holder_profile ON certificates (holder_id, profile_id, not_after)",
    ],
  },
  {
    version: 6,
    name: "audit log without the hash index",
    statements: () => [
      // Hashes are random: every append wrote a leaf page of this index somewhere else in the file
      // (seven per renewal, a quarter of a renewal's disk writes). Only `audit verify` looked an
      // entry up by hash, and only to name the kind of a break it had already found: it scans then.
      "DROP INDEX audit_log_hash",
    ],
  },
  {
    version: 7,
    name: "fewer index writes per renewal",
    statements: (t) => [
      // certificates_holder_profile (holder_id, profile_id, not_after) serves every lookup by holder and
      // certificates_pending (status, created_at) every lookup by status: these two only cost writes.
      "DROP INDEX certificates_holder",
      "DROP INDEX certificates_status",
      // Nothing looks a certificate up by its key hash; each issuance wrote a random leaf of this index.
      "DROP INDEX certificates_spki",
      // Only revoked certificates are looked up by issuer (the CRL's walk in serial order, its stamp):
      // a partial index is written on revocation, not on every issuance.
      "DROP INDEX certificates_issuer_serial",
      "CREATE INDEX certificates_revoked_issuer_serial ON certificates (issuer_key_id, serial) WHERE revoked_at IS NOT NULL",
      // With the state in it, every step of an order moved its entry (a random page per step); a
      // certificate has a handful of orders, read and filtered by state just as fast.
      "DROP INDEX renewal_orders_certificate",
      "CREATE INDEX renewal_orders_certificate_serial ON renewal_orders (certificate_serial)",
      // The same one-open rule with its predicate as comparisons (OPEN_ORDER_CONDITION); PostgreSQL
      // evaluates an IN list in place and keeps its index.
      ...(t.engine === "sqlite" ? [
        "DROP INDEX renewal_orders_one_open",
        `CREATE UNIQUE INDEX renewal_orders_one_open ON renewal_orders (certificate_serial) WHERE ${OPEN_ORDER_CONDITION}`,
      ] : []),
      // On SQLite a BIGINT PRIMARY KEY is an index beside the table's rowid: every audit entry was
      // written twice. As INTEGER PRIMARY KEY the seq is the rowid. (PostgreSQL has one index either way.)
      ...(t.engine === "sqlite" ? [
        `CREATE TABLE audit_log_v7 (
          seq INTEGER PRIMARY KEY,
          at BIGINT NOT NULL,
          actor TEXT NOT NULL,
          action TEXT NOT NULL,
          subject_type TEXT NOT NULL,
          subject_id TEXT NOT NULL,
          data TEXT NOT NULL,
          prev_hash TEXT NOT NULL,
          hash TEXT NOT NULL
        )`,
        `INSERT INTO audit_log_v7 (seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash)
          SELECT seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash FROM audit_log ORDER BY seq`,
        "DROP TABLE audit_log",
        "ALTER TABLE audit_log_v7 RENAME TO audit_log",
        "CREATE INDEX audit_log_subject ON audit_log (subject_type, subject_id)",
      ] : []),
    ],
  },
  {
    version: 8,
    name: "the CA a database serves, and a row for storage probes",
    statements: () => [
      // The issuing CA this database serves, written by `ukey-server init` (or on adopting a database
      // of an earlier release): a CA is never started on an empty database or on another CA's, where
      // its revocations would be missing and its CRL numbers would start again.
      `CREATE TABLE ca_binding (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        issuing_key_id TEXT NOT NULL,
        issuing_cert_sha256 TEXT NOT NULL,
        how TEXT NOT NULL CHECK (how IN ('init', 'adopted')),
        bound_at BIGINT NOT NULL
      )`,
      // Readiness writes here to tell whether storage accepts writes again after it was full.
      `CREATE TABLE storage_probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        probes BIGINT NOT NULL
      )`,
      "INSERT INTO storage_probe (id, probes) VALUES (1, 0)",
    ],
  },
  {
    version: 9,
    name: "abuse limits: operator back-off per client, holder sign-in quotas, renewal unlocks",
    statements: () => [
      // A refused operator sign-in pauses that account for that client address only, never for everyone:
      // keyed by a keyed hash of the id typed (an unknown id is paused like a known one), so a password
      // typed as an id is never stored.
      `CREATE TABLE operator_sign_in_backoffs (
        account TEXT NOT NULL,
        client TEXT NOT NULL,
        failures INTEGER NOT NULL,
        paused_until BIGINT,
        last_failure_at BIGINT NOT NULL,
        PRIMARY KEY (account, client)
      )`,
      "CREATE INDEX operator_sign_in_backoffs_last ON operator_sign_in_backoffs (last_failure_at)",
      // Sign-in codes are now issued for any customer number typed, a decoy (no holder, no message) when
      // it names nobody reachable, so that the answers tell nothing. The rows of version 4 are codes valid
      // for five minutes: dropping them on upgrade costs a holder at most one new code.
      "DROP TABLE holder_sign_ins",
      `CREATE TABLE holder_sign_ins (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        holder_id TEXT REFERENCES holders (id),
        channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
        sent_to TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'used', 'locked')),
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE INDEX holder_sign_ins_expires ON holder_sign_ins (expires_at)",
      // Per customer number and 24-hour window: codes sent and wrong codes, shared by every instance.
      `CREATE TABLE holder_sign_in_quotas (
        subject TEXT PRIMARY KEY,
        window_start BIGINT NOT NULL,
        codes_sent INTEGER NOT NULL,
        wrong_codes INTEGER NOT NULL,
        last_sent_at BIGINT,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE INDEX holder_sign_in_quotas_window ON holder_sign_in_quotas (window_start)",
      // Failures of renewal orders before this time no longer pause the certificate's renewal.
      `CREATE TABLE renewal_unlocks (
        certificate_serial TEXT PRIMARY KEY,
        unlocked_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 10,
    name: "pre-signed OCSP responses beside each certificate",
    statements: (t) => [
      // Beside the certificate, not in a table of their own: the UPDATE that revokes a certificate clears its
      // response in the same statement, so no crash can leave a `good` answer standing for a revoked one, and
      // the request path reads one row by primary key as before. Constant defaults: both engines add these
      // columns without rewriting the table, however many certificates it holds.
      `ALTER TABLE certificates ADD COLUMN ocsp_der ${t.blob}`,
      "ALTER TABLE certificates ADD COLUMN ocsp_this_update BIGINT",
      "ALTER TABLE certificates ADD COLUMN ocsp_next_update BIGINT NOT NULL DEFAULT 0",
      // When the background refresher should sign this certificate's response again (0: as soon as it can).
      "ALTER TABLE certificates ADD COLUMN ocsp_refresh_at BIGINT NOT NULL DEFAULT 0",
      "CREATE INDEX certificates_ocsp_refresh ON certificates (issuer_key_id, ocsp_refresh_at)",
    ],
  },
  {
    version: 11,
    name: "key management centre: escrowed encryption keys",
    statements: () => [
      // Only wrapped keys (AES-256-GCM under the KMC master key, which is not in the database); rows are never updated.
      `CREATE TABLE kmc_escrows (
        id TEXT PRIMARY KEY,
        holder_id TEXT NOT NULL REFERENCES holders (id),
        algorithm TEXT NOT NULL,
        spki TEXT NOT NULL,
        wrapped_key TEXT NOT NULL,
        master_key_id TEXT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      "CREATE INDEX kmc_escrows_holder ON kmc_escrows (holder_id, created_at)",
    ],
  },
  {
    version: 12,
    name: "CRL entries read from one covering index",
    statements: () => [
      // Everything a CRL entry needs, in serial order: a CRL (or a shard, a range of serials) is read from
      // this index alone, never from the rows, which lie in issuance order across the table.
      `CREATE INDEX certificates_revoked_crl ON certificates (issuer_key_id, serial, revoked_at, revocation_reason, status)
         WHERE revoked_at IS NOT NULL`,
    ],
  },
  {
    version: 13,
    name: "signing + encryption certificate pairs",
    statements: () => [
      // A pair is issued and superseded together; the escrow is the encryption key's at the KMC.
      `CREATE TABLE certificate_pairs (
        signing_serial TEXT PRIMARY KEY REFERENCES certificates (serial),
        encryption_serial TEXT NOT NULL UNIQUE REFERENCES certificates (serial),
        escrow_id TEXT NOT NULL REFERENCES kmc_escrows (id),
        created_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 14,
    name: "key management centre: key recovery under dual control",
    statements: () => [
      // One row per request; its status moves pending -> released | rejected, released -> delivered, each a
      // compare-and-set. No key material: the escrows stay wrapped in kmc_escrows.
      `CREATE TABLE kmc_recoveries (
        id TEXT PRIMARY KEY,
        holder_id TEXT NOT NULL REFERENCES holders (id),
        profile_id TEXT NOT NULL,
        escrow_ids TEXT NOT NULL,
        reason TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        decided_by TEXT,
        decided_at BIGINT,
        enrolment_id TEXT REFERENCES enrolments (id),
        delivered_spki_sha256 TEXT,
        delivered_at BIGINT,
        updated_at BIGINT NOT NULL
      )`,
      "CREATE INDEX kmc_recoveries_status ON kmc_recoveries (status, requested_at)",
      "CREATE UNIQUE INDEX kmc_recoveries_enrolment ON kmc_recoveries (enrolment_id) WHERE enrolment_id IS NOT NULL",
    ],
  },
  {
    version: 15,
    name: "certificate pairs found by their escrow",
    statements: () => [
      // A recovered key's download names the old encryption certificate its escrow was certified by; each
      // escrow is certified by one pair only (a renewal escrows a new key).
      "CREATE UNIQUE INDEX certificate_pairs_escrow ON certificate_pairs (escrow_id)",
    ],
  },
  {
    version: 16,
    name: "self-service re-download: the certificate an enrolment replaces",
    statements: () => [
      // Set only on the enrolments a holder's own re-download makes (ID number + SMS code); operators' stay NULL.
      "ALTER TABLE enrolments ADD COLUMN replaces_serial TEXT REFERENCES certificates (serial)",
    ],
  },
  {
    version: 17,
    name: "delta CRLs: when a certificate's revocation state last changed",
    statements: () => [
      // Set by a revocation, a hold lifted and an import of a revoked certificate; NULL on rows older than this
      // migration, which every complete CRL signed after it already covers. A delta CRL reads only the rows
      // changed since its base, from this index.
      "ALTER TABLE certificates ADD COLUMN revocation_changed_at BIGINT",
      `CREATE INDEX certificates_revocation_changed ON certificates (issuer_key_id, revocation_changed_at, serial)
         WHERE revocation_changed_at IS NOT NULL`,
    ],
  },
];

/** The newest schema version this code knows. */
export const LATEST_SCHEMA_VERSION = migrations.reduce((max, m) => Math.max(max, m.version), 0);

/**
 * Brings the schema to LATEST_SCHEMA_VERSION (or `upTo`, for upgrade tests): every missing migration in one
 * transaction, recorded in `schema_version`. Several processes may call it at
 * once on PostgreSQL: the version-0 row is locked, so they run one at a time
 * and the later ones find nothing to do. Returns the version found before.
 *
 * Throws UkeyError DATABASE_SCHEMA_NEWER when the database was written by a
 * newer version of this program (nothing is changed then).
 */
export async function migrate(db: Database, at: Millis, upTo = LATEST_SCHEMA_VERSION): Promise<number> {
  await bootstrap(db, at);
  return db.transaction(async (tx) => {
    await tx.query("SELECT version FROM schema_version WHERE version = 0 FOR UPDATE");
    const rows = await tx.query<{ v: number | null }>("SELECT MAX(version) AS v FROM schema_version");
    const found = Number(rows[0]?.v ?? 0);
    if (found > LATEST_SCHEMA_VERSION) {
      throw new UkeyError("DATABASE_SCHEMA_NEWER", { params: { found, supported: LATEST_SCHEMA_VERSION } });
    }
    for (const m of migrations) {
      if (m.version <= found || m.version > upTo) continue;
      for (const statement of m.statements(typeNames[db.engine])) await tx.run(statement);
      await tx.run("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)", [m.version, m.name, at]);
    }
    return found;
  });
}

async function bootstrap(db: Database, at: Millis): Promise<void> {
  const create = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
  const seed = "INSERT INTO schema_version (version, name, applied_at) VALUES (0, 'bootstrap', ?) ON CONFLICT (version) DO NOTHING";
  for (let attempt = 0; ; attempt++) {
    try {
      await db.run(create);
      await db.run(seed, [at]);
      return;
    } catch (e) {
      // Two PostgreSQL sessions creating the table at the same instant can
      // collide on the catalogue; the second attempt then finds it.
      if (attempt >= 2 || db.engine !== "postgres") throw e;
    }
  }
}
