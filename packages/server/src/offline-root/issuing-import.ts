import { createHash } from "node:crypto";
import { existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { caKeyNames, derToPem, holdsKeyOf, loadIssuerCertificate } from "@ukey/ca";
import { UkeyError, validityFor, type Clock } from "@ukey/policy";
import { openStore, readCaBinding, transactionRepositories, writeCaBinding, type CaBinding } from "@ukey/store";
import { openKeyStore, type CaSecrets } from "../ca-runtime.js";
import { dataDirLayout, type DataDirLayout } from "../data-dir.js";
import { loadServerConfig, type ServerConfig } from "../server-config.js";
import { syncProfiles } from "../profile-sync.js";
import { checkIssuingCertificate, checkRootCertificate, checkRootCrl, type CeremonyCertificate, type CheckedRootCrl } from "./ceremony-checks.js";

/** What `ukey-server ca import` brings from the offline root's ceremony: file contents, PEM or DER. */
export interface CeremonyFiles {
  issuingCert: Buffer;
  rootCert: Buffer;
  rootCrl: Buffer;
}

/** What an import installed. */
export interface IssuingImport {
  root: string;
  issuing: string;
  issuingSerial: string;
  issuingNotAfter: string;
  rootCrlNumber: string;
  rootCrlNextUpdate: string;
}

/**
 * The configuration of a data directory that `init --offline-root` made and
 * that still waits for its issuing certificate.
 * @throws UkeyError CA_NOT_INITIALISED, CONFIG_INVALID, CA_IMPORT_NOT_AWAITED.
 */
function awaitingConfig(layout: DataDirLayout): ServerConfig {
  let config: ServerConfig;
  try {
    config = loadServerConfig(layout.config);
  } catch (e) {
    if (e instanceof UkeyError && e.code === "FILE_UNREADABLE") throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: layout.dir }, cause: e });
    throw e;
  }
  const refuse = (reason: string) => new UkeyError("CA_IMPORT_NOT_AWAITED", { params: { dir: layout.dir, reason } });
  if (config.ca.rootKey !== "offline") throw refuse("init made its root CA on the server (ca.rootKey is \"server\")");
  if (existsSync(layout.issuingCert)) throw refuse("it already has its issuing CA certificate (ca/issuing.cer.pem)");
  if (!existsSync(layout.issuingCsr)) throw refuse("ca/issuing.csr.pem is missing");
  return config;
}

/**
 * The end of the key ceremony on the server: checks what the offline root
 * signed and installs it. In order: the data directory waits for it; the
 * root certificate is fit (ceremony-checks); the issuing certificate was
 * signed by it and is fit; its public key is the issuing key's, proven by
 * a signature the key store makes over a random challenge and the
 * certificate's key verifies; the root CRL is the root's, current, and
 * does not revoke the issuing certificate. Then, in one transaction, the
 * database (empty, or bound to this same certificate by an import
 * interrupted before its files were in place) is bound to the issuing CA,
 * both CA certificates are recorded, the profiles written, and
 * `ca.issuing-imported` audited; the files are renamed into place last,
 * ca/issuing.cer.pem the very last. Any refusal changes nothing.
 * @throws UkeyError CA_NOT_INITIALISED, CA_IMPORT_NOT_AWAITED, ROOT_CERT_UNFIT, ISSUING_CERT_UNFIT, ISSUING_CERT_NOT_FROM_ROOT,
 *   ISSUING_CERT_WRONG_KEY, ROOT_CRL_WRONG_ISSUER, ROOT_CRL_STALE, ROOT_CRL_REVOKES_ISSUING, PEM_MALFORMED, DER_MALFORMED,
 *   DATABASE_CA_MISMATCH, SECRET_FILE_REQUIRED, CA_PASSPHRASE_WRONG, HSM_*, DATABASE_UNAVAILABLE, DATA_DIR_LOCKED.
 */
export async function importIssuingCertificate(o: {
  dataDir: string; files: CeremonyFiles; databaseUrl?: string; clock: Clock; actor: string;
  /** The key store's secret, read once the configuration says which key store it is. */
  secrets: (keyStore: ServerConfig["ca"]["keyStore"]["type"]) => CaSecrets;
}): Promise<IssuingImport> {
  const layout = dataDirLayout(o.dataDir);
  const config = awaitingConfig(layout);
  const now = o.clock.now();
  const root = checkRootCertificate(o.files.rootCert, now);
  // Every certificate issued today under any profile must fit inside the issuing CA's validity.
  const longest = Math.max(...config.profiles.map((p) => validityFor(p, { now }).notAfter.getTime()));
  const issuing = checkIssuingCertificate(o.files.issuingCert, root, now, new Date(longest));
  await proveIssuingKey(config, layout, o.secrets(config.ca.keyStore.type), issuing);
  const crl = checkRootCrl(o.files.rootCrl, root, issuing.serial, now);

  const rootCa = loadIssuerCertificate(root.der);
  const issuingCa = loadIssuerCertificate(issuing.der);
  const binding: CaBinding = {
    issuingKeyId: issuingCa.keyId.toString("hex"),
    issuingCertSha256: createHash("sha256").update(issuingCa.der).digest("hex"),
  };
  // Written beside their final names first: a full disk fails here, before the database is bound.
  const staged = [
    [layout.rootCert, derToPem(root.der, "CERTIFICATE"), 0o644],
    [layout.rootCrl, crl.der, 0o644],
    [layout.issuingCert, derToPem(issuing.der, "CERTIFICATE"), 0o644],
  ] as const;
  for (const [path, data, mode] of staged) writeFileSync(`${path}.importing`, data, { mode });

  let store: Awaited<ReturnType<typeof openStore>>;
  try {
    store = await openStore(o.databaseUrl ? { databaseUrl: o.databaseUrl } : { dataDir: o.dataDir });
  } catch (e) {
    for (const [path] of staged) removeQuietly(`${path}.importing`);
    throw e;
  }
  try {
    const at = now.getTime();
    await store.db.transaction(async (tx) => {
      const r = transactionRepositories(tx);
      const bound = await readCaBinding(tx);
      if (bound && bound.issuingKeyId === binding.issuingKeyId && bound.issuingCertSha256 === binding.issuingCertSha256) return;
      const other = bound?.issuingKeyId ?? (await r.issuers.list()).find((i) => i.role === "issuing")?.keyId;
      if (other !== undefined) {
        throw new UkeyError("DATABASE_CA_MISMATCH", {
          params: { keyId: binding.issuingKeyId, reason: `the database already serves the CA with issuing key id ${other}; the import needs an empty database` },
        });
      }
      await writeCaBinding(tx, binding, "init", at);
      await r.issuers.put({ keyId: rootCa.keyId.toString("hex"), subjectDn: rootCa.subjectDn, der: rootCa.der, role: "root", createdAt: at });
      await r.issuers.put({ keyId: binding.issuingKeyId, subjectDn: issuingCa.subjectDn, der: issuingCa.der, role: "issuing", createdAt: at });
      await syncProfiles(r, config.profiles, at, o.actor);
      await r.audit.append({
        at, actor: o.actor, action: "ca.issuing-imported", subjectType: "ca", subjectId: binding.issuingKeyId,
        data: {
          root: rootCa.subjectDn, rootSha256: createHash("sha256").update(root.der).digest("hex"),
          issuing: issuingCa.subjectDn, issuingSerial: issuing.serial, issuingCertSha256: binding.issuingCertSha256,
          rootCrlNumber: crl.number.toString(), rootCrlNextUpdate: crl.nextUpdate.toISOString(), keyStore: config.ca.keyStore.type,
        },
      });
    });
  } catch (e) {
    for (const [path] of staged) removeQuietly(`${path}.importing`);
    throw e;
  } finally {
    await store.close();
  }
  for (const [path] of staged) renameSync(`${path}.importing`, path);
  return summary(rootCa.subjectDn, issuingCa.subjectDn, issuing, crl);
}

function summary(root: string, issuing: string, cert: CeremonyCertificate, crl: CheckedRootCrl): IssuingImport {
  return {
    root, issuing, issuingSerial: cert.serial, issuingNotAfter: cert.x509.notAfter.toISOString(),
    rootCrlNumber: crl.number.toString(), rootCrlNextUpdate: crl.nextUpdate.toISOString(),
  };
}

function removeQuietly(path: string): void {
  rmSync(path, { force: true });
}

/**
 * Proves that the key store holds the private key of the issuing
 * certificate by a signature (holdsKeyOf), not by comparing public keys.
 * @throws UkeyError ISSUING_CERT_WRONG_KEY, SECRET_FILE_REQUIRED, CA_PASSPHRASE_WRONG, CA_KEY_UNUSABLE, HSM_*.
 */
async function proveIssuingKey(config: ServerConfig, layout: DataDirLayout, secrets: CaSecrets, issuing: CeremonyCertificate): Promise<void> {
  const keyStore = openKeyStore(config, layout, secrets);
  try {
    if (!(await holdsKeyOf(await keyStore.load(caKeyNames.issuing), issuing.spki))) throw new UkeyError("ISSUING_CERT_WRONG_KEY");
  } finally {
    await keyStore.close?.();
  }
}
