import { derToPem, encodeName, verifyCsr } from "@ukey/ca";
import { formatDn } from "./ca-runtime.js";
import { createHash } from "node:crypto";
import { UkeyError, isUkeyError } from "@ukey/policy";
import type { CertificateRecord, EnrolmentRecord, Repositories, Store } from "@ukey/store";
import { formatCertId } from "./cert-id.js";
import { normaliseReferenceNumber, type EnrolmentService } from "./enrolment-service.js";
import { subjectFor, type IssuanceService } from "./issuance-service.js";
import { checkRequestedSubject, prepareEncryptionKey } from "./renewal/renewal-order-service.js";
import type { KeyManagementCentre } from "./kmc/key-management-centre.js";
import type { RecoveredKeys, RecoveredKeySource } from "./kmc/recovered-key-delivery.js";
import { checkRecipients, type RecoveredKeyRecipient } from "./kmc/recovered-key-recipients.js";
import type { VerifiedCsr } from "@ukey/ca";
import { envelopeFormatFor, type EnvelopeFormat } from "./kmc/key-envelope.js";
import { isPairProfile, validityFor, type Clock, type KeyAlgorithm } from "@ukey/policy";

/** What a holder's agent receives after a download with two codes. */
export interface DownloadResult {
  serial: string;
  certId: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  pem: string;
  chainPem: string;
  /** A pair profile's encryption certificate and its private key's envelope for the CSR's key (as OrderView's). */
  encryptionCertificate?: { serial: string; certId: string; notBefore: string; notAfter: string; pem: string };
  envelope?: { format: EnvelopeFormat; value: string };
  /**
   * A download that a dual-control key recovery made (kmc/key-recovery-service.ts): the holder's escrowed
   * old encryption keys, each enveloped for the CSR's key like `envelope`, with the old encryption
   * certificate that certifies it when the store has it (an escrow made outside a pair has none).
   */
  recoveredKeys?: RecoveredKeyView[];
}

/** One recovered encryption key in a download's answer. */
export interface RecoveredKeyView {
  escrowId: string;
  /** DER SubjectPublicKeyInfo of the recovered key pair, base64. */
  spki: string;
  envelope: { format: EnvelopeFormat; value: string };
  /** The recipient key (DER SubjectPublicKeyInfo, base64) the envelope is for, when the download gave recipient keys; otherwise it is for the CSR's key. */
  recipientSpki?: string;
  certificate?: NonNullable<DownloadResult["encryptionCertificate"]>;
}

/** The answer of POST /api/v1/downloads/check: the codes are good, and the certificate they authorize (see DownloadService.check). */
export interface DownloadCheck {
  valid: true;
  certificate: { subject: string; notBefore: string; notAfter: string; keyAlgorithms: KeyAlgorithm[]; pair: boolean; profile: { "zh-CN": string; en: string } };
  /** How many recovered old encryption keys the download carries (a key recovery's codes), so that the agent can make one recipient key for each; 0 otherwise. */
  recoveredKeys: number;
}

/**
 * Download with two codes (seed 004's remote download; the reference number
 * + authorization code of Chinese CAs) onto a key that holds no
 * certificate: the enrolment names holder and profile, the CSR gives only
 * the new key, and the enrolment is consumed in the transaction that stores
 * the certificate, so a code is used exactly when a certificate exists.
 */
export class DownloadService {
  constructor(private readonly deps: {
    store: Pick<Store, "holders" | "profiles" | "enrolments" | "certificates" | "certificatePairs" | "kmcRecoveries">;
    enrolments: EnrolmentService;
    issuance: IssuanceService;
    /** The key management centre, for pair profiles. */
    kmc?: KeyManagementCentre;
    /** The key management centre's release of recovered keys; without it a recovery's download is refused (KMC_REQUIRED). */
    recoveredKeys?: RecoveredKeySource;
    clock: Clock;
    institution: { name: string; country: string };
    chainPem: string;
  }) {}

  /**
   * @throws UkeyError CODE_INVALID, CODE_EXPIRED, CODE_ALREADY_USED, CODE_ATTEMPTS_EXCEEDED, CODE_REVOKED,
   *   CSR_*, KEY_*, CSR_SUBJECT_MISMATCH, HOLDER_NOT_FOUND, PROFILE_NOT_FOUND, CERT_ON_HOLD (while a certificate of the
   *   holder's in this profile is on hold; the code is not spent); for a recovery's enrolment also KMC_RECOVERY_OTHER_KEY
   *   (its keys went to another signing key), KMC_RECOVERY_NOT_PENDING, KMC_ESCROW_UNREADABLE, KEY_ALGORITHM_UNSUPPORTED
   *   (a signing key that is not SM2), KMC_REQUIRED (no KMC configured), KMC_RECOVERY_RECIPIENT_INVALID (`recipients` given
   *   but not one per recovered key, or one that does not prove possession over this CSR); the code is then not spent.
   * @param recipients for a recovery's codes: one key per recovered key, each with its signature over
   *   recipientProofMessage(CSR); each recovered key is then enveloped for its own recipient (an SKF key's extra container)
   *   instead of the CSR's key.
   */
  async download(referenceNumber: string, authorizationCode: string, csr: string | Buffer, tokenSerial: string | null, actor: string,
    recipients?: readonly RecoveredKeyRecipient[]): Promise<DownloadResult> {
    // The CSR is checked before the code, so that a malformed request never spends an attempt.
    const request = verifyCsr(csr);
    let verified;
    try {
      verified = await this.deps.enrolments.verify(referenceNumber, authorizationCode, actor);
    } catch (e) {
      // The right codes, already spent, and the same key: the agent lost the answer (a crash, a pulled key);
      // deliver that certificate again rather than strand the holder.
      const again = isUkeyError(e, "CODE_ALREADY_USED") ? await this.issuedFor(referenceNumber, request, actor, recipients) : undefined;
      if (again) return again;
      throw e;
    }
    const holder = await this.deps.store.holders.get(verified.holderId);
    if (!holder) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: verified.holderId } });
    const profile = (await this.deps.store.profiles.get(verified.profileId))?.profile;
    if (!profile) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: verified.profileId } });
    checkRequestedSubject(request, encodeName(subjectFor(holder, profile, this.deps.institution).rdns));
    await this.refuseWhileHeld(holder.id, profile.id);
    // A self-service re-download replaces a certificate that must still be valid (checked again, under the row's update, at commit).
    const replaces = verified.replacesSerial ? await this.deps.store.certificates.get(verified.replacesSerial) : undefined;
    if (verified.replacesSerial && !(replaces && replaceable(replaces, this.deps.clock.now().getTime()))) {
      throw new UkeyError("REDOWNLOAD_NOT_AVAILABLE", { detail: `certificate ${verified.replacesSerial} is no longer valid` });
    }
    // A recovery's keys are enveloped (and the recovery bound to this signing key) before anything is issued: a
    // refusal spends no code. Should the issuance fail after, the same key asks again and gets the same keys.
    const recovered = await this.recoveredFor(verified, request, actor, recipients);
    // A pair: the escrow commits with the intents; the enrolment is redeemed with both certificates.
    const prepared = isPairProfile(profile) ? await prepareEncryptionKey(this.deps.kmc, profile, request, holder.id, actor) : undefined;
    let encryption: CertificateRecord | undefined;
    const c = await this.deps.issuance.issue({
      holderId: holder.id, profileId: profile.id, csr: request, actor, tokenSerial,
      auditData: { enrolment: verified.id, channel: replaces ? "self-service-redownload" : "download" },
      // A replacement, not a renewal: the certificate keeps the expiry of the one it replaces.
      ...(replaces ? { notAfter: new Date(replaces.notAfter) } : {}),
      ...(prepared ? {
        encryption: { spki: prepared.spki, escrowId: prepared.escrowId },
        onIntent: async (r) => { await this.deps.kmc!.recordIn(r, prepared, this.deps.clock.now().getTime()); return undefined; },
      } : {}),
      onCommit: async (r, cert, enc) => {
        encryption = enc;
        await this.deps.enrolments.redeemIn(r, verified, actor, { serial: cert.serial, ...(enc ? { encryptionSerial: enc.serial } : {}) });
        if (replaces) await supersedeIn(r, replaces, cert.serial, actor, this.deps.clock.now().getTime());
      },
    });
    const out = this.result(c);
    if (prepared && encryption) {
      out.encryptionCertificate = this.certView(encryption);
      out.envelope = { format: prepared.envelopeFormat, value: prepared.envelope.toString("base64") };
    }
    if (recovered) out.recoveredKeys = await this.recoveredView(recovered);
    return out;
  }

  /** The recovered keys of the recovery that made `enrolment`, if one did. */
  private async recoveredFor(enrolment: Pick<EnrolmentRecord, "id">, request: Pick<VerifiedCsr, "spki" | "der">, actor: string,
    recipients?: readonly RecoveredKeyRecipient[]): Promise<RecoveredKeys | undefined> {
    const rec = await this.deps.store.kmcRecoveries.getByEnrolment(enrolment.id);
    // Recipient keys prove possession before any escrow is opened; none are taken for an enrolment without a recovery.
    if (recipients) checkRecipients(recipients, rec?.escrowIds.length ?? 0, request);
    if (this.deps.recoveredKeys) return this.deps.recoveredKeys.envelopesFor(enrolment, request.spki, actor, recipients?.map((r) => r.spki));
    if (rec) throw new UkeyError("KMC_REQUIRED", { params: { profiles: rec.profileId }, detail: `the enrolment of key recovery ${rec.id}` });
    return undefined;
  }

  private async recoveredView(r: RecoveredKeys): Promise<RecoveredKeyView[]> {
    const out: RecoveredKeyView[] = [];
    for (const k of r.keys) {
      const pair = await this.deps.store.certificatePairs.getByEscrow(k.escrowId);
      const cert = pair ? await this.deps.store.certificates.get(pair.encryptionSerial) : undefined;
      out.push({
        escrowId: k.escrowId, spki: k.spki.toString("base64"), envelope: { format: k.envelopeFormat, value: k.envelope.toString("base64") },
        ...(k.recipientSpki ? { recipientSpki: k.recipientSpki.toString("base64") } : {}),
        ...(cert?.der ? { certificate: this.certView(cert) } : {}),
      });
    }
    return out;
  }

  /**
   * Checks the two codes before the holder's key does any work (the agent
   * asks this before the PIN): the same check and the same count of wrong
   * tries as `download`, and nothing is consumed. The answer previews the
   * certificate the codes authorize (seed 004 §4.5, "核对授权证书信息"):
   * its subject as the RA's record gives it, the validity the profile gives
   * a certificate issued now, the key algorithms it accepts, whether an
   * encryption certificate comes with it, and the profile's name. That is
   * exactly what the download would write onto the key for the same codes;
   * nothing else about the holder (no ID number, phone or e-mail).
   * @throws UkeyError DOWNLOAD_CODE_INVALID (with triesLeft), CODE_INVALID, CODE_EXPIRED, CODE_ALREADY_USED, CODE_ATTEMPTS_EXCEEDED, CODE_REVOKED,
   *   HOLDER_NOT_FOUND, PROFILE_NOT_FOUND, CERT_ON_HOLD (the download would be refused).
   */
  async check(referenceNumber: string, authorizationCode: string, actor: string): Promise<DownloadCheck> {
    const verified = await this.deps.enrolments.verify(referenceNumber, authorizationCode, actor);
    const holder = await this.deps.store.holders.get(verified.holderId);
    if (!holder) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: verified.holderId } });
    const profile = (await this.deps.store.profiles.get(verified.profileId))?.profile;
    if (!profile) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: verified.profileId } });
    await this.refuseWhileHeld(holder.id, profile.id);
    const v = validityFor(profile, { now: this.deps.clock.now() });
    const recovery = await this.deps.store.kmcRecoveries.getByEnrolment(verified.id);
    return {
      valid: true,
      certificate: {
        subject: formatDn(subjectFor(holder, profile, this.deps.institution).rdns),
        notBefore: v.notBefore.toISOString(), notAfter: v.notAfter.toISOString(),
        keyAlgorithms: [...profile.keyAlgorithms], pair: isPairProfile(profile), profile: { ...profile.name },
      },
      recoveredKeys: recovery?.escrowIds.length ?? 0,
    };
  }

  /** A hold (冻结) suspends the holder's certificate of this profile: a new one by download would step around it. @throws UkeyError CERT_ON_HOLD. */
  private async refuseWhileHeld(holderId: string, profileId: string): Promise<void> {
    const held = (await this.deps.store.certificates.search({ holderId, status: "revoked", limit: 1000 }))
      .find((c) => c.profileId === profileId && c.revocationReason === "certificateHold");
    if (held) throw new UkeyError("CERT_ON_HOLD", { params: { serial: held.serial } });
  }

  private certView(c: CertificateRecord): NonNullable<DownloadResult["encryptionCertificate"]> {
    return {
      serial: c.serial, certId: formatCertId(c.issuerKeyId, c.serial),
      notBefore: new Date(c.notBefore).toISOString(), notAfter: new Date(c.notAfter).toISOString(), pem: derToPem(c.der!, "CERTIFICATE"),
    };
  }

  private result(c: CertificateRecord): DownloadResult {
    return {
      serial: c.serial, certId: formatCertId(c.issuerKeyId, c.serial), subject: c.subjectDn,
      notBefore: new Date(c.notBefore).toISOString(), notAfter: new Date(c.notAfter).toISOString(),
      pem: derToPem(c.der!, "CERTIFICATE"), chainPem: this.deps.chainPem,
    };
  }

  /** The active certificate this enrolment's holder got for exactly this key, if any. */
  private async issuedFor(referenceNumber: string, request: Pick<VerifiedCsr, "spki" | "der">, actor: string,
    recipients?: readonly RecoveredKeyRecipient[]): Promise<DownloadResult | undefined> {
    const spki = request.spki;
    const ref = normaliseReferenceNumber(referenceNumber);
    const e = ref ? await this.deps.store.enrolments.getByReference(ref) : undefined;
    if (!e || e.status !== "used") return undefined;
    const spkiSha256 = createHash("sha256").update(spki).digest("hex");
    const mine = (await this.deps.store.certificates.search({ holderId: e.holderId, status: "active", limit: 1000 }))
      .find((c) => c.spkiSha256 === spkiSha256 && c.profileId === e.profileId && c.der !== null);
    if (!mine) {
      // A recovery's codes with another key than the one its keys went to: refused as such (and audited).
      const rec = await this.deps.store.kmcRecoveries.getByEnrolment(e.id);
      if (rec && rec.deliveredSpkiSha256 !== spkiSha256) await this.recoveredFor(e, request, actor, recipients);
      return undefined;
    }
    // A recovery's keys again, for this same key only (another key is refused with KMC_RECOVERY_OTHER_KEY).
    const recovered = await this.recoveredFor(e, request, actor, recipients);
    const out = this.result(mine);
    // A pair: its encryption certificate, and the escrowed key enveloped again for this same signing key.
    const pair = await this.deps.store.certificatePairs.getBySigning(mine.serial);
    const enc = pair ? await this.deps.store.certificates.get(pair.encryptionSerial) : undefined;
    if (pair && enc?.der) {
      if (!this.deps.kmc) throw new UkeyError("KMC_REQUIRED", { params: { profiles: e.profileId } });
      out.encryptionCertificate = this.certView(enc);
      out.envelope = { format: envelopeFormatFor(spki), value: (await this.deps.kmc.envelopeAgain({ escrowId: pair.escrowId, holderId: e.holderId, holderSigningSpki: spki, actor })).toString("base64") };
    }
    if (recovered) out.recoveredKeys = await this.recoveredView(recovered);
    return out;
  }
}

/** True while `c` may be replaced by a self-service re-download: active (not revoked, on hold or superseded) and within its validity. */
export function replaceable(c: Pick<CertificateRecord, "status" | "notBefore" | "notAfter">, at: number): boolean {
  return c.status === "active" && c.notBefore <= at && at < c.notAfter;
}

/**
 * Inside the issuance transaction of a self-service re-download: the old
 * certificate (and its pair's encryption certificate) revoked with reason
 * superseded, audited. Its key went with the key's initialisation, so it is
 * never left to expire.
 * @throws UkeyError REDOWNLOAD_NOT_AVAILABLE when it was revoked or put on hold since the check (the issuance rolls back).
 */
async function supersedeIn(r: Repositories, old: CertificateRecord, by: string, actor: string, at: number): Promise<void> {
  if (!(await r.certificates.revoke(old.serial, "superseded", at, "superseded"))) {
    throw new UkeyError("REDOWNLOAD_NOT_AVAILABLE", { detail: `certificate ${old.serial} was revoked meanwhile` });
  }
  await r.audit.append({ at, actor, action: "certificate.superseded", subjectType: "certificate", subjectId: old.serial, data: { by, revoked: true, why: "self-service re-download" } });
  const pair = await r.certificatePairs.getBySigning(old.serial);
  if (pair && (await r.certificates.revoke(pair.encryptionSerial, "superseded", at, "superseded"))) {
    await r.audit.append({ at, actor, action: "certificate.superseded", subjectType: "certificate", subjectId: pair.encryptionSerial, data: { by, revoked: true, pairOf: old.serial, why: "self-service re-download" } });
  }
}
