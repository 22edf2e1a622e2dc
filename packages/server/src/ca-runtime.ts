import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import {
  CertificateBuilder, FileKeyStore, Pkcs11KeyStore, caKeyNames, loadIssuerCertificate, newSerial, pemToDer, serialHex, signedBy, verifyCsr,
  type CaKeyStore, type CaSigner, type CaUrls, type IssuerCertificate, type KeyFileUpgrade, type SubjectSpec,
} from "@ukey/ca";
import { UkeyError, type CertificateProfile } from "@ukey/policy";
import type { CaBinding } from "@ukey/store";
import type { DataDirLayout } from "./data-dir.js";
import type { ServerConfig } from "./server-config.js";
import type { IssuingCa } from "./issuance-service.js";
import { readInstalledRootCrl, type CheckedRootCrl } from "./offline-root/ceremony-checks.js";

/** The URLs a certificate of the issuing CA carries, from publicUrl. */
export function leafUrls(publicUrl: string, crlShards = 1, deltaCrls = false): CaUrls {
  const base = publicUrl.replace(/\/+$/, "");
  return {
    crl: `${base}/crl/issuing.crl`, ocsp: `${base}/ocsp`, caIssuers: `${base}/ca/issuing.cer`,
    ...(deltaCrls ? { freshestCrl: issuingDeltaCrlUrl(base) } : {}),
    ...(crlShards > 1 ? {
      crlShards: {
        count: crlShards, url: (k: number) => issuingCrlShardUrl(base, k),
        ...(deltaCrls ? { deltaUrl: (k: number) => issuingDeltaCrlUrl(base, k) } : {}),
      },
    } : {}),
  };
}

/** Where shard k of the issuing CA's partitioned CRL is published (its certificates' distribution point). */
export function issuingCrlShardUrl(publicUrl: string, shard: number): string {
  return `${publicUrl.replace(/\/+$/, "")}/crl/issuing/${shard}.crl`;
}

/** Where the delta CRL of the issuing CA's complete CRL (or of its shard k) is published: its freshestCRL. */
export function issuingDeltaCrlUrl(publicUrl: string, shard?: number): string {
  const base = publicUrl.replace(/\/+$/, "");
  return shard === undefined ? `${base}/crl/issuing-delta.crl` : `${base}/crl/issuing/${shard}-delta.crl`;
}

/** The URLs the issuing CA's own certificate carries (its issuer is the root). */
export function issuingCaUrls(publicUrl: string): CaUrls {
  const base = publicUrl.replace(/\/+$/, "");
  return { crl: `${base}/crl/root.crl`, ocsp: `${base}/ocsp`, caIssuers: `${base}/ca/root.cer` };
}

/**
 * The issuing CA a data directory's database must serve: the key id and
 * certificate hash of `ca/issuing.cer.pem` (no key is needed to read them).
 * @throws UkeyError CA_NOT_INITIALISED, CA_AWAITING_ISSUING_CERT (init --offline-root, before ca import), PEM_MALFORMED, DER_MALFORMED.
 */
export function issuingCaBinding(layout: DataDirLayout): CaBinding {
  let pem: string;
  try {
    pem = readFileSync(layout.issuingCert, "utf8");
  } catch (cause) {
    if (existsSync(layout.issuingCsr)) throw new UkeyError("CA_AWAITING_ISSUING_CERT", { params: { dir: layout.dir }, cause });
    throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: layout.dir }, cause });
  }
  const issuing = loadIssuerCertificate(pemToDer(pem, "CERTIFICATE"));
  return { issuingKeyId: issuing.keyId.toString("hex"), issuingCertSha256: createHash("sha256").update(issuing.der).digest("hex") };
}

/** What happened to the CA key files at open: rewritten under the current protection, or left as they were and why. */
export interface KeyFileReport {
  upgraded: KeyFileUpgrade[];
  /** Files that should have been rewritten but could not be (a read-only or full volume): the reason, per file. */
  notUpgraded: Array<{ name: string; reason: string }>;
}

/** Secrets the key store needs, read from `*_FILE` paths by the caller. */
export interface CaSecrets {
  passphrase?: string;
  hsmPin?: string;
}

/**
 * Opens the key store the configuration names.
 * @throws UkeyError SECRET_FILE_REQUIRED, HSM_* .
 */
export function openKeyStore(config: ServerConfig, layout: DataDirLayout, secrets: CaSecrets): CaKeyStore & { close?(): Promise<void> | void } {
  const ks = config.ca.keyStore;
  if (ks.type === "file") {
    if (secrets.passphrase === undefined) throw new UkeyError("SECRET_FILE_REQUIRED", { params: { variable: "UKEY_CA_PASSPHRASE_FILE" } });
    return new FileKeyStore(layout.caDir, secrets.passphrase);
  }
  if (secrets.hsmPin === undefined) throw new UkeyError("SECRET_FILE_REQUIRED", { params: { variable: "UKEY_HSM_PIN_FILE" } });
  return new Pkcs11KeyStore({ module: ks.module, token: ks.token, pin: secrets.hsmPin, labelPrefix: ks.labelPrefix });
}

/**
 * The running CA: both CA certificates, the issuing key, and one
 * certificate builder per profile (its DER template is made once).
 */
export class CaRuntime implements IssuingCa {
  readonly issuerKeyId: string;
  readonly issuerDn: string;
  readonly issuerNotBefore: Date;
  readonly issuerNotAfter: Date;
  // Keyed by the profile object: the issuance service hands out the same object until the profile changes.
  private readonly builders = new WeakMap<CertificateProfile, CertificateBuilder>();
  private lastBuilder: CertificateBuilder | undefined;
  /** The root CRL the offline root's ceremony signed (ca.rootKey "offline"); undefined when the root key is here. */
  private offlineRootCrl: CheckedRootCrl | undefined;

  private constructor(
    readonly root: IssuerCertificate,
    readonly issuing: IssuerCertificate,
    readonly issuingSigner: CaSigner,
    private readonly keyStore: CaKeyStore & { close?(): Promise<void> | void },
    private readonly urls: CaUrls,
    /** The key files this open rewrote or could not rewrite (file key store); empty lists for an HSM. */
    readonly keyFiles: KeyFileReport,
    rootCrl: CheckedRootCrl | undefined,
  ) {
    this.offlineRootCrl = rootCrl;
    this.issuerKeyId = issuing.keyId.toString("hex");
    this.issuerDn = issuing.subjectDn;
    this.issuerNotBefore = issuing.notBefore;
    this.issuerNotAfter = issuing.notAfter;
  }

  /**
   * Loads the CA of a data directory. Key files of the file key store
   * under a weaker protection than the current one are rewritten (see
   * FileKeyStore.upgrade) once the issuing key has opened with the
   * passphrase; one that cannot be rewritten (read-only or full volume) is
   * used as it is and reported in `keyFiles`.
   * With an offline root (ca.rootKey "offline") the root CRL is read from
   * ca/root.crl and there is no root key to open or upgrade.
   * @throws UkeyError CA_NOT_INITIALISED, CA_PASSPHRASE_WRONG, CA_KEY_UNUSABLE, HSM_*, FILE_UNREADABLE, DER_MALFORMED, ROOT_CRL_WRONG_ISSUER (ca/root.crl).
   */
  static async open(config: ServerConfig, layout: DataDirLayout, secrets: CaSecrets): Promise<CaRuntime> {
    let rootPem: string, issuingPem: string;
    try {
      rootPem = readFileSync(layout.rootCert, "utf8");
      issuingPem = readFileSync(layout.issuingCert, "utf8");
    } catch (cause) {
      throw new UkeyError("CA_NOT_INITIALISED", { params: { dir: layout.dir }, cause });
    }
    const root = loadIssuerCertificate(pemToDer(rootPem, "CERTIFICATE"));
    const issuing = loadIssuerCertificate(pemToDer(issuingPem, "CERTIFICATE"));
    const offline = config.ca.rootKey === "offline";
    let rootCrl: CheckedRootCrl | undefined;
    if (offline) {
      try {
        rootCrl = readInstalledRootCrl(readFileSync(layout.rootCrl));
      } catch (cause) {
        if ((cause as UkeyError).code === "DER_MALFORMED") throw cause;
        throw new UkeyError("FILE_UNREADABLE", { params: { path: layout.rootCrl }, cause });
      }
      // Relying parties would reject a CRL the root did not sign; the server does not serve one.
      if (!signedBy(rootCrl.der, root.spki)) throw new UkeyError("ROOT_CRL_WRONG_ISSUER", { params: { reason: `${layout.rootCrl} does not verify with the root's key` } });
    }
    const keyStore = openKeyStore(config, layout, secrets);
    const signer = await keyStore.load("issuing");
    if (!signer.spki.equals(issuing.spki)) {
      throw new UkeyError("CA_KEY_UNUSABLE", { params: { path: layout.caDir }, detail: "issuing key does not match ca/issuing.cer.pem" });
    }
    const keyFiles: KeyFileReport = { upgraded: [], notUpgraded: [] };
    if (keyStore instanceof FileKeyStore) {
      for (const name of offline ? [caKeyNames.issuing] : [caKeyNames.root, caKeyNames.issuing]) {
        try {
          const done = await keyStore.upgrade(name);
          if (done) keyFiles.upgraded.push(done);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? "";
          if (!["EROFS", "EACCES", "EPERM", "ENOSPC", "EDQUOT"].includes(code)) throw e;
          keyFiles.notUpgraded.push({ name, reason: `${code}: ${(e as Error).message}` });
        }
      }
    }
    return new CaRuntime(root, issuing, signer, keyStore, leafUrls(config.publicUrl, config.ca.crlShards, config.ca.deltaCrl.enabled), keyFiles, rootCrl);
  }

  /**
   * The root key, loaded only when a root CRL must be signed.
   * @throws UkeyError ROOT_KEY_OFFLINE when the root is offline; what the key store's load throws.
   */
  loadRootSigner(): Promise<CaSigner> {
    if (this.offlineRootCrl) return Promise.reject(new UkeyError("ROOT_KEY_OFFLINE"));
    return this.keyStore.load("root");
  }

  /** The root CRL signed at the offline root's ceremony and installed with the data directory, or undefined when the root key is here. */
  installedRootCrl(): CheckedRootCrl | undefined {
    return this.offlineRootCrl;
  }

  /** Serves `crl` as the root CRL from now on (ca import-root-crl has checked and written it). */
  replaceRootCrl(crl: CheckedRootCrl): void {
    if (!this.offlineRootCrl) throw new UkeyError("INTERNAL", { detail: "a root CRL is installed only with an offline root" });
    this.offlineRootCrl = crl;
  }

  verifyCsr(csr: Buffer | string) {
    return verifyCsr(csr);
  }

  newSerial(): Buffer {
    return newSerial();
  }

  serialHex(serial: Buffer): string {
    return serialHex(serial);
  }

  subjectDn(subject: SubjectSpec): string {
    return formatDn(subject.rdns);
  }

  buildTbs(profile: CertificateProfile, input: Parameters<IssuingCa["buildTbs"]>[1]): Buffer {
    return this.builderFor(profile).buildTbs({ serial: input.serial, subject: input.subject, spki: input.spki, notBefore: input.notBefore, notAfter: input.notAfter, profile });
  }

  signTbs(tbs: Buffer): Promise<Buffer> {
    // Every builder signs with the same key and algorithm; any will do.
    if (!this.lastBuilder) throw new UkeyError("INTERNAL", { detail: "signTbs before buildTbs" });
    return this.lastBuilder.sign(tbs);
  }

  async close(): Promise<void> {
    await this.keyStore.close?.();
  }

  private builderFor(profile: CertificateProfile): CertificateBuilder {
    let builder = this.builders.get(profile);
    if (!builder) {
      builder = new CertificateBuilder({ issuer: this.issuing, signer: this.issuingSigner, profile, urls: this.urls });
      this.builders.set(profile, builder);
    }
    this.lastBuilder = builder;
    return builder;
  }
}

/** "C=CN, O=Example Bank, CN=Zhang San": openssl's one-line order, with RFC 4514 escaping of specials. */
export function formatDn(rdns: ReadonlyArray<readonly [string, string]>): string {
  return rdns.map(([t, v]) => `${t}=${v.replace(/([,+\\])/g, "\\$1")}`).join(", ");
}
