/** The crypto a caller brings (node:crypto in the server and the agent): SHA-256 of some bytes. */
export type Sha256 = (data: Uint8Array) => Uint8Array;

/** The label that opens every recipient proof, NUL included (docs/renewal-api.md, "recoveredKeyRecipients"). */
export const recipientProofLabel = "ukey-recovered-key-recipient\0";

/**
 * What each key that receives a recovered encryption key signs to prove the
 * holder's token holds it: the label "ukey-recovered-key-recipient", a NUL,
 * then the SHA-256 of the two-code download's CSR (DER), 61 octets in all.
 * The agent signs these bytes and the server checks them; this is their one
 * definition. The CSR's own signature proves the new signing key; this binds
 * each extra key to that same request, so that a public key copied from
 * someone else's request proves nothing, and a signature made for another
 * download does not verify for this one.
 * @throws Error when `sha256` does not answer 32 octets (a caller's mistake, not input).
 */
export function recipientProofMessage(csrDer: Uint8Array, sha256: Sha256): Uint8Array {
  const label = new TextEncoder().encode(recipientProofLabel);
  const digest = sha256(csrDer);
  if (digest.length !== 32) throw new Error("recipientProofMessage: sha256 must answer 32 octets");
  const out = new Uint8Array(label.length + digest.length);
  out.set(label, 0);
  out.set(digest, label.length);
  return out;
}
