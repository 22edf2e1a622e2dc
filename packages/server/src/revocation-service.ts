import { buildCrl, type RevokedEntry } from "@ukey/ca";
import { UkeyError, type Clock } from "@ukey/policy";
import type { CertificateRecord, Store } from "@ukey/store";
import type { CaRuntime } from "./ca-runtime.js";
import type { OcspAnswer, OcspService } from "./ocsp/ocsp-service.js";

/** Revocations accepted from operators (RFC 5280 names; removeFromCRL and the CA ones are not). */
export const operatorRevocationReasons = [
  "unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold", "privilegeWithdrawn",
] as const;

interface CachedCrl {
  der: Buffer;
  thisUpdate: number;
  stamp: string;
}

type RevocationStore = Pick<Store, "transaction" | "certificates" | "crls">;

/**
 * Revocation and its publication: revoking a certificate (state and audit
 * in one transaction), the CRLs, and OCSP answers (OcspService). CRLs are cached per
 * instance and re-signed when a revocation is seen or the refresh interval
 * passes; the CRL number comes from the database, so several instances
 * never reuse one.
 */
export class RevocationService {
  private readonly crls = new Map<"issuing" | "root", CachedCrl>();

  constructor(private readonly deps: {
    store: RevocationStore;
    ca: CaRuntime;
    clock: Clock;
    crlValidityHours: number;
    crlRefreshMinutes: number;
    /** Pre-signed OCSP answers: re-signed here right after a revocation commits. */
    ocsp: Pick<OcspService, "answer" | "resign">;
  }) {}

  /**
   * Revokes a certificate and records it in the audit log.
   * @throws UkeyError REVOCATION_REASON_INVALID, CERT_NOT_FOUND, CERT_ALREADY_REVOKED.
   */
  async revoke(serial: string, reason: string, actor: string): Promise<CertificateRecord> {
    if (!(operatorRevocationReasons as readonly string[]).includes(reason)) {
      throw new UkeyError("REVOCATION_REASON_INVALID", { params: { reason } });
    }
    const at = this.deps.clock.now().getTime();
    const rec = await this.deps.store.transaction(async (r) => {
      const c = await r.certificates.get(serial);
      if (!c || c.status === "pending" || c.status === "abandoned") throw new UkeyError("CERT_NOT_FOUND", { params: { serial } });
      if (c.revokedAt !== null) {
        throw new UkeyError("CERT_ALREADY_REVOKED", { params: { serial, revokedAt: new Date(c.revokedAt).toISOString() } });
      }
      await r.certificates.revoke(serial, reason, at, reason === "superseded" ? "superseded" : "revoked");
      await r.audit.append({ at, actor, action: "certificate.revoked", subjectType: "certificate", subjectId: serial, data: { reason, previousStatus: c.status } });
      return { ...c, status: reason === "superseded" ? "superseded" as const : "revoked" as const, revocationReason: reason, revokedAt: at, updatedAt: at };
    });
    this.crls.delete("issuing");
    // After the commit: the revocation cleared the stored response in its own statement, so until this
    // lands (or if the process dies first) OCSP signs from the database, and the refresher re-signs it.
    await this.deps.ocsp.resign(serial);
    return rec;
  }

  /** The current CRL of our issuing CA (or of the root, signed by the root key), DER. */
  async crl(which: "issuing" | "root"): Promise<Buffer> {
    const now = this.deps.clock.now();
    const issuer = which === "issuing" ? this.deps.ca.issuing : this.deps.ca.root;
    const issuerKeyId = issuer.keyId.toString("hex");
    // One aggregate query decides whether the cached CRL is still complete; the full list is read
    // only when a new CRL is signed.
    const s = which === "issuing" ? await this.deps.store.certificates.revocationStamp(issuerKeyId) : { count: 0, latestAt: null };
    const stamp = `${s.count}@${s.latestAt ?? 0}`;
    const cached = this.crls.get(which);
    if (cached && cached.stamp === stamp && now.getTime() - cached.thisUpdate < this.deps.crlRefreshMinutes * 60_000) return cached.der;
    const revoked: RevokedEntry[] = [];
    if (which === "issuing") {
      for await (const r of this.deps.store.certificates.listRevoked(issuerKeyId)) {
        revoked.push({ serial: r.serial, revokedAt: new Date(r.revokedAt ?? 0), reason: r.revocationReason ?? "unspecified" });
      }
    }
    const signer = which === "issuing" ? this.deps.ca.issuingSigner : await this.deps.ca.loadRootSigner();
    const number = await this.deps.store.crls.nextNumber(issuerKeyId, now.getTime());
    const der = await buildCrl({
      issuer, signer, number, thisUpdate: now,
      nextUpdate: new Date(now.getTime() + this.deps.crlValidityHours * 3_600_000),
      revoked,
    });
    this.crls.set(which, { der, thisUpdate: now.getTime(), stamp });
    return der;
  }

  /** Answers an OCSP request (DER): see OcspService.answer. */
  ocsp(requestDer: Buffer): Promise<OcspAnswer> {
    return this.deps.ocsp.answer(requestDer);
  }
}
