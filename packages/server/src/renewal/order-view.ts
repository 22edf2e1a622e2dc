import type { EnvelopeFormat } from "../kmc/key-envelope.js";
import type { OrderState, RenewalOrderRecord } from "@ukey/store";
import type { PossessionSigner, StoredCredential } from "./possession.js";

/** The steps of a renewal, in the order the holder does them. */
export type OrderStep = "possession" | "id-number" | "one-time-code" | "step-up" | "csr" | "install" | "complete";

/** What an order keeps in its `data` column. */
export interface OrderData {
  requirements: { idNumber: boolean; oneTimeCode: "sms" | "email" | null; stepUp: boolean };
  /** A pair profile: the escrow of the encryption key issued with the CSR, and its envelope for the CSR's key (base64; only that key opens it). */
  pair?: { escrowId: string; envelope: string; envelopeFormat: EnvelopeFormat };
  done: Partial<Record<"possession" | "idNumber" | "oneTimeCode" | "stepUp", number>>;
  /** The SHA-256 of the order credential the last proof of possession gave, and its expiry. */
  credential?: StoredCredential;
  /** Nonces of challenges that proved possession, with their expiry: each proves once. */
  usedChallenges?: Record<string, number>;
  idAttempts: number;
  code?: { hash: string; expiresAt: number; sentAt: number; attempts: number; to: string; used: boolean };
  stepUp?: { tokenHash: string; expiresAt: number };
  csrSpkiSha256?: string;
  failure?: string;
}

/** States in which an order has ended; nothing but a read is left to do. */
export const closedOrderStates: ReadonlySet<OrderState> = new Set(["completed", "failed", "cancelled", "expired"]);

/** What the key's holder (who proved possession) sees of an order. */
export interface OrderView {
  id: string;
  state: OrderState;
  channel: string;
  nextStep: OrderStep | null;
  certificate: { serial: string; certId: string; subject: string; notAfter: string };
  requirements: OrderData["requirements"] & { possession: true };
  done: string[];
  /** The subject the new certificate will have; a CSR must ask for this or for nothing. */
  subject: string;
  /** The type of ID on record (resident-id, passport ...), when the ID number or step-up is asked: the number alone is asked of the holder. */
  idType?: string;
  keyAlgorithms: readonly string[];
  codeSentTo?: string;
  codeResendAt?: string;
  newCertificate?: { serial: string; certId: string; notBefore: string; notAfter: string; pem: string; chainPem: string };
  /**
   * A pair profile's encryption certificate (beside newCertificate, the
   * signing one) and the envelope of its private key for the new signing
   * key: `format` "gmt0016-enveloped-key-blob" (SM2) or "cms-enveloped-data-v2"
   * (RSA; "cms-enveloped-data" in an answer stored before version 2), docs/envelopes.md; `value` base64.
   */
  encryptionCertificate?: { serial: string; certId: string; notBefore: string; notAfter: string; pem: string };
  envelope?: { format: EnvelopeFormat; value: string };
  failure?: string;
  /** A failed order: how many wrong answers ended it, and until when the certificate's online renewal rests (ISO time). */
  failedAttempts?: number;
  failedUntil?: string;
}

/** The view with the credential a proof of possession gave (none for an order that has ended). */
export interface ProvenOrderView extends OrderView {
  credential?: { token: string; expiresAt: string };
}

/**
 * What anybody who names an order (or a certificate's serial) may learn: that
 * it exists, whether it is open, and what proof of possession it takes.
 * Nothing here acts on the order, names its holder or shows its content.
 */
export interface PossessionChallengeView {
  id: string;
  open: boolean;
  /** The serial (hex) of the certificate whose key signs. */
  certificateSerial: string;
  /** Which keys may sign now: the certificate's, and the new certificate's once the order issued one. */
  signers: PossessionSigner[];
  /** Send `value` back with the signature; it is valid until `expiresAt` and proves once. */
  challenge: { value: string; expiresAt: string };
  /** base64 of the exact bytes to sign (possessionMessage). */
  message: string;
}

/** The answer to starting (or resuming) a renewal: the order's id and the proof it takes, nothing more. */
export interface OrderStarted extends PossessionChallengeView {
  /** True when the certificate already had this open order. */
  resumed: boolean;
  nextStep: "possession";
}

/** Whether every verification the order asks for is done. */
export function isVerified(d: OrderData): boolean {
  return d.done.possession !== undefined
    && (!d.requirements.idNumber || d.done.idNumber !== undefined)
    && (!d.requirements.oneTimeCode || d.done.oneTimeCode !== undefined)
    && (!d.requirements.stepUp || d.done.stepUp !== undefined);
}

/** What the holder does next on an order, or null when nothing is left. */
export function nextStep(o: RenewalOrderRecord): OrderStep | null {
  const d = o.data as unknown as OrderData;
  switch (o.state) {
    case "created":
      if (d.done.possession === undefined) return "possession";
      if (d.requirements.stepUp && d.done.stepUp === undefined) return "step-up";
      if (d.requirements.idNumber && d.done.idNumber === undefined) return "id-number";
      if (d.requirements.oneTimeCode && d.done.oneTimeCode === undefined) return "one-time-code";
      return "csr";
    case "verified":
    case "key-submitted":
      return "csr";
    case "issued":
      return "install";
    case "installed":
      return "complete";
    default:
      return null;
  }
}

/** An order record in a new state (written out field by field: object spreads cost more on this path). */
export function orderAfter(o: RenewalOrderRecord, state: OrderState, updatedAt: number, patch: { newSerial?: string; data?: Record<string, unknown> } = {}): RenewalOrderRecord {
  return {
    id: o.id, certificateSerial: o.certificateSerial, holderId: o.holderId, profileId: o.profileId, state, channel: o.channel,
    newSerial: patch.newSerial ?? o.newSerial, data: patch.data ?? o.data, createdAt: o.createdAt, updatedAt,
  };
}
