import { createHash } from "node:crypto";
import { UkeyError, isUkeyError, pairViewsOf, validityFor, type Clock, type CertificateProfile } from "@ukey/policy";
import type { AuditEntryInput, CertificateRecord, HolderRecord, Repositories, Store } from "@ukey/store";
import type { SubjectSpec, VerifiedCsr } from "@ukey/ca";
import { ProfileCache } from "./profile-cache.js";
import type { StoredOcspResponse } from "@ukey/store";
import type { OcspService } from "./ocsp/ocsp-service.js";

/** A signed certificate, with its first OCSP response when one was signed beside it. */
interface Signed {
  der: Buffer;
  ocsp?: StoredOcspResponse;
  /** A pair's encryption certificate. */
  companion?: { der: Buffer; ocsp?: StoredOcspResponse };
}

/** What the issuance service needs of the CA: build a TBS, sign it. */
export interface IssuingCa {
  readonly issuerKeyId: string;
  readonly issuerDn: string;
  readonly issuerNotBefore: Date;
  readonly issuerNotAfter: Date;
  verifyCsr(csr: Buffer | string): VerifiedCsr;
  newSerial(): Buffer;
  serialHex(serial: Buffer): string;
  /** Builds the exact TBSCertificate; throws KEY_ALGORITHM_NOT_ALLOWED. */
  buildTbs(profile: CertificateProfile, input: { serial: Buffer; subject: SubjectSpec; spki: Buffer; csrAlgorithm: VerifiedCsr["algorithm"]; notBefore: Date; notAfter: Date }): Buffer;
  /** Signs a TBS; returns the certificate DER. */
  signTbs(tbs: Buffer): Promise<Buffer>;
  subjectDn(subject: SubjectSpec): string;
}

/** A counter or renewal issuance request, as the RA has decided it. */
export interface IssueRequest {
  holderId: string;
  /** The holder's record when the caller has just read it (the RA's order did): not read again. */
  holder?: HolderRecord;
  profileId: string;
  /** The CSR, or the result of verifyCsr when the caller has already checked it (it is not verified twice). */
  csr: Buffer | string | VerifiedCsr;
  /** Who asks: "cli", "operator:alice", "holder:H001". */
  actor: string;
  tokenSerial?: string | null;
  /** The renewed certificate's notAfter, for profiles whose validity is carried over (validityAnchor "carry-over"). */
  oldNotAfter?: Date;
  /** Explicit validity, for the counter; otherwise the profile decides through validityFor. */
  notBefore?: Date;
  notAfter?: Date;
  /** Extra audit data, e.g. the order id. */
  auditData?: Record<string, unknown>;
  /**
   * Runs inside the transaction that stores the signed certificate, so that
   * what it records (an order turning "issued") commits with it or not at
   * all. It must not throw for ordinary reasons: a throw fails the whole batch.
   */
  onCommit?: (r: Repositories, cert: CertificateRecord, encryption?: CertificateRecord) => Promise<void>;
  /**
   * For a pair profile (CertificateProfile.certificates): the encryption key
   * pair the KMC made, whose certificate is issued beside the signing one:
   * both intents in one transaction, both signed, both stored with the
   * pair's record in one transaction, or neither. The escrow itself is the
   * caller's to record in `onIntent` (so it commits with the intents).
   */
  encryption?: { spki: Buffer; escrowId: string };
  /**
   * Runs inside the transaction that records this certificate's intent,
   * before the intent: what it records (an order taking the CSR) commits
   * with the intent or not at all, in one commit instead of two. Returning
   * an error refuses this request alone: no intent, nothing signed, and
   * `issue` rejects with that error; so it must decide before it writes
   * (a conditional update first). A throw fails the whole batch.
   */
  onIntent?: (r: Repositories) => Promise<UkeyError | undefined>;
}

type PendingRecord = Omit<CertificateRecord, "status" | "der" | "revocationReason" | "revokedAt" | "imported">;

/** A certificate pair's issued certificates. */
export interface IssuedPair {
  signing: CertificateRecord;
  encryption: CertificateRecord;
}

interface Pending {
  record: PendingRecord;
  tbs: Buffer;
  /** A pair's encryption certificate, issued and stored with this one or not at all. */
  companion?: { record: PendingRecord; tbs: Buffer; escrowId: string };
  actor: string;
  auditData: Record<string, unknown>;
  onCommit: IssueRequest["onCommit"];
  onIntent: IssueRequest["onIntent"];
  resolve(r: CertificateRecord, encryption?: CertificateRecord): void;
  reject(e: unknown): void;
}

type IssuanceStore = Pick<Store, "transaction" | "holders" | "profiles">;

/**
 * Issues certificates from the RA's record: the subject and SANs come from
 * the holder, extensions and validity from the profile, and only the public
 * key from the CSR (after its signature is verified).
 *
 * Durability (Boulder's Prepare/Issue): each certificate's intent is
 * committed before its TBS is signed, and the signed DER is committed with
 * status active and its audit entry in one transaction before the caller
 * hears of it. A crash between the two leaves a pending intent that
 * IntentSweeper abandons; no certificate is ever delivered that the
 * database does not know. Concurrent requests share commits (group
 * commit): while one batch commits, the next one queues.
 */
export class IssuanceService {
  private queue: Pending[] = [];
  private flushing = false;
  private readonly profiles: ProfileCache;

  constructor(private readonly deps: {
    store: IssuanceStore;
    ca: IssuingCa;
    clock: Clock;
    institution: { name: string; country: string };
    /** Largest batch per group commit; default 256. */
    batchSize?: number;
    /** Shared profile reads; a private one (5 s) when not given. */
    profiles?: ProfileCache;
    /** Signs each certificate's first OCSP response beside it, stored in the same commit; without it the refresher does. */
    ocsp?: Pick<OcspService, "presignGood">;
  }) {
    this.profiles = deps.profiles ?? new ProfileCache({ store: deps.store, clock: deps.clock });
  }

  /**
   * Issues one certificate.
   * @throws UkeyError HOLDER_NOT_FOUND, PROFILE_NOT_FOUND, CSR_*, KEY_*, and storage errors.
   */
  async issue(req: IssueRequest): Promise<CertificateRecord> {
    return (await this.enqueue(req)).signing;
  }

  /**
   * Issues a pair: the signing certificate for the CSR's key and the
   * encryption certificate for `req.encryption.spki`, in one order of
   * commits (see IssueRequest.encryption).
   * @throws as issue, and REQUEST_INVALID when the profile has no pair.
   */
  async issuePair(req: IssueRequest & { encryption: { spki: Buffer; escrowId: string } }): Promise<IssuedPair> {
    const r = await this.enqueue(req);
    if (!r.encryption) throw new UkeyError("REQUEST_INVALID", { params: { reason: `profile ${req.profileId} issues one certificate, not a pair` } });
    return { signing: r.signing, encryption: r.encryption };
  }

  private async enqueue(req: IssueRequest): Promise<{ signing: CertificateRecord; encryption?: CertificateRecord }> {
    const csr = typeof req.csr === "string" || Buffer.isBuffer(req.csr) ? this.deps.ca.verifyCsr(req.csr) : req.csr;
    const now = this.deps.clock.now();
    const [holder, profile] = await Promise.all([
      req.holder?.id === req.holderId ? req.holder : this.deps.store.holders.get(req.holderId),
      this.profiles.get(req.profileId),
    ]);
    if (!holder) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: req.holderId } });
    if (!profile) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: req.profileId } });
    // Never before the issuing CA itself: a CA made a moment ago on a clock slightly ahead would otherwise refuse.
    const asked = req.notBefore ?? now;
    const notBefore = asked.getTime() < this.deps.ca.issuerNotBefore.getTime() ? this.deps.ca.issuerNotBefore : asked;
    // Never past the issuing CA's own notAfter (RFC 5280 path validation would fail there).
    const wanted = req.notAfter ?? validityFor(profile, { now: notBefore, oldNotAfter: req.oldNotAfter ?? null }).notAfter;
    const notAfter = wanted.getTime() > this.deps.ca.issuerNotAfter.getTime() ? this.deps.ca.issuerNotAfter : wanted;
    const subject = subjectFor(holder, profile, this.deps.institution);
    const serial = this.deps.ca.newSerial();
    const views = pairViewsOf(profile);
    if (views.encryption && !req.encryption) throw new UkeyError("REQUEST_INVALID", { params: { reason: `profile ${profile.id} issues a certificate pair: the encryption key is missing` } });
    if (!views.encryption && req.encryption) throw new UkeyError("REQUEST_INVALID", { params: { reason: `profile ${profile.id} issues one certificate, not a pair` } });
    const tbs = this.deps.ca.buildTbs(views.signing, { serial, subject, spki: csr.spki, csrAlgorithm: csr.algorithm, notBefore, notAfter });
    const at = now.getTime();
    const record: Pending["record"] = {
      serial: this.deps.ca.serialHex(serial),
      issuerKeyId: this.deps.ca.issuerKeyId,
      issuerDn: this.deps.ca.issuerDn,
      subjectDn: this.deps.ca.subjectDn(subject),
      sans: subject.sans ?? [],
      notBefore: notBefore.getTime(),
      notAfter: notAfter.getTime(),
      spkiSha256: createHash("sha256").update(csr.spki).digest("hex"),
      kind: profile.certificateKind,
      tokenSerial: req.tokenSerial ?? null,
      holderId: holder.id,
      profileId: profile.id,
      createdAt: at,
      updatedAt: at,
    };
    let companion: Pending["companion"];
    if (views.encryption && req.encryption) {
      const encSerial = this.deps.ca.newSerial();
      const encTbs = this.deps.ca.buildTbs(views.encryption, { serial: encSerial, subject, spki: req.encryption.spki, csrAlgorithm: csr.algorithm, notBefore, notAfter });
      companion = {
        record: { ...record, serial: this.deps.ca.serialHex(encSerial), spkiSha256: createHash("sha256").update(req.encryption.spki).digest("hex") },
        tbs: encTbs, escrowId: req.encryption.escrowId,
      };
    }
    return new Promise<{ signing: CertificateRecord; encryption?: CertificateRecord }>((resolve, reject) => {
      this.queue.push({
        record, tbs, ...(companion ? { companion } : {}), actor: req.actor, auditData: req.auditData ?? {}, onCommit: req.onCommit, onIntent: req.onIntent,
        resolve: (signing, encryption) => resolve(encryption ? { signing, encryption } : { signing }), reject,
      });
      if (!this.flushing) void this.flush();
    });
  }

  /** Waits until every queued certificate is committed or failed. */
  async drain(): Promise<void> {
    while (this.flushing || this.queue.length) await new Promise((r) => setImmediate(r));
  }

  /**
   * The pipeline: one transaction stores the signed certificates of the
   * previous batch and the intents of the next, so each round costs one
   * commit; then the next batch is signed. A certificate is signed only
   * after its intent committed, and reported only after it committed.
   */
  private async flush(): Promise<void> {
    this.flushing = true;
    let signed: { batch: Pending[]; results: Array<Signed | Error> } | undefined;
    try {
      while (this.queue.length || signed) {
        const next = this.queue.splice(0, this.deps.batchSize ?? 256);
        const at = this.deps.clock.now().getTime();
        const done = signed;
        const refused = new Map<Pending, UkeyError>();
        try {
          await this.deps.store.transaction(async (r) => {
            if (done) await this.completeIn(r, done.batch, done.results, at);
            for (const p of next) {
              const refusal = p.onIntent ? await p.onIntent(r) : undefined;
              if (refusal) refused.set(p, refusal);
              else {
                await r.certificates.insertIntent(p.record);
                if (p.companion) await r.certificates.insertIntent(p.companion.record);
              }
            }
          });
        } catch (e) {
          // Nothing of this round committed: its intents are not there, its certificates were never delivered.
          for (const p of [...(done?.batch ?? []), ...next]) p.reject(e);
          signed = undefined;
          continue;
        }
        if (done) this.settle(done.batch, done.results, at);
        for (const [p, e] of refused) p.reject(e);
        const accepted = refused.size ? next.filter((p) => !refused.has(p)) : next;
        signed = accepted.length ? { batch: accepted, results: await this.signAll(accepted) } : undefined;
      }
    } finally {
      this.flushing = false;
    }
  }

  private signAll(batch: Pending[]): Promise<Array<Signed | Error>> {
    const ocsp = this.deps.ocsp;
    const now = this.deps.clock.now();
    return Promise.all(batch.map(async (p): Promise<Signed | Error> => {
      let der: Buffer;
      let companionDer: Buffer | undefined;
      try {
        der = await this.deps.ca.signTbs(p.tbs);
        // A pair is signed whole or not at all: a failure of either abandons both.
        if (p.companion) companionDer = await this.deps.ca.signTbs(p.companion.tbs);
      } catch (e) {
        return e instanceof Error ? e : new Error(String(e));
      }
      // A certificate without its response is still a certificate: the refresher signs it later.
      const presign = async (serial: string) => {
        try {
          return ocsp ? await ocsp.presignGood(serial, now) : undefined;
        } catch {
          return undefined;
        }
      };
      const out: Signed = { der };
      const first = await presign(p.record.serial);
      if (first) out.ocsp = first;
      if (p.companion && companionDer) {
        const second = await presign(p.companion.record.serial);
        out.companion = second ? { der: companionDer, ocsp: second } : { der: companionDer };
      }
      return out;
    }));
  }

  private async completeIn(r: Repositories, batch: Pending[], signed: Array<Signed | Error>, at: number): Promise<void> {
    const audit = [];
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      const s = signed[i]!;
      if (s instanceof Error) {
        await r.certificates.setStatus(p.record.serial, "abandoned", at);
        audit.push(issuanceAudit(p, at, "certificate.abandoned", { error: s.message }));
        if (p.companion) {
          await r.certificates.setStatus(p.companion.record.serial, "abandoned", at);
          audit.push(issuanceAudit({ ...p, record: p.companion.record }, at, "certificate.abandoned", { error: s.message, pairOf: p.record.serial }));
        }
        continue;
      }
      try {
        await r.certificates.completeIntent(p.record.serial, s.der, at, s.ocsp);
      } catch (e) {
        // The signature came so late that a sweep (IntentSweeper) had abandoned the intent and audited
        // it: this certificate is dropped undelivered and its caller fails; the rest of the batch is kept.
        if (!isUkeyError(e, "CERT_INTENT_NOT_PENDING")) throw e;
        // A pair's encryption intent goes with it (the sweep abandons both of one age together; if not, now).
        if (p.companion) await r.certificates.setStatus(p.companion.record.serial, "abandoned", at);
        signed[i] = e;
        continue;
      }
      audit.push(issuanceAudit(p, at, "certificate.issued", p.companion ? { pair: { encryption: p.companion.record.serial } } : {}));
      if (p.companion && s.companion) {
        // The signing certificate is stored in this transaction: the encryption one must be too, or the
        // whole round rolls back (a throw), never one certificate of a pair without the other.
        await r.certificates.completeIntent(p.companion.record.serial, s.companion.der, at, s.companion.ocsp);
        await r.certificatePairs.insert({ signingSerial: p.record.serial, encryptionSerial: p.companion.record.serial, escrowId: p.companion.escrowId, createdAt: at });
        audit.push(issuanceAudit({ ...p, record: p.companion.record }, at, "certificate.issued", { pair: { signing: p.record.serial, escrowId: p.companion.escrowId } }));
      }
    }
    // One run of the chain for the batch, then what each request records with its certificate.
    await r.audit.appendMany(audit);
    for (let i = 0; i < batch.length; i++) {
      const s = signed[i]!;
      if (s instanceof Error) continue;
      const p = batch[i]!;
      await p.onCommit?.(r, issuedRecord(p, s.der, at), p.companion && s.companion ? issuedRecord({ record: p.companion.record }, s.companion.der, at) : undefined);
    }
  }

  private settle(batch: Pending[], signed: Array<Signed | Error>, at: number): void {
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      const s = signed[i]!;
      if (isUkeyError(s, "CERT_INTENT_NOT_PENDING")) p.reject(s);
      else if (s instanceof Error) p.reject(new UkeyError("HSM_OPERATION_FAILED", { params: { reason: "signing failed" }, cause: s }));
      else p.resolve(issuedRecord(p, s.der, at), p.companion && s.companion ? issuedRecord({ record: p.companion.record }, s.companion.der, at) : undefined);
    }
  }
}

/** The stored record of a signed certificate (written out field by field: a spread of the record cost more, twice per certificate). */
function issuedRecord(p: Pick<Pending, "record">, der: Buffer, at: number): CertificateRecord {
  const r = p.record;
  return {
    serial: r.serial, issuerKeyId: r.issuerKeyId, issuerDn: r.issuerDn, subjectDn: r.subjectDn, sans: r.sans, notBefore: r.notBefore,
    notAfter: r.notAfter, status: "active", revocationReason: null, revokedAt: null, spkiSha256: r.spkiSha256, kind: r.kind,
    tokenSerial: r.tokenSerial, holderId: r.holderId, profileId: r.profileId, der, imported: false, createdAt: r.createdAt, updatedAt: at,
  };
}

function issuanceAudit(p: Pick<Pending, "record" | "actor" | "auditData">, at: number, action: string, extra: Record<string, unknown>): AuditEntryInput {
  return {
    at, actor: p.actor, action, subjectType: "certificate", subjectId: p.record.serial,
    data: { holderId: p.record.holderId, profileId: p.record.profileId, subject: p.record.subjectDn, notAfter: p.record.notAfter, ...p.auditData, ...extra },
  };
}

/**
 * The subject the RA's record gives a holder: country and organisation of
 * the institution, the holder's name, and the holder's ID as serialNumber
 * (the customer number, never the ID card number). An e-mail SAN when the
 * profile protects e-mail and the record has an address.
 */
export function subjectFor(holder: HolderRecord, profile: CertificateProfile, institution: { name: string; country: string }): SubjectSpec {
  const subject: SubjectSpec = {
    rdns: [["C", institution.country], ["O", institution.name], ["CN", holder.name], ["serialNumber", holder.id]],
  };
  if (holder.email && profile.extKeyUsage.includes("emailProtection")) subject.sans = [`email:${holder.email}`];
  return subject;
}
