import { join } from "node:path";

/** Where everything lives inside a data directory. */
export function dataDirLayout(dir: string) {
  return {
    dir,
    config: join(dir, "config.json"),
    caDir: join(dir, "ca"),
    rootCert: join(dir, "ca", "root.cer.pem"),
    issuingCert: join(dir, "ca", "issuing.cer.pem"),
    /** The issuing CA's certificate request, written by init --offline-root for the root's key ceremony. */
    issuingCsr: join(dir, "ca", "issuing.csr.pem"),
    /** The root's CRL signed at the offline root's ceremony (DER), served as /crl/root.crl. */
    rootCrl: join(dir, "ca", "root.crl"),
    idKey: join(dir, "secrets", "id-hmac.key"),
    tlsKey: join(dir, "tls", "server.key.pem"),
    tlsCert: join(dir, "tls", "server.cer.pem"),
    /** The key management centre's master key (its own passphrase, never the CA's). */
    kmcDir: join(dir, "kmc"),
    kmcMasterKey: join(dir, "kmc", "master-key.json"),
  } as const;
}
export type DataDirLayout = ReturnType<typeof dataDirLayout>;
