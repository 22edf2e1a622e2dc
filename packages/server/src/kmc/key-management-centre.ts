import { randomUUID } from "node:crypto";
import type { Clock } from "@ukey/policy";
import { UkeyError } from "@ukey/policy";
import { buildEnvelopedKeyBlob, keyAlgorithmOfSpki, sm2GenerateKeyPair, sm2PointOfSpki, sm2Spki } from "@ukey/ca";
import type { Repositories, Store } from "@ukey/store";
import type { KmcMasterKey } from "./kmc-master-key.js";

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
  algorithm: "sm2";
  /** DER SubjectPublicKeyInfo of the encryption key pair: what the encryption certificate certifies. */
  spki: Buffer;
  /** The GM/T 0016 ENVELOPEDKEYBLOB (docs/envelopes.md) for the holder's signing key. */
  envelope: Buffer;
  envelopeFormat: "gmt0016-enveloped-key-blob";
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
   * signing key is not SM2 (the envelope is an SM2 one), HOLDER_NOT_FOUND,
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
 * The KMC inside the server: SM2 encryption key pairs from the CSPRNG,
 * private keys wrapped (AES-256-GCM, the record's id, holder and public key
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
    let holderPoint: Buffer;
    try {
      if (keyAlgorithmOfSpki(req.holderSigningSpki) !== "sm2") throw new Error("not sm2");
      holderPoint = sm2PointOfSpki(req.holderSigningSpki);
    } catch (e) {
      throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "an encryption key envelope for a signing key that is not SM2" }, cause: e });
    }
    const pair = sm2GenerateKeyPair();
    try {
      const escrowId = randomUUID();
      const spki = sm2Spki(pair.publicKey);
      const envelope = buildEnvelopedKeyBlob(pair, holderPoint);
      const wrappedKey = await this.deps.masterKey.wrap(pair.privateKey, escrowAad(escrowId, req.holderId, spki));
      return {
        escrowId, algorithm: "sm2", spki, envelope, envelopeFormat: "gmt0016-enveloped-key-blob",
        holderId: req.holderId, actor: req.actor, ...(req.orderId ? { orderId: req.orderId } : {}), wrappedKey, masterKeyId: this.deps.masterKey.id,
      };
    } finally {
      pair.privateKey.fill(0);
    }
  }

  async envelopeAgain(req: EncryptionKeyRequest & { escrowId: string }): Promise<Buffer> {
    let holderPoint: Buffer;
    try {
      holderPoint = sm2PointOfSpki(req.holderSigningSpki);
    } catch (e) {
      throw new UkeyError("KEY_ALGORITHM_UNSUPPORTED", { params: { algorithm: "an encryption key envelope for a signing key that is not SM2" }, cause: e });
    }
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r: Repositories) => {
      const e = await r.kmcEscrows.get(req.escrowId);
      if (!e || e.holderId !== req.holderId) throw new UkeyError("REQUEST_INVALID", { params: { reason: `no escrow ${req.escrowId} of holder ${req.holderId}` } });
      const privateKey = await this.deps.masterKey.unwrap(e.wrappedKey, escrowAad(e.id, e.holderId, e.spki));
      try {
        const envelope = buildEnvelopedKeyBlob({ privateKey, publicKey: sm2PointOfSpki(e.spki) }, holderPoint);
        await r.audit.append({
          at, actor: req.actor, action: "kmc.re-enveloped", subjectType: "kmc-escrow", subjectId: e.id,
          data: { holderId: e.holderId, ...(req.orderId ? { orderId: req.orderId } : {}) },
        });
        return envelope;
      } finally {
        privateKey.fill(0);
      }
    });
  }

  async recordIn(r: Pick<Repositories, "kmcEscrows" | "audit">, p: PreparedEncryptionKey, at: number): Promise<void> {
    await r.kmcEscrows.insert({ id: p.escrowId, holderId: p.holderId, algorithm: "sm2", spki: p.spki, wrappedKey: p.wrappedKey, masterKeyId: p.masterKeyId, createdAt: at });
    await r.audit.append({
      at, actor: p.actor, action: "kmc.escrowed", subjectType: "kmc-escrow", subjectId: p.escrowId,
      data: { holderId: p.holderId, algorithm: "sm2", masterKeyId: p.masterKeyId, ...(p.orderId ? { orderId: p.orderId } : {}) },
    });
  }
}
