import { verify as cryptoVerify } from "node:crypto";
import { UkeyError, type ErrorParams, type KeyAlgorithm } from "@ukey/policy";
import {
  certificateSpki, keyAlgorithmOfSpki, publicKeyFromSpki, sm2PointOfSpki, sm2Verify, verifyCsr, withRequestedSubject, type VerifiedCsr,
} from "@ukey/ca";

/**
 * Whether `signature` (DER ECDSA, PKCS#1 v1.5 for RSA, DER SM2Signature for
 * SM2) over `message` was made by the key of the certificate `certDer`.
 * ECDSA on P-384 is checked with SHA-384, SM2 as SM3withSM2 with the
 * standard distinguishing ID 1234567812345678 (what UKeys sign with), every
 * other key with SHA-256. A signature that cannot be
 * parsed is simply not valid; this never throws for bad input.
 */
export function possessionSignatureValid(certDer: Buffer, message: Buffer, signature: Buffer): boolean {
  try {
    // The key is read from the certificate's SPKI bytes alone: no certificate object, no PEM.
    const spki = certificateSpki(certDer);
    // A key this server would not issue for (an imported RSA-1024, say) can still prove possession.
    let alg: KeyAlgorithm | undefined;
    try {
      alg = keyAlgorithmOfSpki(spki);
    } catch {
      alg = undefined;
    }
    if (alg === "sm2") return sm2Verify(message, signature, sm2PointOfSpki(spki));
    return cryptoVerify(alg === "p384" ? "sha384" : "sha256", message, { key: publicKeyFromSpki(spki, alg), dsaEncoding: "der" }, signature);
  } catch {
    return false;
  }
}

/** What crosses the thread boundary for a verified CSR (its getter does not). */
export interface VerifiedCsrData {
  spki: Uint8Array;
  algorithm: VerifiedCsr["algorithm"];
  der: Uint8Array;
  requestedSubjectDer: Uint8Array;
}

/** verifyCsr, with the result as plain data. @throws what verifyCsr throws. */
export function verifyCsrData(csr: Buffer | string): VerifiedCsrData {
  const v = verifyCsr(csr);
  return { spki: v.spki, algorithm: v.algorithm, der: v.der, requestedSubjectDer: v.requestedSubjectDer };
}

/** A VerifiedCsr again from its data, with the subject rendered on first read as verifyCsr's is. */
export function verifiedCsrFrom(d: VerifiedCsrData): VerifiedCsr {
  return withRequestedSubject({ spki: asBuffer(d.spki), algorithm: d.algorithm, der: asBuffer(d.der), requestedSubjectDer: asBuffer(d.requestedSubjectDer) });
}

/** A Buffer over the same memory (structured clone turns Buffers into plain Uint8Arrays). */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** One check, as it crosses to the worker. */
export type SignatureJob =
  | { kind: "possession"; certDer: Uint8Array; message: Uint8Array; signature: Uint8Array }
  | { kind: "csr"; csr: Uint8Array | string };

/** A check's outcome, as it comes back: a value, or the catalogue code of the error it threw. */
export type SignatureOutcome =
  | { ok: true; value: boolean | VerifiedCsrData }
  | { ok: false; code: string; params: ErrorParams; detail?: string };

/** Runs one check, in the worker or on the calling thread alike, and gives its outcome as plain data. Never throws. */
export function runSignatureJob(job: SignatureJob): SignatureOutcome {
  try {
    if (job.kind === "possession") {
      return { ok: true, value: possessionSignatureValid(asBuffer(job.certDer), asBuffer(job.message), asBuffer(job.signature)) };
    }
    return { ok: true, value: verifyCsrData(typeof job.csr === "string" ? job.csr : asBuffer(job.csr)) };
  } catch (e) {
    if (e instanceof UkeyError) return { ok: false, code: e.code, params: e.params, detail: e.detail };
    return { ok: false, code: "INTERNAL", params: {}, detail: String(e) };
  }
}
