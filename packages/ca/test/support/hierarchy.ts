import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { defaultProfile, type CertificateProfile } from "@ukey/policy";
import {
  CertificateBuilder, createCaHierarchy, FileKeyStore, caKeyNames, type CaKeyStore, type CaSigner, type CaUrls,
  type IssuerCertificate,
} from "../../src/index.js";
import { tempDir } from "./openssl.js";

/** The fixed clock of the ca tests. */
export const caNow = new Date("2025-03-01T08:00:00Z");

/** URLs written into test certificates. */
export const testUrls: CaUrls = {
  crl: "http://ca.example.test/crl/issuing.crl",
  ocsp: "http://ca.example.test/ocsp",
  caIssuers: "http://ca.example.test/ca/issuing.cer",
};

/** A root and issuing CA with their signers. */
export interface TestCa {
  root: IssuerCertificate;
  issuing: IssuerCertificate;
  rootSigner: CaSigner;
  issuingSigner: CaSigner;
  builder(profile?: CertificateProfile): CertificateBuilder;
  cleanup(): void;
}

/** Seconds since the epoch, for openssl's -attime. */
export const epoch = (d: Date): string => String(Math.floor(d.getTime() / 1000));

/** Creates a hierarchy in `keyStore` (or a fresh FileKeyStore in a temp dir). */
export async function makeTestCa(opts: { keyStore?: CaKeyStore; algorithm?: "p256" | "p384" | "rsa2048"; validityDays?: number } = {}): Promise<TestCa> {
  const tmp = opts.keyStore ? undefined : tempDir();
  const keyStore = opts.keyStore ?? new FileKeyStore(tmp!.dir, "test passphrase");
  const { root, issuing } = await createCaHierarchy({
    keyStore,
    algorithm: opts.algorithm ?? "p256",
    rootSubject: { rdns: [["C", "CN"], ["O", "Example Bank"], ["CN", "Example Bank Root CA"]] },
    issuingSubject: { rdns: [["C", "CN"], ["O", "Example Bank"], ["CN", "Example Bank Issuing CA 1"]] },
    now: new Date("2025-01-01T00:00:00Z"),
    ...(opts.validityDays ? { rootValidityDays: opts.validityDays, issuingValidityDays: opts.validityDays } : {}),
    issuingUrls: { crl: "http://ca.example.test/crl/root.crl", ocsp: "http://ca.example.test/ocsp", caIssuers: "http://ca.example.test/ca/root.cer" },
  });
  const rootSigner = await keyStore.load(caKeyNames.root);
  const issuingSigner = await keyStore.load(caKeyNames.issuing);
  return {
    root, issuing, rootSigner, issuingSigner,
    builder: (profile = defaultProfile) => new CertificateBuilder({ issuer: issuing, signer: issuingSigner, profile, urls: testUrls }),
    cleanup: () => tmp?.cleanup(),
  };
}

/** A subject key pair with its SPKI DER. */
export function subjectKey(kind: "p256" | "p384" | "rsa2048"): { privateKey: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = kind === "rsa2048"
    ? generateKeyPairSync("rsa", { modulusLength: 2048 })
    : generateKeyPairSync("ec", { namedCurve: kind === "p256" ? "P-256" : "P-384" });
  return { privateKey, spki: publicKey.export({ type: "spki", format: "der" }) };
}
