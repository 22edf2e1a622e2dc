import { createPublicKey, type KeyObject } from "node:crypto";
import { CertificationRequest, CertificationRequestInfo } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, Certificate, KeyUsage, KeyUsageFlags, Name, RelativeDistinguishedName, SubjectPublicKeyInfo,
  id_ce_keyUsage,
} from "@peculiar/asn1-x509";
import type { KeyAlgorithm } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import type { TokenCertificate } from "./key-store.js";
import { SM3_WITH_SM2_OID, sm2PointOfSpki } from "./sm2.js";

/** Short names of the attribute types the agent reads and writes in names. */
const attributeOids: Readonly<Record<string, string>> = {
  C: "2.5.4.6",
  ST: "2.5.4.8",
  L: "2.5.4.7",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  CN: "2.5.4.3",
  serialNumber: "2.5.4.5",
  emailAddress: "1.2.840.113549.1.9.1",
};
const shortNames: Record<string, string> = Object.fromEntries(Object.entries(attributeOids).map(([k, v]) => [v, k]));

const sigAlg = {
  p256: { oid: "1.2.840.10045.4.3.2", hash: "sha256", rawSize: 64 },
  p384: { oid: "1.2.840.10045.4.3.3", hash: "sha384", rawSize: 96 },
} as const;
const sha256WithRsa = "1.2.840.113549.1.1.11";

/** What the agent reads of a certificate: the TokenCertificate fields and the parts a PKCS#11 object carries. */
export interface CertificateFields {
  serialHex: string;
  subject: string;
  issuer: string;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;
  /** DER of the subject Name, issuer Name and serial INTEGER (CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER). */
  subjectDer: Buffer;
  issuerDer: Buffer;
  serialDer: Buffer;
}

/** Parses a DER X.509 certificate. Throws DER_MALFORMED. */
export function readCertificate(der: Uint8Array): CertificateFields {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(Buffer.from(der), Certificate);
  } catch (e) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "not an X.509 certificate" }, cause: e });
  }
  const tbs = cert.tbsCertificate;
  const serial = Buffer.from(tbs.serialNumber);
  return {
    // The server's canonical form (packages/ca serial.ts serialHex): minimal
    // even-length hex of the integer, so "0a1b" keeps its zero and "000a1b" is "0a1b".
    serialHex: serial.subarray(Math.min(serial.findIndex((b) => b !== 0) >>> 0, serial.length - 1)).toString("hex"),
    subject: nameToString(tbs.subject),
    issuer: nameToString(tbs.issuer),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    spki: Buffer.from(AsnConvert.serialize(tbs.subjectPublicKeyInfo)),
    subjectDer: Buffer.from(AsnConvert.serialize(tbs.subject)),
    issuerDer: Buffer.from(AsnConvert.serialize(tbs.issuer)),
    serialDer: integerDer(serial),
  };
}

/** Key usages that mean the key decrypts or agrees keys: data encrypted to it is lost with it. */
const encryptionUsages = KeyUsageFlags.keyEncipherment | KeyUsageFlags.dataEncipherment | KeyUsageFlags.keyAgreement
  | KeyUsageFlags.encipherOnly | KeyUsageFlags.decipherOnly;

/**
 * True when the certificate's key usage allows encryption or key agreement
 * (an encryption certificate of a pair, or one for both uses). A
 * certificate without the extension may be used for anything, so it
 * counts too; one that cannot be parsed does not (it is not the agent's).
 */
export function isEncryptionCertificate(der: Uint8Array): boolean {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(Buffer.from(der), Certificate);
  } catch {
    return false;
  }
  const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_keyUsage);
  if (!ext) return true;
  const usage = AsnConvert.parse(ext.extnValue.buffer, KeyUsage);
  return (usage.toNumber() & encryptionUsages) !== 0;
}

/** The TokenCertificate view of a certificate stored under `id`. */
export function tokenCertificate(der: Uint8Array, id: string, label: string, hasKey: boolean): TokenCertificate {
  const f = readCertificate(der);
  return {
    id, label, der: new Uint8Array(der), serialHex: f.serialHex, subject: f.subject, issuer: f.issuer,
    notBefore: f.notBefore, notAfter: f.notAfter, hasKey,
  };
}

function integerDer(magnitude: Buffer): Buffer {
  if (magnitude.length > 126) throw new UkeyError("DER_MALFORMED", { params: { reason: "serial number too long" } });
  return Buffer.concat([Buffer.from([0x02, magnitude.length]), magnitude]);
}

/** "C=CN, O=Example Bank, CN=Zhang San", in encoding order (as the CA package renders names). */
export function nameToString(name: Name): string {
  return name.map((rdn) => rdn.map((atv) => {
    const k = shortNames[atv.type] ?? atv.type;
    const v = atv.value.anyValue ? `#${Buffer.from(atv.value.anyValue).toString("hex")}` : atv.value.toString();
    return `${k}=${v.replace(/([,+\\])/g, "\\$1")}`;
  }).join("+")).join(", ");
}

/**
 * A Name from "CN=Zhang San, O=Example Bank" (RFC 4514 style, written in
 * encoding order; "\," escapes a comma) or OpenSSL's "/CN=Zhang San/O=Example
 * Bank"; "" is the empty Name. Country and serialNumber are
 * PrintableString, emailAddress IA5String, the rest UTF8String. Throws
 * REQUEST_INVALID for an unknown attribute type or an empty value.
 */
export function parseSubject(text: string): Name {
  const s = text.trim();
  if (s === "") return new Name();
  const parts = s.startsWith("/") ? s.slice(1).split("/") : s.split(/(?<!\\),/);
  return new Name(parts.map((part) => {
    const eq = part.indexOf("=");
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim().replace(/\\([,+\\])/g, "$1");
    const type = attributeOids[key] ?? (/^\d+(\.\d+)+$/.test(key) ? key : undefined);
    if (eq < 0 || !type) throw new UkeyError("REQUEST_INVALID", { params: { reason: `unknown attribute in subject: ${part.trim()}` } });
    if (value === "") throw new UkeyError("REQUEST_INVALID", { params: { reason: `empty ${key} in subject` } });
    if (type === attributeOids.C && !/^[A-Z]{2}$/.test(value)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `country must be two capital letters: ${value}` } });
    if (type === attributeOids.serialNumber && !/^[A-Za-z0-9 '()+,\-./:=?]+$/.test(value)) {
      throw new UkeyError("REQUEST_INVALID", { params: { reason: `serialNumber must be printable ASCII: ${value}` } });
    }
    if (type === attributeOids.emailAddress && !/^[\x20-\x7e]+$/.test(value)) throw new UkeyError("REQUEST_INVALID", { params: { reason: `emailAddress must be ASCII: ${value}` } });
    const v = type === attributeOids.C || type === attributeOids.serialNumber
      ? new AttributeValue({ printableString: value })
      : type === attributeOids.emailAddress ? new AttributeValue({ ia5String: value }) : new AttributeValue({ utf8String: value });
    return new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: v })]);
  }));
}

/** The key algorithm of a DER SubjectPublicKeyInfo. Throws KEY_ALGORITHM_UNSUPPORTED. */
export function keyAlgorithmOfSpki(spki: Uint8Array): KeyAlgorithm {
  // Node's crypto reads an SM2 key but tells neither its type nor its curve.
  if (sm2PointOfSpki(spki)) return "sm2";
  const key = publicKeyOf(spki);
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "ec" && d?.namedCurve === "prime256v1") return "p256";
  if (key.asymmetricKeyType === "ec" && d?.namedCurve === "secp384r1") return "p384";
  if (key.asymmetricKeyType === "rsa" && (d?.modulusLength === 2048 || d?.modulusLength === 3072 || d?.modulusLength === 4096)) {
    return `rsa${d.modulusLength}` as KeyAlgorithm;
  }
  throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", {
    params: { algorithm: `${key.asymmetricKeyType ?? "unknown"} ${d?.namedCurve ?? d?.modulusLength ?? ""}`.trim() },
  });
}

/** A public KeyObject from DER SubjectPublicKeyInfo. Throws DER_MALFORMED. */
export function publicKeyOf(spki: Uint8Array): KeyObject {
  try {
    return createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (e) {
    throw new UkeyError("DER_MALFORMED", { params: { reason: "not a SubjectPublicKeyInfo" }, cause: e });
  }
}

/** True when both SubjectPublicKeyInfos hold the same key, whatever their encoding details. */
export function samePublicKey(a: Uint8Array, b: Uint8Array): boolean {
  const sm2a = sm2PointOfSpki(a), sm2b = sm2PointOfSpki(b);
  if (sm2a || sm2b) return !!sm2a && !!sm2b && sm2a.equals(sm2b);
  try {
    const x = publicKeyOf(a).export({ format: "der", type: "spki" });
    const y = publicKeyOf(b).export({ format: "der", type: "spki" });
    return x.equals(y);
  } catch {
    return false;
  }
}

/**
 * How TokenSession.sign signs with a key: ECDSA on P-256 (SHA-256) or
 * P-384 (SHA-384), or RSA PKCS#1 v1.5 with SHA-256 for an RSA key of any
 * size (old certificates on keys in the field are RSA 1024, and proving
 * possession of them must still work). Throws KEY_ALGORITHM_UNSUPPORTED.
 */
export function signatureScheme(spki: Uint8Array): { kind: "ecdsa"; hash: "sha256" | "sha384"; rawSize: number } | { kind: "rsa"; bytes: number } {
  const key = publicKeyOf(spki);
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa" && d?.modulusLength) return { kind: "rsa", bytes: Math.ceil(d.modulusLength / 8) };
  if (key.asymmetricKeyType === "ec" && d?.namedCurve === "prime256v1") return { kind: "ecdsa", ...sigAlg.p256 };
  if (key.asymmetricKeyType === "ec" && d?.namedCurve === "secp384r1") return { kind: "ecdsa", ...sigAlg.p384 };
  throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: `${key.asymmetricKeyType ?? "unknown"} ${d?.namedCurve ?? ""}`.trim() } });
}

/** ECDSA-Sig-Value (DER) from the raw r||s a PKCS#11 CKM_ECDSA signature gives. */
export function ecdsaRawToDer(raw: Uint8Array): Buffer {
  const half = raw.length / 2;
  const int = (v: Uint8Array): Buffer => {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    const m = Buffer.from(v.subarray(i));
    const body = m[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m;
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const body = Buffer.concat([int(raw.subarray(0, half)), int(raw.subarray(half))]);
  const len = body.length < 0x80 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return Buffer.concat([Buffer.from([0x30]), len, body]);
}

/**
 * A PKCS#10 request (PEM) for the key `spki`, built with the asn1-csr
 * schemas; `sign` signs the DER CertificationRequestInfo the way
 * TokenSession.sign does (ECDSA DER signature, RSA PKCS#1 v1.5 SHA-256, or
 * SM3withSM2 over SM3(Z || info) with the standard ID for an SM2 key).
 */
export async function buildCsr(spki: Uint8Array, subject: string, sign: (data: Buffer) => Promise<Uint8Array>): Promise<string> {
  const algorithm = keyAlgorithmOfSpki(spki);
  const ec = algorithm === "p256" || algorithm === "p384" ? sigAlg[algorithm] : undefined;
  const info = new CertificationRequestInfo({
    version: 0,
    subject: parseSubject(subject),
    subjectPKInfo: AsnConvert.parse(Buffer.from(spki), SubjectPublicKeyInfo),
  });
  const infoDer = Buffer.from(AsnConvert.serialize(info));
  const signature = await sign(infoDer);
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: ec
      ? new AlgorithmIdentifier({ algorithm: ec.oid })
      : algorithm === "sm2"
        ? new AlgorithmIdentifier({ algorithm: SM3_WITH_SM2_OID })
        : new AlgorithmIdentifier({ algorithm: sha256WithRsa, parameters: null }),
    signature: new Uint8Array(signature).buffer,
  });
  const der = Buffer.from(AsnConvert.serialize(csr));
  const b64 = der.toString("base64").replace(/.{1,64}/g, "$&\n");
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}-----END CERTIFICATE REQUEST-----\n`;
}
