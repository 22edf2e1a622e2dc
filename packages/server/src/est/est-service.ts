import { createHash } from "node:crypto";
import { Certificate } from "@peculiar/asn1-x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AuthorityKeyIdentifier, id_ce_authorityKeyIdentifier } from "@peculiar/asn1-x509";
import { encodeName, nameToString, serialHex, verifyCsr } from "@ukey/ca";
import { UkeyError, evaluate, type CertificateProfile, type Clock, type KeyAlgorithm, keyAlgorithms } from "@ukey/policy";
import type { CertificateRecord, Repositories, Store } from "@ukey/store";
import type { EnrolmentService } from "../enrolment-service.js";
import type { IssuanceService } from "../issuance-service.js";
import { subjectFor } from "../issuance-service.js";
import type { OrderView, ProvenOrderView, RenewalOrderService } from "../renewal/renewal-order-service.js";
import { certsOnlyPkcs7, csrAttributes, requestedSans } from "./est-encoding.js";

/** What EST needs of the rest of the server: each a narrow slice. */
export interface EstDeps {
  store: Pick<Store, "certificates" | "holders" | "profiles" | "orders" | "audit">;
  issuance: Pick<IssuanceService, "issue">;
  orders: Pick<RenewalOrderService, "start" | "provePossessionByTls" | "submitCsr" | "installed" | "complete">;
  enrolments: Pick<EnrolmentService, "verify" | "redeemIn">;
  clock: Clock;
  institution: { name: string; country: string };
  /** The CA certificates a client should trust, issuing CA first (RFC 7030 section 4.1.3: the current CA and what chains it). */
  caCertificates: readonly Buffer[];
  /** The key algorithms of the configured profiles; csrattrs offers their union. A function: read at each csrattrs (a configuration reload changes them). */
  keyAlgorithms: readonly KeyAlgorithm[] | (() => readonly KeyAlgorithm[]);
}

/** Basic-auth credentials of simpleenroll: the enrolment's reference number and authorization code. */
export interface EstCredentials {
  referenceNumber: string;
  authorizationCode: string;
}

/**
 * EST (RFC 7030) for the RA. Every answer is DER; the routes do RFC 8951's
 * base64. Nothing is stored on a refusal except its audit entry.
 *
 * - simpleenroll: a first certificate for a key that holds none, paid for
 *   with an enrolment's reference number and authorization code. The
 *   enrolment decides holder and profile; the subject comes from the RA's
 *   record. The code is consumed in the transaction that stores the
 *   certificate, so a failed issuance leaves it usable and two racing
 *   requests cannot both get a certificate.
 * - simplereenroll: a renewal order on channel "est" driven to completion
 *   in one request: possession proved by the TLS handshake with the very
 *   certificate we stored, the CSR for a new key with the same subject
 *   (section 4.2.2), issued, installed (an EST client installs what it
 *   receives) and completed (the old certificate superseded as the profile
 *   says). The same request again (same old certificate, same new key)
 *   gets the same certificate again, for a client whose reply was lost.
 */
export class EstService {
  private readonly cacertsDer: Buffer;
  private csrattrs: { key: string; der: Buffer } | undefined;

  constructor(private readonly deps: EstDeps) {
    this.cacertsDer = certsOnlyPkcs7(deps.caCertificates);
  }

  /** The certs-only PKCS#7 of the issuing and root CA certificates (DER). */
  caCertificates(): Buffer {
    return this.cacertsDer;
  }

  /** The CSR attributes (DER CsrAttrs): key and signature algorithms we accept, no subject attributes. */
  csrAttributes(): Buffer {
    const algorithms = typeof this.deps.keyAlgorithms === "function" ? this.deps.keyAlgorithms() : this.deps.keyAlgorithms;
    const key = algorithms.join(",");
    if (this.csrattrs?.key !== key) this.csrattrs = { key, der: csrAttributes(algorithms) };
    return this.csrattrs.der;
  }

  /**
   * Issues a first certificate against an enrolment; returns the certs-only
   * PKCS#7 (DER) with it.
   * @throws UkeyError EST_CREDENTIALS_REQUIRED, CSR_MALFORMED, CSR_SIGNATURE_INVALID and the other CSR_*,
   *   CODE_INVALID, CODE_EXPIRED, CODE_ALREADY_USED, CODE_REVOKED, CODE_ATTEMPTS_EXCEEDED,
   *   CSR_SUBJECT_MISMATCH, CSR_SAN_MISMATCH, KEY_ALGORITHM_NOT_ALLOWED, HOLDER_NOT_FOUND, PROFILE_NOT_FOUND.
   */
  async enroll(credentials: EstCredentials | undefined, csrDer: Buffer): Promise<Buffer> {
    if (!credentials) throw await this.refuse("est.enroll.refused", "unknown", new UkeyError("EST_CREDENTIALS_REQUIRED"));
    // The CSR is read before the code is checked, so that a malformed request never touches the enrolment.
    const csr = verifyCsr(csrDer);
    const sans = requestedSans(csr.der);
    const verified = await this.deps.enrolments.verify(credentials.referenceNumber, credentials.authorizationCode, "est");
    const actor = `holder:${verified.holderId}`;
    const holder = await this.deps.store.holders.get(verified.holderId);
    if (!holder) throw new UkeyError("HOLDER_NOT_FOUND", { params: { holder: verified.holderId } });
    const profile = await this.profile(verified.profileId);
    const subject = subjectFor(holder, profile, this.deps.institution);
    const expected = nameToString(encodeName(subject.rdns));
    try {
      checkRequest(csr.requestedSubject, sans, { subject: expected, sans: subject.sans ?? [], emptyAllowed: true });
    } catch (e) {
      throw await this.refuse("est.enroll.refused", verified.id, e as UkeyError, { referenceNumber: verified.referenceNumber });
    }
    let lostRace: UkeyError | undefined;
    const cert = await this.deps.issuance.issue({
      holderId: holder.id, profileId: profile.id, csr: csr.der, actor, tokenSerial: null,
      auditData: { channel: "est", enrolment: verified.id },
      onCommit: async (r: Repositories, c: CertificateRecord) => {
        try {
          await this.deps.enrolments.redeemIn(r, verified, actor, { serial: c.serial, channel: "est" });
        } catch (e) {
          // Another request consumed the code first. Throwing here would fail every
          // certificate of the batch, so this one is revoked before anyone sees it.
          if (!(e instanceof UkeyError)) throw e;
          lostRace = e;
          const at = this.deps.clock.now().getTime();
          await r.certificates.revoke(c.serial, "cessationOfOperation", at, "revoked");
          await r.audit.append({ at, actor, action: "certificate.revoked", subjectType: "certificate", subjectId: c.serial, data: { reason: "cessationOfOperation", why: `enrolment ${verified.id} redeemed by another request`, code: e.code } });
        }
      },
    });
    if (lostRace) throw lostRace;
    return certsOnlyPkcs7([cert.der!]);
  }

  /**
   * Renews the certificate the client authenticated with; returns the
   * certs-only PKCS#7 (DER) with the new certificate.
   * @throws UkeyError EST_CLIENT_CERT_REQUIRED (no client certificate), EST_CLIENT_CERT_UNKNOWN (not one we
   *   stored), EST_VERIFICATION_NOT_POSSIBLE (the profile asks for an ID number, a one-time code or step-up),
   *   CSR_SUBJECT_MISMATCH, CSR_SAN_MISMATCH, KEY_NOT_RENEWED, CSR_*, and what RenewalOrderService.start
   *   throws (RENEWAL_CHANNEL_NOT_OFFERED, RENEWAL_NOT_YET_OPEN, RENEWAL_WINDOW_CLOSED, CERT_REVOKED, CERT_SUPERSEDED).
   */
  async reenroll(clientDer: Buffer | undefined, csrDer: Buffer): Promise<Buffer> {
    if (!clientDer) throw await this.refuse("est.reenroll.refused", "unknown", new UkeyError("EST_CLIENT_CERT_REQUIRED"));
    const current = await this.ourCertificate(clientDer);
    const actor = `holder:${current.holderId}`;
    const refuse = (e: UkeyError) => this.refuse("est.reenroll.refused", current.serial, e, {}, "certificate");
    const csr = verifyCsr(csrDer);
    const profile = await this.profile(current.profileId);
    const now = this.deps.clock.now();
    const e = evaluate({ notBefore: current.notBefore, notAfter: current.notAfter, status: current.status, revokedAt: current.revokedAt, revocationReason: current.revocationReason }, profile, "est", now);
    // Only when renewal is otherwise open: a closed window or an unoffered channel is the better answer.
    // Before the CSR's content: no other request would help.
    if (e.state === "open" || e.state === "open-step-up") {
      const missing = unverifiable(profile, e.state === "open-step-up");
      if (missing) throw await refuse(new UkeyError("EST_VERIFICATION_NOT_POSSIBLE", { params: { profile: profile.id, requirement: missing } }));
    }
    try {
      checkRequest(csr.requestedSubject, requestedSans(csr.der), { subject: subjectOf(clientDer), sans: [...current.sans].sort(), emptyAllowed: false });
    } catch (err) {
      throw await refuse(err as UkeyError);
    }
    if (current.status === "superseded" || current.revocationReason === "superseded") {
      const again = await this.renewedBefore(current, csr.spki);
      if (again) return certsOnlyPkcs7([again]);
    }
    const started = await this.deps.orders.start(current.serial, "est", actor);
    // The TLS handshake proved the key: that proof is the order's credential for the steps below.
    let order: OrderView = await this.deps.orders.provePossessionByTls(started.id, clientDer, actor);
    const credential = (order as ProvenOrderView).credential?.token;
    if (order.nextStep !== "csr" && order.state !== "issued") {
      // The profile changed between the check above and the order: nothing EST can do now.
      throw new UkeyError("EST_VERIFICATION_NOT_POSSIBLE", { params: { profile: profile.id, requirement: order.nextStep ?? order.state } });
    }
    order = await this.deps.orders.submitCsr(order.id, credential, csr.der, current.tokenSerial, actor);
    order = await this.deps.orders.installed(order.id, credential, actor);
    order = await this.deps.orders.complete(order.id, credential, actor);
    const issued = order.newCertificate ? await this.deps.store.certificates.get(order.newCertificate.serial) : undefined;
    if (!issued?.der) throw new UkeyError("INTERNAL", { detail: `order ${order.id} completed without a certificate` });
    return certsOnlyPkcs7([issued.der]);
  }

  /**
   * The certificate an earlier EST renewal of `old` issued for this very key,
   * if that is what the client asks for again: its reply was lost, and the
   * order completed when it was sent, so without this the client could
   * never fetch it (RFC 7030 clients simply repeat the request).
   */
  private async renewedBefore(old: CertificateRecord, spki: Buffer): Promise<Buffer | undefined> {
    const spkiSha256 = createHash("sha256").update(spki).digest("hex");
    const orders = await this.deps.store.orders.list({ holderId: old.holderId, state: "completed", limit: 1000 });
    for (const o of orders) {
      if (o.certificateSerial !== old.serial || o.channel !== "est" || !o.newSerial) continue;
      const c = await this.deps.store.certificates.get(o.newSerial);
      if (c?.der && c.status === "active" && c.spkiSha256 === spkiSha256) {
        await this.deps.store.audit.append({
          at: this.deps.clock.now().getTime(), actor: `holder:${old.holderId}`, action: "est.reenroll.redelivered",
          subjectType: "certificate", subjectId: c.serial, data: { order: o.id, renews: old.serial },
        });
        return c.der;
      }
    }
    return undefined;
  }

  /** The stored record whose DER is exactly the client's certificate. @throws UkeyError EST_CLIENT_CERT_UNKNOWN. */
  private async ourCertificate(der: Buffer): Promise<CertificateRecord> {
    let serial: string | undefined;
    let issuerKeyId: string | undefined;
    try {
      const c = AsnConvert.parse(der, Certificate);
      serial = serialHex(Buffer.from(c.tbsCertificate.serialNumber));
      const aki = c.tbsCertificate.extensions?.find((x) => x.extnID === id_ce_authorityKeyIdentifier);
      const keyId = aki ? AsnConvert.parse(aki.extnValue.buffer, AuthorityKeyIdentifier).keyIdentifier : undefined;
      issuerKeyId = keyId ? Buffer.from(keyId.buffer).toString("hex") : undefined;
    } catch {
      // Unreadable: certainly not one of ours.
    }
    const record = serial && issuerKeyId ? await this.deps.store.certificates.get(serial, issuerKeyId) : undefined;
    if (!record?.der || !record.der.equals(der)) {
      throw await this.refuse("est.reenroll.refused", serial ?? "unknown", new UkeyError("EST_CLIENT_CERT_UNKNOWN"), { issuerKeyId: issuerKeyId ?? null });
    }
    return record;
  }

  private async profile(id: string): Promise<CertificateProfile> {
    const p = (await this.deps.store.profiles.get(id))?.profile;
    if (!p) throw new UkeyError("PROFILE_NOT_FOUND", { params: { profile: id } });
    return p;
  }

  /** Audits a refused attempt and returns the error to throw. */
  private async refuse(action: string, subjectId: string, error: UkeyError, data: Record<string, unknown> = {}, subjectType = "enrolment"): Promise<UkeyError> {
    await this.deps.store.audit.append({
      at: this.deps.clock.now().getTime(), actor: "est", action, subjectType, subjectId, data: { code: error.code, ...data },
    });
    return error;
  }
}

/** What EST cannot prove for a profile, in words for EST_VERIFICATION_NOT_POSSIBLE, or undefined when possession is enough. */
function unverifiable(profile: CertificateProfile, stepUp: boolean): string | undefined {
  const missing: string[] = [];
  if (profile.verification.idNumber) missing.push("the ID number");
  if (profile.verification.oneTimeCode) missing.push(`a one-time code by ${profile.verification.oneTimeCode === "sms" ? "SMS" : "e-mail"}`);
  if (stepUp) missing.push("step-up approval (the certificate expired long ago)");
  return missing.length ? missing.join(" and ") : undefined;
}

/** The subject of a certificate as nameToString renders it (the form CSR subjects are compared in). */
function subjectOf(der: Buffer): string {
  return nameToString(AsnConvert.parse(der, Certificate).tbsCertificate.subject);
}

/**
 * The CSR asks for exactly the subject and SANs the record gives, or
 * (for a first enrolment) for none.
 * @throws UkeyError CSR_SUBJECT_MISMATCH, CSR_SAN_MISMATCH.
 */
function checkRequest(requested: string, sans: string[], want: { subject: string; sans: string[]; emptyAllowed: boolean }): void {
  if (!(want.emptyAllowed && requested === "") && requested !== want.subject) {
    throw new UkeyError("CSR_SUBJECT_MISMATCH", { params: { requested, expected: want.subject } });
  }
  const wanted = [...want.sans].sort();
  if (!(want.emptyAllowed && sans.length === 0) && sans.join(",") !== wanted.join(",")) {
    throw new UkeyError("CSR_SAN_MISMATCH", { params: { requested: sans.join(", "), expected: wanted.join(", ") } });
  }
}

/** The union of the profiles' key algorithms, in the catalogue's order. */
export function profileKeyAlgorithms(profiles: readonly Pick<CertificateProfile, "keyAlgorithms">[]): KeyAlgorithm[] {
  return keyAlgorithms.filter((a) => profiles.some((p) => p.keyAlgorithms.includes(a)));
}
