import { buildCrl, crlShardRange, type RevokedEntry } from "@ukey/ca";
import { UkeyError, type Clock } from "@ukey/policy";
import type { CertificateRecord, Repositories, Store } from "@ukey/store";
import { issuingCrlShardUrl, issuingDeltaCrlUrl, type CaRuntime } from "./ca-runtime.js";
import type { OcspAnswer, OcspService } from "./ocsp/ocsp-service.js";

/** Revocations accepted from operators (RFC 5280 names; removeFromCRL and the CA ones are not). */
export const operatorRevocationReasons = [
  "unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold", "privilegeWithdrawn",
] as const;

/** The other half of the signing + encryption pair `serial` belongs to, if it is one. */
async function pairPartner(r: Pick<Repositories, "certificates" | "certificatePairs">, serial: string): Promise<CertificateRecord | undefined> {
  const p = (await r.certificatePairs.getBySigning(serial)) ?? (await r.certificatePairs.getByEncryption(serial));
  if (!p) return undefined;
  return r.certificates.get(p.signingSerial === serial ? p.encryptionSerial : p.signingSerial);
}

interface CachedCrl {
  der: Buffer;
  thisUpdate: number;
  stamp: string;
  number: number;
}

type RevocationStore = Pick<Store, "transaction" | "certificates" | "crls">;

/**
 * A delta CRL lists the changes from this long before its base's thisUpdate, not from that instant: a
 * revocation timed just before the base was read but committed just after it (or timed by another
 * instance's clock) is then still listed. Listing a change the base already holds is harmless.
 */
export const DELTA_CRL_OVERLAP_MS = 10 * 60_000;

/**
 * The CRL routes' Cache-Control max-age (app.ts). A delta is re-signed this long before its nextUpdate,
 * so that a copy an HTTP cache keeps for that long never outlives it.
 */
const CRL_HTTP_MAX_AGE_MS = 300_000;

/**
 * Revocation and its publication: revoking a certificate (state and audit
 * in one transaction), the CRLs, and OCSP answers (OcspService). CRLs are cached per
 * instance and re-signed when a revocation is seen or the refresh interval
 * passes; the CRL number comes from the database, so several instances
 * never reuse one.
 */
export class RevocationService {
  private readonly crls = new Map<string, CachedCrl>();

  constructor(private readonly deps: {
    store: RevocationStore;
    ca: CaRuntime;
    clock: Clock;
    crlValidityHours: number;
    crlRefreshMinutes: number;
    /** Shards of the issuing CA's partitioned CRL (1: not partitioned) and the base URL they are published under. */
    crlShards?: { count: number; publicUrl: string };
    /**
     * Delta CRLs on (ca.deltaCrl): a delta's validity in minutes (it is re-signed 5 minutes before), and the base URL its
     * complete CRLs' freshestCRL points under. Complete CRLs are then
     * re-signed only every crlRefreshMinutes; the deltas carry each change at once.
     */
    deltaCrl?: { everyMinutes: number; publicUrl: string };
    /** Pre-signed OCSP answers: re-signed here right after a revocation commits. */
    ocsp: Pick<OcspService, "answer" | "resign">;
  }) {}

  /**
   * Revokes a certificate and records it in the audit log. A signing + encryption pair is one
   * certificate to its holder (issued, renewed and superseded together): revoking or holding either
   * half does the same to the other in the same transaction, each half audited, the other's entry
   * naming the serial asked for (`pairOf`). A half already revoked is left as it is.
   * @throws UkeyError REVOCATION_REASON_INVALID, CERT_NOT_FOUND, CERT_ALREADY_REVOKED.
   */
  async revoke(serial: string, reason: string, actor: string): Promise<CertificateRecord> {
    if (!(operatorRevocationReasons as readonly string[]).includes(reason)) {
      throw new UkeyError("REVOCATION_REASON_INVALID", { params: { reason } });
    }
    const at = this.deps.clock.now().getTime();
    const status = reason === "superseded" ? "superseded" as const : "revoked" as const;
    const { rec, partner } = await this.deps.store.transaction(async (r) => {
      const c = await r.certificates.get(serial);
      if (!c || c.status === "pending" || c.status === "abandoned") throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
      if (c.revokedAt !== null) {
        throw new UkeyError("CERT_ALREADY_REVOKED", { params: { serial, revokedAt: new Date(c.revokedAt).toISOString() } });
      }
      await r.certificates.revoke(serial, reason, at, status);
      await r.audit.append({ at, actor, action: "certificate.revoked", subjectType: "certificate", subjectId: serial, data: { reason, previousStatus: c.status } });
      const other = await pairPartner(r, serial);
      let partner: string | undefined;
      if (other && other.revokedAt === null && other.status !== "pending" && other.status !== "abandoned") {
        await r.certificates.revoke(other.serial, reason, at, status);
        await r.audit.append({ at, actor, action: "certificate.revoked", subjectType: "certificate", subjectId: other.serial, data: { reason, previousStatus: other.status, pairOf: serial } });
        partner = other.serial;
      }
      return { rec: { ...c, status, revocationReason: reason, revokedAt: at, updatedAt: at }, partner };
    });
    this.forgetIssuingCrls();
    // After the commit: the revocation cleared the stored response in its own statement, so until this
    // lands (or if the process dies first) OCSP signs from the database, and the refresher re-signs it.
    await this.deps.ocsp.resign(serial);
    if (partner) await this.deps.ocsp.resign(partner);
    return rec;
  }

  /**
   * Lifts a hold (seed 003's 冻结, RFC 5280 certificateHold): the certificate is active again, the
   * next complete CRL leaves it out, the next delta CRL (when they are on) lists it as removeFromCRL,
   * and its OCSP response is re-signed `good` right after the commit. Audited as certificate.hold-released.
   * @throws UkeyError CERT_NOT_FOUND, CERT_NOT_ON_HOLD (nothing changed).
   */
  async releaseHold(serial: string, actor: string): Promise<CertificateRecord> {
    const at = this.deps.clock.now().getTime();
    const rec = await this.deps.store.transaction(async (r) => {
      const c = await r.certificates.get(serial);
      if (!c || c.status === "pending" || c.status === "abandoned") throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
      if (!(await r.certificates.releaseHold(serial, at))) throw new UkeyError("CERT_NOT_ON_HOLD", { params: { serial } });
      await r.audit.append({
        at, actor, action: "certificate.hold-released", subjectType: "certificate", subjectId: serial,
        data: { heldAt: c.revokedAt },
      });
      // The other half of a pair was held with it: lifted with it.
      const other = await pairPartner(r, serial);
      let partner: string | undefined;
      if (other && other.revocationReason === "certificateHold" && (await r.certificates.releaseHold(other.serial, at))) {
        await r.audit.append({
          at, actor, action: "certificate.hold-released", subjectType: "certificate", subjectId: other.serial,
          data: { heldAt: other.revokedAt, pairOf: serial },
        });
        partner = other.serial;
      }
      return { rec: { ...c, status: "active" as const, revocationReason: null, revokedAt: null, updatedAt: at }, partner };
    });
    this.forgetIssuingCrls();
    await this.deps.ocsp.resign(serial);
    if (rec.partner) await this.deps.ocsp.resign(rec.partner);
    return rec.rec;
  }

  /**
   * Every cached issuing CRL (whole or a shard) after a change this instance made: each one checks its own
   * stamp anyway. With delta CRLs only the deltas: the complete CRLs they name stay until their refresh.
   */
  private forgetIssuingCrls(): void {
    const deltas = this.deps.deltaCrl !== undefined;
    for (const k of [...this.crls.keys()]) if (k !== "root" && (!deltas || k.startsWith("delta:"))) this.crls.delete(k);
  }

  /** The current CRL of our issuing CA (or of the root, signed by the root key), DER. */
  async crl(which: "issuing" | "root"): Promise<Buffer> {
    return (await this.signedCrl(which)).der;
  }

  /**
   * The delta CRL of the issuing CA's complete CRL (or of its shard `shard`), DER: RFC 5280 5.2.4, with the
   * critical deltaCRLIndicator naming the complete CRL this instance serves, its own number from that CRL's
   * sequence, the same issuingDistributionPoint, and an entry for each certificate revoked or held since that
   * CRL (removeFromCRL for a hold lifted). Only the rows changed since the base are read.
   * @throws UkeyError ROUTE_NOT_FOUND when delta CRLs are off, or there is no such shard.
   */
  async deltaCrl(shard?: number): Promise<Buffer> {
    const minutes = this.deps.deltaCrl?.everyMinutes;
    const shards = this.deps.crlShards;
    if (minutes === undefined) throw new UkeyError("ROUTE_NOT_FOUND");
    if (shard !== undefined && (!shards || shards.count <= 1 || !Number.isInteger(shard) || shard < 0 || shard >= shards.count)) {
      throw new UkeyError("ROUTE_NOT_FOUND");
    }
    const base = await this.signedCrl("issuing", shard);
    const now = this.deps.clock.now();
    const issuer = this.deps.ca.issuing;
    const issuerKeyId = issuer.keyId.toString("hex");
    const range = shard === undefined ? undefined : crlShardRange(shard, shards!.count);
    const since = base.thisUpdate - DELTA_CRL_OVERLAP_MS;
    const s = await this.deps.store.certificates.revocationChangeStamp(issuerKeyId, since, range);
    const stamp = `${base.number}:${s.count}@${s.latestAt ?? 0}`;
    const key = `delta:${shard === undefined ? "issuing" : `issuing/${shard}`}`;
    const cached = this.crls.get(key);
    if (cached && cached.stamp === stamp && now.getTime() - cached.thisUpdate < minutes * 60_000 - CRL_HTTP_MAX_AGE_MS) return cached.der;
    const store = this.deps.store;
    async function* changes(): AsyncIterable<RevokedEntry> {
      for await (const r of store.certificates.listRevocationChanges(issuerKeyId, since, range)) {
        yield r.revokedAt === null
          ? { serial: r.serial, revokedAt: new Date(r.changedAt), reason: "removeFromCRL" }
          : { serial: r.serial, revokedAt: new Date(r.revokedAt), reason: r.revocationReason ?? "unspecified" };
      }
    }
    // RFC 5280 5.2.4: a delta and its complete CRL share one sequence of numbers.
    const number = await this.deps.store.crls.nextNumber(shard === undefined ? issuerKeyId : `${issuerKeyId}/${shard}`, now.getTime());
    const der = await buildCrl({
      issuer, signer: this.deps.ca.issuingSigner, number, deltaOf: base.number, thisUpdate: now,
      nextUpdate: new Date(now.getTime() + minutes * 60_000),
      revoked: changes(),
      ...(shard === undefined ? {} : { distributionPoint: issuingCrlShardUrl(shards!.publicUrl, shard) }),
    });
    this.crls.set(key, { der, thisUpdate: now.getTime(), stamp, number });
    return der;
  }

  /**
   * Shard `shard` of the issuing CA's partitioned CRL, DER: the revoked certificates whose serials
   * fall in that shard, with the shard's URL as its issuingDistributionPoint and a CRL number of its own.
   * @throws UkeyError ROUTE_NOT_FOUND when the CRL is not partitioned or there is no such shard.
   */
  async crlShard(shard: number): Promise<Buffer> {
    const shards = this.deps.crlShards;
    if (!shards || shards.count <= 1 || !Number.isInteger(shard) || shard < 0 || shard >= shards.count) throw new UkeyError("ROUTE_NOT_FOUND");
    return (await this.signedCrl("issuing", shard)).der;
  }

  private async signedCrl(which: "issuing" | "root", shard?: number): Promise<CachedCrl> {
    // An offline root's CRL was signed at its ceremony: served as installed, never signed here.
    const installed = which === "root" ? this.deps.ca.installedRootCrl() : undefined;
    if (installed) return { der: installed.der, thisUpdate: 0, stamp: "", number: 0 };
    const now = this.deps.clock.now();
    const issuer = which === "issuing" ? this.deps.ca.issuing : this.deps.ca.root;
    const issuerKeyId = issuer.keyId.toString("hex");
    const key = shard === undefined ? which : `issuing/${shard}`;
    const range = shard === undefined ? undefined : crlShardRange(shard, this.deps.crlShards!.count);
    // One aggregate query decides whether the cached CRL is still complete; the entries are read
    // only when a new CRL is signed, streamed from the database in keyset pages into the encoder.
    const s = which === "issuing" ? await this.deps.store.certificates.revocationStamp(issuerKeyId, range) : { count: 0, latestAt: null };
    const stamp = `${s.count}@${s.latestAt ?? 0}`;
    const cached = this.crls.get(key);
    // With delta CRLs the complete issuing CRL is kept until its refresh: its deltas carry the changes.
    const deltas = which === "issuing" && this.deps.deltaCrl !== undefined;
    const fresh = cached && now.getTime() - cached.thisUpdate < this.deps.crlRefreshMinutes * 60_000;
    if (fresh && (deltas || cached.stamp === stamp)) return cached;
    const store = this.deps.store;
    async function* revoked(): AsyncIterable<RevokedEntry> {
      if (which !== "issuing") return;
      for await (const r of store.certificates.listRevoked(issuerKeyId, range)) {
        yield { serial: r.serial, revokedAt: new Date(r.revokedAt ?? 0), reason: r.revocationReason ?? "unspecified" };
      }
    }
    const signer = which === "issuing" ? this.deps.ca.issuingSigner : await this.deps.ca.loadRootSigner();
    // Each shard is its own CRL scope (RFC 5280 5.2.3): its numbers are its own sequence.
    const number = await this.deps.store.crls.nextNumber(shard === undefined ? issuerKeyId : `${issuerKeyId}/${shard}`, now.getTime());
    const der = await buildCrl({
      issuer, signer, number, thisUpdate: now,
      nextUpdate: new Date(now.getTime() + this.deps.crlValidityHours * 3_600_000),
      revoked: revoked(),
      ...(shard === undefined ? {} : { distributionPoint: issuingCrlShardUrl(this.deps.crlShards!.publicUrl, shard) }),
      ...(deltas ? { freshestCrl: issuingDeltaCrlUrl(this.deps.deltaCrl!.publicUrl, shard) } : {}),
    });
    const signed = { der, thisUpdate: now.getTime(), stamp, number };
    this.crls.set(key, signed);
    return signed;
  }

  /** Answers an OCSP request (DER): see OcspService.answer. */
  ocsp(requestDer: Buffer): Promise<OcspAnswer> {
    return this.deps.ocsp.answer(requestDer);
  }
}
