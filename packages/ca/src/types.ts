import type { CertificateProfile, KeyAlgorithm } from "@ukey/policy";

/**
 * A CA private key, wherever it lives (encrypted file, HSM). Narrow on
 * purpose: the CA never sees key material, only this.
 */
export interface CaSigner {
  readonly algorithm: KeyAlgorithm;
  /** DER SubjectPublicKeyInfo of the key. */
  readonly spki: Buffer;
  /** DER AlgorithmIdentifier of the signatures it makes (ecdsa-with-SHA256/384, sha256WithRSAEncryption). */
  readonly signatureAlgorithm: Buffer;
  /** Signs `data` (hashing included); returns the bytes that go into a signature BIT STRING (DER ECDSA-Sig-Value for EC). */
  sign(data: Buffer): Promise<Buffer>;
}

/** Where CA keys are created and loaded. */
export interface CaKeyStore {
  /** Creates a new key under `name` ("root", "issuing"); throws CA_ALREADY_INITIALISED if it exists. */
  create(name: string, algorithm: KeyAlgorithm): Promise<CaSigner>;
  /** Loads the key `name`; throws CA_PASSPHRASE_WRONG, HSM_* or CA_KEY_UNUSABLE. */
  load(name: string): Promise<CaSigner>;
}

/** A CA certificate with the parts issuance needs, parsed once. */
export interface IssuerCertificate {
  der: Buffer;
  /** DER of the subject Name (becomes the issuer Name of what it signs). */
  subjectName: Buffer;
  subjectDn: string;
  /** Subject key identifier (becomes the AKI of what it signs). */
  keyId: Buffer;
  /** DER SubjectPublicKeyInfo. */
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
}

/** URLs written into certificates; from configuration (publicBaseUrl). */
export interface CaUrls {
  /** CRL distribution point of certificates this issuer signs (when its CRL is not partitioned). */
  crl: string;
  /**
   * Partitioned CRLs: how many, and the URL of shard k (0..count-1). A certificate names the shard
   * of its serial (crlShardOf) instead of `crl`.
   */
  crlShards?: { count: number; url(shard: number): string; deltaUrl?(shard: number): string };
  /** Delta CRLs: the freshestCRL a certificate carries when its CRL is not partitioned (with shards: crlShards.deltaUrl). */
  freshestCrl?: string;
  ocsp: string;
  /** AIA caIssuers: where the issuer's certificate can be fetched. */
  caIssuers: string;
}

/** The subject of a certificate as the RA's record gives it. */
export interface SubjectSpec {
  /** RDNs in order, e.g. [["C","CN"],["O","Example Bank"],["CN","Zhang San"]]; types: C, ST, L, O, OU, CN, serialNumber, emailAddress, or a dotted OID. */
  rdns: Array<[type: string, value: string]>;
  /** SANs as "email:a@b", "dns:x", "uri:...", "ip:...". */
  sans?: string[];
}

/** What the CA needs to build one end-entity certificate. */
export interface IssuanceInput {
  /** Positive serial, at least 16 random bytes from a CSPRNG (see newSerial). */
  serial: Buffer;
  subject: SubjectSpec;
  /** DER SubjectPublicKeyInfo taken from a verified CSR. */
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  profile: CertificateProfile;
}

/** A CSR whose signature has been verified; only its public key is ever used. */
export interface VerifiedCsr {
  spki: Buffer;
  algorithm: KeyAlgorithm;
  /** Informational only: the CA never copies it into a certificate. Rendered on first read. */
  readonly requestedSubject: string;
  /** The DER Name the CSR asks for (0x30 0x00 when empty), to compare with the RA record's byte for byte. */
  requestedSubjectDer: Buffer;
  der: Buffer;
}

/** One revoked certificate as a CRL lists it. */
export interface RevokedEntry {
  serial: string; // hex
  revokedAt: Date;
  reason: string; // RFC 5280 reason name; "removeFromCRL" only in a delta CRL
}

/** What an OCSP response says about one certificate; `reason` is an RFC 5280 reason name. */
export type OcspCertStatus =
  | { status: "good" }
  | { status: "revoked"; revokedAt: Date; reason?: string }
  | { status: "unknown" };

/** One CertID of an OCSP request, decoded. */
export interface OcspCertId {
  hashAlgorithm: "sha1" | "sha256" | "sha384" | "sha512";
  issuerNameHash: Buffer;
  issuerKeyHash: Buffer;
  serial: string; // hex, same form as CertificateRecord.serial
  /** DER of the CertID, echoed in the response. */
  der: Buffer;
}

/** A decoded OCSP request: what is asked about, and the nonce to echo. */
export interface OcspRequestInfo {
  certIds: OcspCertId[];
  nonce?: Buffer;
}
