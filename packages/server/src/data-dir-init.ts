import "reflect-metadata";
import { createHash, randomBytes, webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { buildCsr, caKeyNames, createCaHierarchy, derToPem, encodeName } from "@ukey/ca";
import { UkeyError, type Clock, type KeyAlgorithm } from "@ukey/policy";
import { openStore, readCaBinding, transactionRepositories, writeCaBinding, type CaBinding } from "@ukey/store";
import { issuingCaUrls, openKeyStore, type CaSecrets } from "./ca-runtime.js";
import { dataDirLayout } from "./data-dir.js";
import { parseServerConfig, type ServerConfig } from "./server-config.js";
import { syncProfiles } from "./profile-sync.js";

export interface InitOptions {
  dataDir: string;
  algorithm: KeyAlgorithm;
  publicUrl?: string;
  institution?: { name?: string; country?: string };
  /** HSM instead of the encrypted key file. */
  pkcs11?: { module: string; token: string; labelPrefix?: string };
  secrets: CaSecrets;
  databaseUrl?: string;
  clock: Clock;
  actor: string;
  /**
   * The root stays offline: make only the issuing key and its certificate
   * request (written to ca/issuing.csr.pem and to `csrOut`), and no database
   * yet; `ca import` installs the certificates the ceremony signed.
   */
  offlineRoot?: { csrOut: string };
}

/**
 * Creates a data directory: a root CA and an issuing CA (keys in an
 * encrypted PKCS#8 file or the HSM), the ID-hash key, a TLS certificate
 * for the HTTPS port, the database with the default profile and the
 * binding to its issuing CA (every later open checks it), and config.json.
 * Files are prepared in a staging folder and moved into place with
 * config.json last, so an interrupted init leaves nothing that looks
 * initialised and can simply be run again. A database (PostgreSQL) that
 * already serves a CA is refused. With `offlineRoot` only the issuing key
 * and its request are made (initAwaitingIssuingCert).
 * @throws UkeyError CA_ALREADY_INITIALISED, DATABASE_CA_MISMATCH, SECRET_FILE_REQUIRED, HSM_*, DATA_DIR_LOCKED, DATABASE_UNAVAILABLE;
 *   CLI_USAGE when the request cannot be written to `offlineRoot.csrOut`.
 */
export async function initDataDir(o: InitOptions): Promise<{ config: ServerConfig; rootSubject: string | null; issuingSubject: string; csrOut?: string }> {
  const layout = dataDirLayout(o.dataDir);
  if (existsSync(layout.config) || existsSync(layout.caDir)) throw new UkeyError("CA_ALREADY_INITIALISED", { params: { dir: o.dataDir } });
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(o.dataDir)) if (name.startsWith(".init-")) rmSync(join(o.dataDir, name), { recursive: true, force: true });
  const staging = join(o.dataDir, `.init-${process.pid}`);
  const st = dataDirLayout(staging);
  mkdirSync(st.caDir, { recursive: true, mode: 0o700 });
  mkdirSync(join(staging, "secrets"), { mode: 0o700 });
  mkdirSync(join(staging, "tls"), { mode: 0o700 });

  try {
    const config = parseServerConfig({
      publicUrl: o.publicUrl,
      institution: o.institution ?? {},
      ca: {
        algorithm: o.algorithm,
        keyStore: o.pkcs11 ? { type: "pkcs11", module: o.pkcs11.module, token: o.pkcs11.token, labelPrefix: o.pkcs11.labelPrefix ?? "ukey-" } : { type: "file" },
        ...(o.offlineRoot ? { rootKey: "offline" } : {}),
      },
    });
    const keyStore = openKeyStore(config, st, o.secrets);
    const now = o.clock.now();
    const org = config.institution.name;
    const country = config.institution.country;
    if (o.offlineRoot) return await initAwaitingIssuingCert({ ...o, offlineRoot: o.offlineRoot }, config, keyStore, st, staging, layout, now);
    let hierarchy;
    try {
      hierarchy = await createCaHierarchy({
        keyStore, algorithm: o.algorithm, now,
        rootSubject: { rdns: [["C", country], ["O", org], ["CN", `${org} Root CA`]] },
        issuingSubject: { rdns: [["C", country], ["O", org], ["CN", `${org} Issuing CA`]] },
        issuingUrls: issuingCaUrls(config.publicUrl),
      });
    } finally {
      await (keyStore as { close?(): Promise<void> | void }).close?.();
    }
    writeFileSync(st.rootCert, derToPem(hierarchy.root.der, "CERTIFICATE"), { mode: 0o644 });
    writeFileSync(st.issuingCert, derToPem(hierarchy.issuing.der, "CERTIFICATE"), { mode: 0o644 });
    writeFileSync(st.idKey, randomBytes(32), { mode: 0o600 });
    const tls = await selfSignedTls(now, new URL(config.publicUrl).hostname);
    writeFileSync(st.tlsKey, tls.key, { mode: 0o600 });
    writeFileSync(st.tlsCert, tls.cert, { mode: 0o644 });

    const store = await openStore(o.databaseUrl ? { databaseUrl: o.databaseUrl } : { dataDir: staging });
    try {
      const at = now.getTime();
      const binding: CaBinding = {
        issuingKeyId: hierarchy.issuing.keyId.toString("hex"),
        issuingCertSha256: createHash("sha256").update(hierarchy.issuing.der).digest("hex"),
      };
      await store.db.transaction(async (tx) => {
        const r = transactionRepositories(tx);
        const bound = await readCaBinding(tx);
        const other = bound?.issuingKeyId ?? (await r.issuers.list()).find((i) => i.role === "issuing")?.keyId;
        if (other !== undefined) {
          throw new UkeyError("DATABASE_CA_MISMATCH", {
            params: { keyId: binding.issuingKeyId, reason: `the database already serves the CA with issuing key id ${other}; init needs an empty database` },
          });
        }
        await writeCaBinding(tx, binding, "init", at);
        await r.issuers.put({ keyId: hierarchy.root.keyId.toString("hex"), subjectDn: hierarchy.root.subjectDn, der: hierarchy.root.der, role: "root", createdAt: at });
        await r.issuers.put({ keyId: hierarchy.issuing.keyId.toString("hex"), subjectDn: hierarchy.issuing.subjectDn, der: hierarchy.issuing.der, role: "issuing", createdAt: at });
        await syncProfiles(r, config.profiles, at, o.actor);
        await r.audit.append({
          at, actor: o.actor, action: "ca.initialised", subjectType: "ca", subjectId: hierarchy.issuing.keyId.toString("hex"),
          data: { root: hierarchy.root.subjectDn, issuing: hierarchy.issuing.subjectDn, algorithm: o.algorithm, keyStore: config.ca.keyStore.type },
        });
      });
    } finally {
      await store.close();
    }
    for (const name of readdirSync(staging)) renameSync(join(staging, name), join(o.dataDir, name));
    writeFileSync(join(staging, "config.json"), JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
    renameSync(join(staging, "config.json"), layout.config);
    rmSync(staging, { recursive: true, force: true });
    return { config, rootSubject: hierarchy.root.subjectDn, issuingSubject: hierarchy.issuing.subjectDn };
  } catch (e) {
    // Nothing half-made stays behind; the next init starts clean.
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The rest of `init --offline-root`: the issuing key (where the key store
 * keeps it), its PKCS#10 request with the subject init would give the
 * issuing CA, the ID-hash key and TLS; no root, no certificate, no
 * database. The data directory then waits for `ca import`
 * (CA_AWAITING_ISSUING_CERT until then). The request is copied to
 * `csrOut` last; the one in ca/ is what import and the docs name.
 */
async function initAwaitingIssuingCert(
  o: InitOptions & { offlineRoot: { csrOut: string } }, config: ServerConfig, keyStore: ReturnType<typeof openKeyStore>,
  st: ReturnType<typeof dataDirLayout>, staging: string, layout: ReturnType<typeof dataDirLayout>, now: Date,
): Promise<{ config: ServerConfig; rootSubject: null; issuingSubject: string; csrOut: string }> {
  const org = config.institution.name;
  const rdns: Array<[string, string]> = [["C", config.institution.country], ["O", org], ["CN", `${org} Issuing CA`]];
  // Encoded first: a name that cannot be encoded leaves no key behind.
  const subjectName = encodeName(rdns);
  let csr: Buffer;
  try {
    const signer = await keyStore.create(caKeyNames.issuing, o.algorithm);
    csr = await buildCsr(signer, subjectName);
  } finally {
    await keyStore.close?.();
  }
  const pem = derToPem(csr, "CERTIFICATE REQUEST");
  writeFileSync(st.issuingCsr, pem, { mode: 0o644 });
  writeFileSync(st.idKey, randomBytes(32), { mode: 0o600 });
  const tls = await selfSignedTls(now, new URL(config.publicUrl).hostname);
  writeFileSync(st.tlsKey, tls.key, { mode: 0o600 });
  writeFileSync(st.tlsCert, tls.cert, { mode: 0o644 });
  try {
    // Before anything is moved into place: a path that cannot be written leaves no data directory behind.
    writeFileSync(o.offlineRoot.csrOut, pem, { mode: 0o644 });
  } catch (cause) {
    throw new UkeyError("CLI_USAGE", { params: { reason: `--issuing-csr-out ${o.offlineRoot.csrOut} cannot be written (${(cause as NodeJS.ErrnoException).code ?? "error"})` }, cause });
  }
  for (const name of readdirSync(staging)) renameSync(join(staging, name), join(o.dataDir, name));
  writeFileSync(join(staging, "config.json"), JSON.stringify(config, null, 2) + "\n", { mode: 0o600 });
  renameSync(join(staging, "config.json"), layout.config);
  rmSync(staging, { recursive: true, force: true });
  return { config, rootSubject: null, issuingSubject: rdns.map(([t, v]) => `${t}=${v}`).join(", "), csrOut: o.offlineRoot.csrOut };
}

/**
 * A self-signed P-256 certificate for the HTTPS port, so that `start
 * --tls-port` works out of the box. It is not issued by our CA: the CA
 * signs only certificates the RA has decided. Operators replace it with
 * their own (docs/configuration.md).
 */
async function selfSignedTls(now: Date, host: string): Promise<{ key: string; cert: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
  const names = [{ type: "dns" as const, value: "localhost" }, { type: "ip" as const, value: "127.0.0.1" }];
  if (host !== "localhost" && !/^\d+\.\d+\.\d+\.\d+$/.test(host)) names.push({ type: "dns", value: host });
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString("hex").replace(/^[89a-f]/, "1"),
    name: `CN=${host}`,
    notBefore: now,
    notAfter: new Date(now.getTime() + 825 * 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ],
  }, webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1]);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  return { key: derToPem(pkcs8, "PRIVATE KEY"), cert: cert.toString("pem") };
}
