import { readFileSync } from "node:fs";
import { UkeyError, defaultKeyVendors, mergeKeyVendorTables, type Clock, type KeyVendorTable } from "@ukey/policy";
import { openStore, type Store } from "@ukey/store";
import { CaRuntime, issuingCaBinding } from "./ca-runtime.js";
import { dataDirLayout, type DataDirLayout } from "./data-dir.js";
import { IssuanceService } from "./issuance-service.js";
import { IntentSweeper } from "./intent-sweeper.js";
import { ProfileCache } from "./profile-cache.js";
import { syncProfiles } from "./profile-sync.js";
import { RenewalInfoService } from "./renewal-info-service.js";
import { RenewalOrderService } from "./renewal/renewal-order-service.js";
import { createSenders, type Senders } from "./delivery/index.js";
import { DownloadService } from "./download-service.js";
import { enrolmentServiceFor, type EnrolmentService } from "./enrolment-service.js";
import { derToPem } from "@ukey/ca";
import { RevocationService } from "./revocation-service.js";
import { OcspService } from "./ocsp/ocsp-service.js";
import { SignatureVerifier } from "./signature-verifier.js";
import { loadServerConfig, readSecretFile, type ServerConfig } from "./server-config.js";
import { ReminderScheduler } from "./reminders/reminder-scheduler.js";
import { RefusalLog } from "./audit/refusal-log.js";
import { openKmc, type KmcEnv, type KmcRuntime } from "./kmc/kmc-runtime.js";
import { PasswordHashQueue } from "./admin/password-hash-queue.js";

/** The environment variables the server reads; everything else is in config.json. */
export interface ServerEnv extends KmcEnv {
  UKEY_DATABASE_URL?: string;
  UKEY_DATABASE_URL_FILE?: string;
  UKEY_CA_PASSPHRASE_FILE?: string;
  UKEY_HSM_PIN_FILE?: string;
}

/** Everything a running server (or a CLI command) works with, wired once. */
export interface ServerContext {
  layout: DataDirLayout;
  config: ServerConfig;
  store: Store;
  ca: CaRuntime;
  clock: Clock;
  idKey: Buffer;
  issuance: IssuanceService;
  revocation: RevocationService;
  /** Pre-signed OCSP responses; its refresher is started by a listening server (buildApp). */
  ocsp: OcspService;
  renewalInfo: RenewalInfoService;
  orders: RenewalOrderService;
  /** Where codes and notices to holders go. */
  senders: Senders;
  enrolments: EnrolmentService;
  downloads: DownloadService;
  /** The built-in key vendor table with the operator's entries applied. */
  keyVendors: KeyVendorTable;
  /** Expiry reminders: started by a listening server (buildApp), never by a CLI command. */
  reminders: ReminderScheduler;
  /** Refusals (bad tokens, refused sign-ins, failed proofs, limited requests), audited as counts per window. */
  refusals: RefusalLog;
  /**
   * Where operator sign-ins' password hashes wait their turn (config `signIn.concurrentHashes` and
   * `waitingHashes`): one for the process, shared by every listener, since the thread pool it guards is the process's.
   */
  signInHashes: PasswordHashQueue;
  /** Closes orphaned issuance intents: once at open, then periodically in a listening server (buildApp). */
  intentSweeper: IntentSweeper;
  /** The key management centre (config `kmc`); undefined when none is configured (then no profile has a pair). */
  kmc?: KmcRuntime;
  close(): Promise<void>;
}

/** The database URL from UKEY_DATABASE_URL or the file UKEY_DATABASE_URL_FILE names. */
export function databaseUrlFrom(env: ServerEnv): string | undefined {
  if (env.UKEY_DATABASE_URL) return env.UKEY_DATABASE_URL;
  if (env.UKEY_DATABASE_URL_FILE) return readSecretFile("UKEY_DATABASE_URL_FILE", env.UKEY_DATABASE_URL_FILE);
  return undefined;
}

/**
 * Opens a data directory: configuration, database (locked for the embedded
 * engine; it must serve this directory's issuing CA, see openStore's `ca`),
 * CA keys (key files under a weaker protection rewritten, with an audit
 * entry), services. Pending issuance intents older than
 * `issuance.abandonAfterSeconds` are closed as abandoned, each with an
 * audit entry (a crash between intent and signature).
 * @throws UkeyError CA_NOT_INITIALISED, CONFIG_INVALID, DATABASE_CA_MISMATCH, DATA_DIR_LOCKED, DATA_DIR_CORRUPT,
 *   DATABASE_UNAVAILABLE, SECRET_FILE_REQUIRED, CA_PASSPHRASE_WRONG, HSM_*; and, unless `opts.kmc` is false
 *   (`ukey-server kmc init`, which makes the master key), KMC_REQUIRED, KMC_NOT_INITIALISED, KMC_PASSPHRASE_WRONG,
 *   KMC_MASTER_KEY_UNUSABLE (see openKmc): a server that cannot issue its pairs does not start.
 */
export async function openServerContext(dataDir: string, env: ServerEnv, clock: Clock, opts: { kmc?: boolean } = {}): Promise<ServerContext> {
  const layout = dataDirLayout(dataDir);
  let config: ServerConfig;
  try {
    config = loadServerConfig(layout.config);
  } catch (e) {
    if (e instanceof UkeyError && e.code === "FILE_UNREADABLE") throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: dataDir }, cause: e });
    throw e;
  }
  const secrets = config.ca.keyStore.type === "file"
    ? { passphrase: readSecretFile("UKEY_CA_PASSPHRASE_FILE", env.UKEY_CA_PASSPHRASE_FILE) }
    : { hsmPin: readSecretFile("UKEY_HSM_PIN_FILE", env.UKEY_HSM_PIN_FILE) };
  let idKey: Buffer;
  try {
    idKey = readFileSync(layout.idKey);
  } catch (cause) {
    throw new UkeyError("FILE_UNREADABLE", { params: { path: layout.idKey }, cause });
  }
  const databaseUrl = databaseUrlFrom(env);
  const binding = issuingCaBinding(layout);
  const store = await openStore({ ...(databaseUrl ? { databaseUrl } : { dataDir }), ca: binding, clock });
  let ca: CaRuntime;
  try {
    ca = await CaRuntime.open(config, layout, secrets);
  } catch (e) {
    await store.close();
    throw e;
  }
  let kmc: KmcRuntime | undefined;
  try {
    if (opts.kmc !== false) kmc = await openKmc(config, layout, env, { store, clock });
  } catch (e) {
    await store.close();
    await ca.close();
    throw e;
  }
  const now = clock.now().getTime();
  const intentSweeper = new IntentSweeper({ store, clock, settings: config.issuance });
  try {
    if (ca.keyFiles.upgraded.length) {
      await store.audit.appendMany(ca.keyFiles.upgraded.map((u) => ({
        at: now, actor: "system", action: "ca.key-file-upgraded", subjectType: "ca-key", subjectId: u.name,
        data: { file: `ca/${u.name}.key.pem`, from: { ...u.from }, to: { ...u.to } },
      })));
    }
    await intentSweeper.runOnce();
    await store.transaction((r) => syncProfiles(r, config.profiles, now, "system"));
  } catch (e) {
    await store.close();
    await ca.close();
    await kmc?.close();
    throw e;
  }
  const profiles = new ProfileCache({ store, clock });
  const ocsp = new OcspService({
    certificates: store.certificates, ca, clock,
    validityHours: config.ca.ocspValidityHours, nonces: config.ca.ocspNonces,
    onError: (e) => process.stderr.write(`OCSP refresher: ${String(e)} (retried on its next pass)\n`),
  });
  const issuance = new IssuanceService({ store, ca, clock, institution: config.institution, batchSize: config.issuance.batchSize, profiles, ocsp });
  const revocation = new RevocationService({
    store, ca, clock,
    crlValidityHours: config.ca.crlValidityHours,
    crlRefreshMinutes: config.ca.crlRefreshMinutes,
    crlShards: { count: config.ca.crlShards, publicUrl: config.publicUrl },
    ...(config.ca.deltaCrl.enabled ? { deltaCrl: { everyMinutes: config.ca.deltaCrl.everyMinutes, publicUrl: config.publicUrl } } : {}),
    ocsp,
  });
  const renewalInfo = new RenewalInfoService({ store, clock, publicUrl: config.publicUrl });
  const chainPem = derToPem(ca.issuing.der, "CERTIFICATE") + derToPem(ca.root.der, "CERTIFICATE");
  let senders: Senders;
  try {
    senders = createSenders(config.delivery, { dataDir, outbox: store.outbox, clock });
  } catch (e) {
    await store.close();
    await ca.close();
    throw e;
  }
  const verifier = new SignatureVerifier();
  const refusals = new RefusalLog({
    audit: store.audit, clock, windowMs: config.audit.refusalWindowSeconds * 1000, maxDistinct: config.audit.refusalEntriesPerWindow,
    onError: (e) => process.stderr.write(`refusal audit not written (kept for the next window): ${String(e)}\n`),
  });
  const orders = new RenewalOrderService({ store, issuance, kmc: kmc?.kmc, clock, idKey, institution: config.institution, publicUrl: config.publicUrl, chainPem, senders, profiles, verifier, refusals });
  const enrolments = enrolmentServiceFor({ store, clock, layout });
  const downloads = new DownloadService({ store, enrolments, issuance, kmc: kmc?.kmc, recoveredKeys: kmc?.recoveredKeys, clock, institution: config.institution, chainPem });
  const reminders = new ReminderScheduler({ store, senders, clock, profiles, institution: config.institution, publicUrl: config.publicUrl, settings: config.reminders });
  return {
    layout, config, store, ca, clock, idKey, issuance, revocation, ocsp, renewalInfo, orders, senders, enrolments, downloads,
    keyVendors: mergeKeyVendorTables(defaultKeyVendors, config.keyVendors),
    reminders,
    refusals,
    signInHashes: new PasswordHashQueue({ concurrency: config.signIn.concurrentHashes, maxWaiting: config.signIn.waitingHashes }),
    intentSweeper,
    ...(kmc ? { kmc } : {}),
    async close() {
      await reminders.stop();
      await intentSweeper.stop();
      await ocsp.stop();
      await verifier.close();
      await issuance.drain();
      await refusals.close();
      await store.close();
      await ca.close();
      await kmc?.close();
    },
  };
}
