import { derToPem, encodeName, verifyCsr } from "@ukey/ca";
import { formatDn } from "./ca-runtime.js";
import { createHash } from "node:crypto";
import { UkeyError, isUkeyError } from "@ukey/policy";
import type { CertificateRecord, Store } from "@ukey/store";
import { formatCertId } from "./cert-id.js";
import { normaliseReferenceNumber, type EnrolmentService } from "./enrolment-service.js";
import { subjectFor, type IssuanceService } from "./issuance-service.js";
import { checkRequestedSubject, prepareEncryptionKey } from "./renewal/renewal-order-service.js";
import type { KeyManagementCentre } from "./kmc/key-management-centre.js";
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
  envelope?: { format: "gmt0016-enveloped-key-blob"; value: string };
}

/** The answer of POST /api/v1/downloads/check: the codes are good, and the certificate they authorize (see DownloadService.check). */
export interface DownloadCheck {
  valid: true;
  certificate: { subject: string; notBefore: string; notAfter: string; keyAlgorithms: KeyAlgorithm[]; pair: boolean; profile: { "zh-CN": string; en: string } };
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
    store: Pick<Store, "holders" | "profiles" | "enrolments" | "certificates" | "certificatePairs">;
    enrolments: EnrolmentService;
    issuance: IssuanceService;
    /** The key management centre, for pair profiles. */
    kmc?: KeyManagementCentre;
    clock: Clock;
    institution: { name: string; country: string };
    chainPem: string;
  }) {}

  /**
   * @throws UkeyError CODE_INVALID, CODE_EXPIRED, CODE_ALREADY_USED, CODE_ATTEMPTS_EXCEEDED, CODE_REVOKED,
   *   CSR_*, KEY_*, CSR_SUBJECT_MISMATCH, HOLDER_NOT_FOUND, PROFILE_NOT_FOUND, CERT_ON_HOLD (while a certificate of the
   *   holder's in this profile is on hold; the code is not spent).
   */
  async download(referenceNumber: string, authorizationCode: string, csr: string | Buffer, tokenSerial: string | null, actor: string): Promise<DownloadResult> {
    // The CSR is checked before the code, so that a malformed request never spends an attempt.
    const request = verifyCsr(csr);
    let verified;
    try {
      verified = await this.deps.enrolments.verify(referenceNumber, authorizationCode, actor);
    } catch (e) {
      // The right codes, already spent, and the same key: the agent lost the answer (a crash, a pulled key);
      // deliver that certificate again rather than strand the holder.
      const again = isUkeyError(e, "CODE_ALREADY_USED") ? await this.issuedFor(referenceNumber, request.spki, actor) : undefined;
      if (again) return again;
      throw e;
    }
    const holder = await this.deps.store.holders.get(verified.holderId);
    if (!holder) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: verified.holderId } });
    const profile = (await this.deps.store.profiles.get(verified.profileId))?.profile;
    if (!profile) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: verified.profileId } });
    checkRequestedSubject(request, encodeName(subjectFor(holder, profile, this.deps.institution).rdns));
    await this.refuseWhileHeld(holder.id, profile.id);
    // A pair: the escrow commits with the intents; the enrolment is redeemed with both certificates.
    const prepared = isPairProfile(profile) ? await prepareEncryptionKey(this.deps.kmc, profile, request, holder.id, actor) : undefined;
    let encryption: CertificateRecord | undefined;
    const c = await this.deps.issuance.issue({
      holderId: holder.id, profileId: profile.id, csr: request, actor, tokenSerial,
      auditData: { enrolment: verified.id, channel: "download" },
      ...(prepared ? {
        encryption: { spki: prepared.spki, escrowId: prepared.escrowId },
        onIntent: async (r) => { await this.deps.kmc!.recordIn(r, prepared, this.deps.clock.now().getTime()); return undefined; },
      } : {}),
      onCommit: async (r, cert, enc) => {
        encryption = enc;
        await this.deps.enrolments.redeemIn(r, verified, actor, { serial: cert.serial, ...(enc ? { encryptionSerial: enc.serial } : {}) });
      },
    });
    const out = this.result(c);
    if (prepared && encryption) {
      out.encryptionCertificate = this.certView(encryption);
      out.envelope = { format: prepared.envelopeFormat, value: prepared.envelope.toString("base64") };
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
    return {
      valid: true,
      certificate: {
        subject: formatDn(subjectFor(holder, profile, this.deps.institution).rdns),
        notBefore: v.notBefore.toISOString(), notAfter: v.notAfter.toISOString(),
        keyAlgorithms: [...profile.keyAlgorithms], pair: isPairProfile(profile), profile: { ...profile.name },
      },
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
  private async issuedFor(referenceNumber: string, spki: Buffer, actor: string): Promise<DownloadResult | undefined> {
    const ref = normaliseReferenceNumber(referenceNumber);
    const e = ref ? await this.deps.store.enrolments.getByReference(ref) : undefined;
    if (!e || e.status !== "used") return undefined;
    const spkiSha256 = createHash("sha256").update(spki).digest("hex");
    const mine = (await this.deps.store.certificates.search({ holderId: e.holderId, status: "active", limit: 1000 }))
      .find((c) => c.spkiSha256 === spkiSha256 && c.profileId === e.profileId && c.der !== null);
    if (!mine) return undefined;
    const out = this.result(mine);
    // A pair: its encryption certificate, and the escrowed key enveloped again for this same signing key.
    const pair = await this.deps.store.certificatePairs.getBySigning(mine.serial);
    const enc = pair ? await this.deps.store.certificates.get(pair.encryptionSerial) : undefined;
    if (pair && enc?.der) {
      if (!this.deps.kmc) throw new UkeyError("KMC_REQUIRED", { params: { profiles: e.profileId } });
      out.encryptionCertificate = this.certView(enc);
      out.envelope = { format: "gmt0016-enveloped-key-blob", value: (await this.deps.kmc.envelopeAgain({ escrowId: pair.escrowId, holderId: e.holderId, holderSigningSpki: spki, actor })).toString("base64") };
    }
    return out;
  }
}
