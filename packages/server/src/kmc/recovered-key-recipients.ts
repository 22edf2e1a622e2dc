import { createHash, createPublicKey, verify as nodeVerify } from "node:crypto";
import { sm2PointOfSpki, sm2Verify } from "@ukey/ca";
import { UkeyError, recipientProofMessage } from "@ukey/policy";
import { envelopeRecipientOf } from "./key-envelope.js";

/**
 * One key the holder's agent generated on the token to receive one recovered
 * encryption key (an SKF container opens an envelope only into the container
 * of the key it is for, one encryption key per container), with its proof of
 * possession: a signature by that key over `recipientProofMessage` (@ukey/policy) of the CSR.
 */
export interface RecoveredKeyRecipient {
  /** DER SubjectPublicKeyInfo, SM2 or RSA. */
  spki: Buffer;
  /** SM2: DER SM2 signature with the standard ID 1234567812345678 (SM3 of Z‖M); RSA: PKCS#1 v1.5 with SHA-256. */
  signature: Buffer;
}

/**
 * Checks that there is one recipient per recovered key, each a distinct SM2
 * or RSA key other than the signing key, each proving possession over this
 * CSR. Nothing is recorded; the caller refuses the download when it throws.
 * @throws UkeyError KMC_RECOVERY_RECIPIENT_INVALID (the detail names the 1-based recipient), KEY_ALGORITHM_UNSUPPORTED.
 */
export function checkRecipients(recipients: readonly RecoveredKeyRecipient[], expected: number, csr: { der: Buffer; spki: Buffer }): void {
  const refuse = (index: number, detail: string): never => {
    throw new UkeyError("KMC_RECOVERY_RECIPIENT_INVALID", { params: { count: expected }, detail: index ? `recipient ${index}: ${detail}` : detail });
  };
  if (recipients.length !== expected) refuse(0, `${recipients.length} recipient key(s) for ${expected} recovered key(s)`);
  const message = Buffer.from(recipientProofMessage(csr.der, (b) => createHash("sha256").update(b).digest()));
  const seen = new Set<string>([csr.spki.toString("hex")]);
  recipients.forEach((r, i) => {
    const hex = r.spki.toString("hex");
    if (seen.has(hex)) refuse(i + 1, "the same key twice, or the signing key itself");
    seen.add(hex);
    const { algorithm } = envelopeRecipientOf(r.spki);
    let ok = false;
    try {
      ok = algorithm === "sm2"
        ? sm2Verify(message, r.signature, sm2PointOfSpki(r.spki))
        : nodeVerify("sha256", message, createPublicKey({ key: r.spki, format: "der", type: "spki" }), r.signature);
    } catch {
      ok = false;
    }
    if (!ok) refuse(i + 1, "its signature over the request does not verify");
  });
}
