import { generateKeyPair } from "node:crypto";
import { promisify } from "node:util";
import { UkeyError } from "@ukey/policy";
import { buildCmsEnvelopedKey, buildEnvelopedKeyBlob, keyAlgorithmOfSpki, sm2GenerateKeyPair, sm2PointOfSpki, sm2Spki } from "@ukey/ca";

const generateRsa = promisify(generateKeyPair);

/**
 * How an encryption private key travels to the holder's key, by the family of
 * the holder's signing key (docs/envelopes.md):
 * - "gmt0016-enveloped-key-blob": SM2, the GM/T 0016 ENVELOPEDKEYBLOB;
 * - "cms-enveloped-data-v2": RSA, a CMS EnvelopedData (RFC 5652) of the
 *   PKCS#8, RSAES-OAEP (SHA-1) to the signing key, AES-256 key wrap with
 *   padding: what a PKCS#11 token unwraps (C_UnwrapKey) without the key
 *   ever being in the agent's memory in clear;
 * - "cms-enveloped-data": version 1 of the RSA form (RSAES-OAEP SHA-256,
 *   AES-256-CBC), no longer made: an order answer stored before may still
 *   carry it, and no agent imports it.
 */
export type EnvelopeFormat = "gmt0016-enveloped-key-blob" | "cms-enveloped-data-v2" | "cms-enveloped-data";

/** Every envelope format, for schemas. */
export const envelopeFormats: readonly EnvelopeFormat[] = ["gmt0016-enveloped-key-blob", "cms-enveloped-data-v2", "cms-enveloped-data"];

/** The key families the KMC makes encryption keys for (kmc_escrows.algorithm). */
export type EscrowAlgorithm = "sm2" | "rsa";

/**
 * An encryption key pair in the clear, as the KMC holds it for one call:
 * `secret` is the SM2 private scalar (32 octets) or the RSA PKCS#8 DER, what
 * the escrow wraps. Zero `secret` when done.
 */
export interface ClearEncryptionKey {
  algorithm: EscrowAlgorithm;
  /** DER SubjectPublicKeyInfo. */
  spki: Buffer;
  secret: Buffer;
}

/**
 * The family and, for RSA, the modulus size of a holder's signing key.
 * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED (ECDSA keys cannot receive an envelope; a malformed SPKI).
 */
export function envelopeRecipientOf(holderSigningSpki: Buffer): { algorithm: EscrowAlgorithm; bits?: number } {
  let algorithm: string;
  try {
    algorithm = keyAlgorithmOfSpki(holderSigningSpki);
  } catch (e) {
    throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "an encryption key envelope for a key that cannot be read" }, cause: e });
  }
  if (algorithm === "sm2") return { algorithm: "sm2" };
  const rsa = /^rsa([0-9]+)$/.exec(algorithm);
  if (rsa) return { algorithm: "rsa", bits: Number(rsa[1]) };
  throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: `an encryption key envelope for a ${algorithm} signing key (SM2 or RSA only)` } });
}

/**
 * The envelope format for a holder's signing key.
 * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED.
 */
export function envelopeFormatFor(holderSigningSpki: Buffer): EnvelopeFormat {
  return envelopeRecipientOf(holderSigningSpki).algorithm === "rsa" ? "cms-enveloped-data-v2" : "gmt0016-enveloped-key-blob";
}

/**
 * A fresh encryption key pair of the holder's signing key's family: SM2, or
 * RSA of the same modulus size (RSA generation runs off the event loop).
 * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED.
 */
export async function generateEncryptionKey(holderSigningSpki: Buffer): Promise<ClearEncryptionKey> {
  const r = envelopeRecipientOf(holderSigningSpki);
  if (r.algorithm === "sm2") {
    const pair = sm2GenerateKeyPair();
    return { algorithm: "sm2", spki: sm2Spki(pair.publicKey), secret: pair.privateKey };
  }
  const { publicKey, privateKey } = await generateRsa("rsa", { modulusLength: r.bits!, publicExponent: 0x10001 });
  return {
    algorithm: "rsa",
    spki: publicKey.export({ format: "der", type: "spki" }),
    secret: privateKey.export({ format: "der", type: "pkcs8" }),
  };
}

/**
 * `key` enveloped for the holder's signing key, in the format of its family.
 * @throws UkeyError KEY_ALGORITHM_UNSUPPORTED (the signing key is neither SM2 nor RSA, or of another family than `key`).
 */
export function envelopeKey(key: ClearEncryptionKey, holderSigningSpki: Buffer): { envelope: Buffer; envelopeFormat: EnvelopeFormat } {
  const r = envelopeRecipientOf(holderSigningSpki);
  if (r.algorithm !== key.algorithm) {
    throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: `an ${key.algorithm.toUpperCase()} encryption key enveloped for an ${r.algorithm.toUpperCase()} signing key` } });
  }
  if (key.algorithm === "sm2") {
    return { envelope: buildEnvelopedKeyBlob({ privateKey: key.secret, publicKey: sm2PointOfSpki(key.spki) }, sm2PointOfSpki(holderSigningSpki)), envelopeFormat: "gmt0016-enveloped-key-blob" };
  }
  return { envelope: buildCmsEnvelopedKey(key.secret, holderSigningSpki), envelopeFormat: "cms-enveloped-data-v2" };
}

/**
 * An escrow's algorithm column read back.
 * @throws UkeyError KMC_ESCROW_UNREADABLE (a family this KMC does not know; `keyId` names the master key).
 */
export function escrowAlgorithm(stored: string, keyId: string): EscrowAlgorithm {
  if (stored === "sm2" || stored === "rsa") return stored;
  throw new UkeyError("KMC_ESCROW_UNREADABLE", { params: { keyId }, detail: `an escrow of algorithm ${stored}` });
}
