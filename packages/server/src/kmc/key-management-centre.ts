import { randomUUID } from "node:crypto";
import type { Clock } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import type { Repositories, Store } from "@ukey/store";
import type { KmcMasterKey } from "./kmc-master-key.js";
import { envelopeKey, envelopeRecipientOf, escrowAlgorithm, generateEncryptionKey, type EnvelopeFormat, type EscrowAlgorithm } from "./key-envelope.js";

/** What the RA asks the KMC for: an encryption key pair for `holderId`, delivered for the new signing key of its CSR. */
export interface EncryptionKeyRequest {
  holderId: string;
  /** DER SubjectPublicKeyInfo of the holder's new signing key (from the verified CSR): the envelope opens only with its private key. */
  holderSigningSpki: Buffer;
  /** Who asks, for the audit log ("holder:H1", "operator:alice", "cli"). */
  actor: string;
  /** The renewal or download order this is for, recorded in the audit entry. */
  orderId?: string;
}

/** The KMC's answer: the public key to certify, and the private key only inside its envelope. */
export interface EncryptionKeyIssued {
  escrowId: string;
  /** The signing key's family: SM2, or RSA of the signing key's size. */
  algorithm: EscrowAlgorithm;
  /** DER SubjectPublicKeyInfo of the encryption key pair: what the encryption certificate certifies. */
  spki: Buffer;
  /** For the holder's signing key (docs/envelopes.md): a GM/T 0016 ENVELOPEDKEYBLOB (SM2) or a CMS EnvelopedData (RSA). */
  envelope: Buffer;
  envelopeFormat: EnvelopeFormat;
}

/**
 * A key management centre as the RA sees it (after GM/T 0014's KMC
 * interface): it makes encryption key pairs, escrows them, and hands out
 * the private key only enveloped for a holder's key. An external KMC would
 * implement the same interface over its protocol.
 */
export interface KeyManagementCentre {
  /**
   * Generates an encryption key pair, escrows its private key and records
   * the escrow in the audit log, in one transaction; returns the public key
   * and the envelope. Throws KEY_ALGORITHM_UNSUPPORTED when the holder's
   * signing key is neither SM2 nor RSA (ECDSA keys cannot open an envelope), HOLDER_NOT_FOUND,
   * and the store's errors; nothing is kept when it throws.
   */
  issueEncryptionKey(req: EncryptionKeyRequest): Promise<EncryptionKeyIssued>;
  /**
   * `issueEncryptionKey` in two steps, so that the escrow commits in the
   * caller's transaction (a certificate pair's issuance intent): the key
   * pair made, wrapped and enveloped, nothing stored. The same throws as
   * issueEncryptionKey for the holder's key.
   */
  prepareEncryptionKey(req: EncryptionKeyRequest): Promise<PreparedEncryptionKey>;
  /** Stores a prepared escrow and its "kmc.escrowed" audit entry in the transaction `r`. Throws HOLDER_NOT_FOUND and the store's errors. */
  recordIn(r: Pick<Repositories, "kmcEscrows" | "audit">, prepared: PreparedEncryptionKey, at: number): Promise<void>;
  /**
   * The envelope of escrow `escrowId` once more, for the signing key it was
   * first delivered to (a two-code download whose answer was lost): not a
   * recovery onto another key, which needs dual control. Audited as
   * "kmc.re-enveloped". Throws KMC_ESCROW_UNREADABLE, REQUEST_INVALID (no
   * such escrow of this holder), KEY_ALGORITHM_UNSUPPORTED.
   */
  envelopeAgain(req: EncryptionKeyRequest & { escrowId: string }): Promise<Buffer>;
}

/** An encryption key made and enveloped but not yet escrowed (see prepareEncryptionKey). */
export interface PreparedEncryptionKey extends EncryptionKeyIssued {
  holderId: string;
  actor: string;
  orderId?: string;
  wrappedKey: Buffer;
  masterKeyId: string;
}

/** What LocalKmc needs: the store's transaction (for the escrow and its audit entry), the master key, the clock. */
export interface LocalKmcDeps {
  store: Pick<Store, "transaction">;
  masterKey: KmcMasterKey;
  clock: Clock;
}

/** The additional data bound into an escrow's wrapping: a wrapped key cannot be moved to another record. */
export function escrowAad(escrowId: string, holderId: string, spki: Buffer): Buffer {
  return Buffer.from(`ukey-kmc-escrow/1\n${escrowId}\n${holderId}\n${spki.toString("base64")}`, "utf8");
}

/**
 * The KMC inside the server: encryption key pairs from the CSPRNG (SM2 for an
 * SM2 signing key, RSA of the same size for an RSA one), private keys wrapped (AES-256-GCM, the record's id, holder and public key
 * as additional data) under the master key of its own file and passphrase
 * (kmc-master-key.ts), stored in kmc_escrows with an audit entry
 * "kmc.escrowed" in the same transaction. The clear private key exists only
 * in this call and is zeroed before it returns.
 */
export class LocalKmc implements KeyManagementCentre {
  constructor(private readonly deps: LocalKmcDeps) {}

  async issueEncryptionKey(req: EncryptionKeyRequest): Promise<EncryptionKeyIssued> {
    const prepared = await this.prepareEncryptionKey(req);
    await this.deps.store.transaction((r: Repositories) => this.recordIn(r, prepared, this.deps.clock.now().getTime()));
    const { escrowId, algorithm, spki, envelope, envelopeFormat } = prepared;
    return { escrowId, algorithm, spki, envelope, envelopeFormat };
  }

  async prepareEncryptionKey(req: EncryptionKeyRequest): Promise<PreparedEncryptionKey> {
    const key = await generateEncryptionKey(req.holderSigningSpki);
    try {
      const escrowId = randomUUID();
      const { envelope, envelopeFormat } = envelopeKey(key, req.holderSigningSpki);
      const wrappedKey = await this.deps.masterKey.wrap(key.secret, escrowAad(escrowId, req.holderId, key.spki));
      return {
        escrowId, algorithm: key.algorithm, spki: key.spki, envelope, envelopeFormat,
        holderId: req.holderId, actor: req.actor, ...(req.orderId ? { orderId: req.orderId } : {}), wrappedKey, masterKeyId: this.deps.masterKey.id,
      };
    } finally {
      key.secret.fill(0);
    }
  }

  async envelopeAgain(req: EncryptionKeyRequest & { escrowId: string }): Promise<Buffer> {
    envelopeRecipientOf(req.holderSigningSpki);
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r: Repositories) => {
      const e = await r.kmcEscrows.get(req.escrowId);
      if (!e || e.holderId !== req.holderId) throw new UkeyError("REQUEST_INVALID", { params: { reason: `no escrow ${req.escrowId} of holder ${req.holderId}` } });
      const algorithm = escrowAlgorithm(e.algorithm, this.deps.masterKey.id);
      const secret = await this.deps.masterKey.unwrap(e.wrappedKey, escrowAad(e.id, e.holderId, e.spki));
      try {
        const { envelope } = envelopeKey({ algorithm, spki: e.spki, secret }, req.holderSigningSpki);
        await r.audit.append({
          at, actor: req.actor, action: "kmc.re-enveloped", subjectType: "kmc-escrow", subjectId: e.id,
          data: { holderId: e.holderId, ...(req.orderId ? { orderId: req.orderId } : {}) },
        });
        return envelope;
      } finally {
        secret.fill(0);
      }
    });
  }

  async recordIn(r: Pick<Repositories, "kmcEscrows" | "audit">, p: PreparedEncryptionKey, at: number): Promise<void> {
    await r.kmcEscrows.insert({ id: p.escrowId, holderId: p.holderId, algorithm: p.algorithm, spki: p.spki, wrappedKey: p.wrappedKey, masterKeyId: p.masterKeyId, createdAt: at });
    await r.audit.append({
      at, actor: p.actor, action: "kmc.escrowed", subjectType: "kmc-escrow", subjectId: p.escrowId,
      data: { holderId: p.holderId, algorithm: p.algorithm, masterKeyId: p.masterKeyId, ...(p.orderId ? { orderId: p.orderId } : {}) },
    });
  }
}
